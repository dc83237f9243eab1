"""Runs never lie: no stale cache hit reports work the open store lacks, splits are made of the
store's AOIs, and partial failures are reported whole (issue: runs that never lie)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stliif.config import ETLSpec, StoreSpec
from stliif.errors import RunFailures
from stliif.store import ArtifactStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

AOIS = ["Amnesty_POI-13-1-1", "Landcover-14956"]


def _import(data: Path, uri: str, aois: list[str] = AOIS[1:]) -> dict:
    from flows.etl import etl

    return etl(ETLSpec(data=str(data), aois=aois, stages=["import"]), StoreSpec(uri=uri))


def test_store_id_is_new_for_a_rebuilt_store(tmp_path: Path) -> None:
    first = ArtifactStore.open(str(tmp_path / "st"))
    same = ArtifactStore.open(str(tmp_path / "st"))
    assert first.store_id == same.store_id and len(first.store_id) == 32
    shutil.rmtree(tmp_path / "st")
    assert ArtifactStore.open(str(tmp_path / "st")).store_id != first.store_id


def test_delete_and_rebuild_recomputes(small_dataset: Path, tmp_path: Path) -> None:
    uri = str(tmp_path / "st")
    assert [r["status"] for r in _import(small_dataset, uri)["records"]] == ["committed"]
    assert [r["status"] for r in _import(small_dataset, uri)["records"]] == ["unchanged"]
    assert [r["status"] for r in _import(small_dataset, uri)["records"]] == ["unchanged"]  # a cache hit
    shutil.rmtree(uri)
    again = _import(small_dataset, uri)
    assert [r["status"] for r in again["records"]] == ["committed"]
    store = ArtifactStore.open(uri, create=False)
    assert store.list("raw") == ["raw/Landcover-14956"] and again["snapshot_id"] == store.snapshot_id()


def test_relative_store_path_from_two_folders(small_dataset: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        assert [r["status"] for r in _import(small_dataset, "st")["records"]] == ["committed"], folder
        assert ArtifactStore.open(str(tmp_path / folder / "st"), create=False).list("raw") == ["raw/Landcover-14956"]


def test_two_stores_at_one_path_in_turn(small_dataset: Path, tmp_path: Path) -> None:
    """Store A, then store B built at A's path, then A back: each rerun reports its own store."""
    uri = tmp_path / "st"
    a = _import(small_dataset, str(uri))
    _import(small_dataset, str(uri))  # "unchanged", cached for A
    uri.rename(tmp_path / "a")
    b = _import(small_dataset, str(uri))
    assert [r["status"] for r in b["records"]] == ["committed"] and b["snapshot_id"] != a["snapshot_id"]
    b2 = _import(small_dataset, str(uri))
    assert b2["records"][0]["snapshot_id"] == b["snapshot_id"]  # not A's cached record
    uri.rename(tmp_path / "b")
    (tmp_path / "a").rename(uri)
    a2 = _import(small_dataset, str(uri))
    assert a2["records"][0]["status"] == "unchanged" and a2["records"][0]["snapshot_id"] == a["snapshot_id"]


@pytest.mark.integration
def test_evaluate_cache_never_stale(worldstrat: Path, tmp_path: Path) -> None:
    from flows.evaluate import evaluate

    spec = StoreSpec(uri=str(tmp_path / "store"))
    kwargs = dict(protocol="paper", model="bicubic", store=spec, data=str(worldstrat),
                  aois=["UNHCR-NGAs036019"], scales=["x2"], ssim=False)  # fmt: skip
    assert evaluate(**kwargs)["status"] == "committed"
    assert evaluate(**kwargs)["status"] == "unchanged"
    assert evaluate(**kwargs)["status"] == "unchanged"  # a cache hit
    shutil.rmtree(tmp_path / "store")
    assert evaluate(**kwargs)["status"] == "committed"
    assert ArtifactStore.open(spec, create=False).version("metrics/bicubic/paper")


def test_single_aoi_run_keeps_the_split_of_the_store(small_dataset: Path, tmp_path: Path) -> None:
    from flows.etl import etl

    spec = StoreSpec(uri=str(tmp_path / "st"))
    etl(ETLSpec(data=str(small_dataset), stages=["import", "split"]), spec)
    store = ArtifactStore.open(spec)
    split = store.read_json("splits/stratified")
    assert sorted(split["train"] + split["val"] + split["test"]) == AOIS
    version = store.version("splits/stratified")
    one = etl(ETLSpec(data=str(small_dataset), aois=AOIS[:1], stages=["import", "split"]), spec)
    assert [r["status"] for r in one["records"] if r["stage"] == "split"] == ["unchanged"]
    assert store.version("splits/stratified") == version
    # stages= wins over a spec's own stages (what the stage deployments rely on)
    only = etl(ETLSpec(data=str(small_dataset), aois=AOIS[:1]), spec, stages=["split"])
    assert [r["stage"] for r in only["records"]] == ["split"]


