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