def _corrupt(dataset: Path, aoi: str) -> str:
    bad = next((dataset / "lr_dataset" / aoi / "L2A").glob("*-2.metadata"))
    bad.write_text("{")
    return bad.name


def test_every_failure_is_reported_and_fails_the_run(small_dataset: Path, tmp_path: Path) -> None:
    from flows.etl import etl

    names = [_corrupt(small_dataset, aoi) for aoi in AOIS]
    spec = StoreSpec(uri=str(tmp_path / "st"))
    with pytest.raises(RunFailures) as err:
        etl(ETLSpec(data=str(small_dataset), stages=["import", "mask"]), spec)
    text = str(err.value)
    assert "2 AOI(s)" in text and all(n in text for n in names) and all(a in text for a in AOIS)
    # with --skip-bad and every AOI bad, nothing succeeded: that is a failure too
    with pytest.raises(RunFailures, match="nothing succeeded"):
        etl(ETLSpec(data=str(small_dataset), stages=["import"], skip_bad=True), spec)


def test_one_bad_aoi_fails_the_run_after_the_good_one_commits(small_dataset: Path, tmp_path: Path) -> None:
    from flows.etl import etl

    name = _corrupt(small_dataset, AOIS[1])
    spec = StoreSpec(uri=str(tmp_path / "st"))
    with pytest.raises(RunFailures, match=name):
        etl(ETLSpec(data=str(small_dataset), stages=["import"]), spec)
    assert ArtifactStore.open(spec).list("raw") == [f"raw/{AOIS[0]}"]
    ok = etl(ETLSpec(data=str(small_dataset), stages=["import"], skip_bad=True), spec)
    assert sorted(r["status"] for r in ok["records"]) == ["skipped", "unchanged"]


def test_missing_metadata_named_as_on_disk(worldstrat: Path, tmp_path: Path) -> None:
    from conftest import copy_aois

    from stliif.errors import DataAccessError
    from stliif.sources.worldstrat import find_aoi_files

    root = copy_aois(worldstrat, tmp_path / "ws", ["Amnesty_POI-8-1-1"])
    (root / "lr_dataset/Amnesty_POI-8-1-1/L2A/Amnesty POI-8-1-1-1.metadata").unlink()
    with pytest.raises(DataAccessError, match="Amnesty POI-8-1-1-1.metadata"):
        find_aoi_files(root, "Amnesty_POI-8-1-1")


def test_force_recomputes_and_every_stage_run_says_what_it_did(
    small_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.etl import etl

    logger = logging.getLogger("prefect.task_runs")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(caplog.handler)
    try:
        spec = StoreSpec(uri=str(tmp_path / "st"))
        run = ETLSpec(data=str(small_dataset), aois=AOIS[1:], stages=["import", "mask", "subset"], modes=["paper"])
        etl(run, spec)
        store = ArtifactStore.open(spec)
        n = len(store.log())
        caplog.clear()
        state = etl(run.model_copy(update={"force": True}), spec, stages=["mask"], return_state=True)
        forced = state.result()
        assert [r["status"] for r in forced["records"]] == ["committed"] and len(store.log()) == n + 1
        lines = [r.getMessage() for r in caplog.records if r.name == "prefect.task_runs"]
        key = forced["records"][0]["run_key"]
        assert any(ln == f"committed {AOIS[1]}: mask/{AOIS[1]} (run key {key})" for ln in lines), lines
        # task runs are named with their mode
        with get_client(sync_client=True) as client:
            first = etl(run, spec, return_state=True)
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[first.state_details.flow_run_id])))
        assert {r.name for r in runs} >= {f"import-{AOIS[1]}", f"subset-paper-{AOIS[1]}"}
        assert [r["status"] for r in first.result()["records"]] == ["unchanged"] * 3
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


def test_a_split_racing_an_import_ends_with_every_aoi(small_dataset: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Run A reads the store's AOIs, run B imports another AOI and writes its split, then A
    commits: A's stale split would be the last word, so A checks again and writes it anew."""
    from stliif.stages import run_split, run_stage

    store = ArtifactStore.open(str(tmp_path / "st"))
    run_stage(store, "import", AOIS[0], data=small_dataset)
    commit = store.commit
    raced = []

    def commit_after_a_rival(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not raced:  # the rival (run B) commits between A's read of the AOIs and A's commit
            raced.append(True)
            run_stage(store, "import", AOIS[1], data=small_dataset)
            monkeypatch.setattr(store, "commit", commit)
            run_split(store)
            monkeypatch.setattr(store, "commit", commit_after_a_rival)
        return commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit", commit_after_a_rival)
    result = run_split(store)
    split = store.read_json("splits/stratified")
    assert raced and result.status == "committed"
    assert sorted(split["train"] + split["val"] + split["test"]) == AOIS
