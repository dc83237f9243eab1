"""The ETL flow under Prefect: stages, idempotent reruns, data refresh, single stages, skips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from stliif.config import ETLSpec, StoreSpec
from stliif.errors import RunFailures
from stliif.store import ArtifactStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

AOIS = ["Amnesty_POI-13-1-1", "Landcover-14956"]


def _by(records: list[dict], aoi: str) -> dict[str, str]:
    return {f"{r['stage']}-{r['artifacts'][0].split('/')[1] if r['stage'] in ('subset', 'histogram') else ''}".rstrip("-"): r["status"]
            for r in records if r["aoi"] == aoi}


def _add_revisit(root: Path, aoi: str, src_n: int, new_n: int, date: str) -> None:
    folder = root / "lr_dataset" / aoi / "L2A"
    for f in sorted(folder.glob(f"{aoi}-{src_n}[-.]*")):
        target = folder / f.name.replace(f"{aoi}-{src_n}", f"{aoi}-{new_n}", 1)
        shutil.copy(f, target)
        if target.suffix == ".metadata":
            meta = json.loads(target.read_text())
            meta["lowres_date"] = date
            target.write_text(json.dumps(meta))


def test_etl_runs_reruns_and_refreshes_only_what_changed(small_dataset: Path, tmp_path: Path) -> None:
    from flows.etl import etl

    store_spec = StoreSpec(uri=str(tmp_path / "store"))
    spec = ETLSpec(data=str(small_dataset), aois=AOIS)
    first = etl(spec, store_spec)
    store = ArtifactStore.open(store_spec)
    for aoi in AOIS:
        statuses = _by(first["records"], aoi)
        assert set(statuses.values()) <= {"committed", "skipped"}
        assert statuses["import"] == statuses["mask"] == statuses["subset-clean"] == "committed"
        for path in (f"raw/{aoi}", f"mask/{aoi}", f"subset/clean/{aoi}", f"subset/paper/{aoi}",
                     f"matched/clean/{aoi}", f"matched/paper/{aoi}"):
            assert store.version(path), path
    split = [r for r in first["records"] if r["stage"] == "split"][0]
    assert split["status"] == "committed" and store.read_json("splits/stratified")["name"] == "stratified"
    assert first["snapshot_id"] == store.snapshot_id()
    n_commits = len(store.log())

    # A rerun with nothing changed commits nothing.
    second = etl(spec, store_spec)
    assert {r["status"] for r in second["records"]} == {"unchanged"}
    assert len(store.log()) == n_commits and second["snapshot_id"] == first["snapshot_id"]

    # A refresh (a new revisit for one AOI) recomputes that AOI's stages only.
    _add_revisit(small_dataset, "Landcover-14956", 1, 9, "2019-10-21")
    third = etl(spec, store_spec)
    changed = _by(third["records"], "Landcover-14956")
    assert changed["import"] == changed["mask"] == changed["subset-clean"] == "committed"
    assert changed["histogram-clean"] == changed["histogram-paper"] == "committed"
    assert set(_by(third["records"], "Amnesty_POI-13-1-1").values()) == {"unchanged"}
    assert [r["status"] for r in third["records"] if r["stage"] == "split"] == ["unchanged"]
    refreshed = store.read("raw/Landcover-14956")
    assert refreshed.sizes["time"] == 9 and 9 in refreshed["revisit"].values
    # The clean subset now prefers the new revisit, one day from the HR date.
    assert 9 in store.read_json("subset/clean/Landcover-14956")["revisits"]
    # The refresh commits carry the new input versions as lineage.
    imports = [c for c in store.log() if c.metadata.get("stage") == "import"]
    assert imports[0].metadata["params"]["aoi"] == "Landcover-14956"
    assert imports[0].metadata["inputs"]["source"] != imports[-1].metadata["inputs"]["source"] or len(imports) == 3


def test_single_stage_rerun_reads_inputs_from_store(small_dataset: Path, tmp_path: Path) -> None:
    from flows.etl import etl

    store_spec = StoreSpec(uri=str(tmp_path / "store"))
    etl(ETLSpec(data=str(small_dataset), aois=AOIS[:1], stages=["import", "mask"]), store_spec)
    only = etl(ETLSpec(data=str(small_dataset), aois=AOIS[:1], stages=["subset"], modes=["clean"]), store_spec)
    assert [(r["stage"], r["status"]) for r in only["records"]] == [("subset", "committed")]
    # a stage whose input was never produced is skipped with a record, not a crash
    missing = etl(ETLSpec(data=str(small_dataset), aois=AOIS[1:], stages=["mask"]), store_spec)
    (rec,) = missing["records"]
    assert rec["status"] == "skipped" and "raw/Landcover-14956" in rec["reason"]


def test_bad_aoi_skipped_with_reason_when_asked(small_dataset: Path, tmp_path: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.etl import etl

    bad = next((small_dataset / "lr_dataset/Landcover-14956/L2A").glob("*-3-L2A_data.tiff"))
    bad.write_bytes(bad.read_bytes()[:1000])
    result = etl(
        ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import", "mask", "split"], skip_bad=True),
        StoreSpec(uri=str(tmp_path / "store")),
    )
    rec = {(r["stage"], r["aoi"]): r for r in result["records"]}
    assert rec[("import", "Landcover-14956")]["status"] == "skipped"
    assert "Landcover-14956-3-L2A_data.tiff" in rec[("import", "Landcover-14956")]["reason"]
    assert rec[("import", "Amnesty_POI-13-1-1")]["status"] == "committed"
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    assert store.read_json("splits/stratified")["train"] + store.read_json("splits/stratified")["val"] + \
        store.read_json("splits/stratified")["test"] == ["Amnesty_POI-13-1-1"]
    report = Artifact.get(f"etl-report-{ArtifactStore.open(StoreSpec(uri=str(tmp_path / 'store'))).store_id[:12]}")
    assert report is not None and "Skipped" in str(report.data) and "Landcover-14956" in str(report.data)


def test_corrupted_file_fails_the_flow_by_default(small_dataset: Path, tmp_path: Path) -> None:
    from flows.etl import etl

    bad = next((small_dataset / "lr_dataset/Landcover-14956/L2A").glob("*-2.metadata"))
    bad.write_text("{")
    state = etl(ETLSpec(data=str(small_dataset), aois=AOIS[1:], stages=["import"]),
                StoreSpec(uri=str(tmp_path / "store")), return_state=True)
    assert state.is_failed()
    with pytest.raises(RunFailures, match="Landcover-14956-2.metadata"):
        state.result()


def test_etl_on_s3_moto(small_dataset: Path, s3_env: str) -> None:
    """The ETL on S3-compatible storage: batches commit side by side and rebase, nothing is lost."""
    import os

    from flows.etl import etl

    spec = StoreSpec(uri=f"s3://{os.environ['STLIIF_TEST_BUCKET']}/etl", endpoint_url=s3_env, allow_http=True)
    result = etl(ETLSpec(data=str(small_dataset), aois=AOIS, modes=["clean"]), spec)
    store = ArtifactStore.open(spec, create=False)
    committed = [r for r in result["records"] if r["status"] == "committed"]
    assert len(committed) == 2 * 5 + 1  # 5 stages per AOI + split
    # one batch per AOI here (the runner's threads): every committed run is in the history once
    runs = [run["run_key"] for c in store.log() for run in c.runs]
    assert sorted(runs) == sorted(r["run_key"] for r in committed)
    assert sum(len(c.runs) == 1 for c in store.log()) == len(runs)  # two batches of one AOI each
    for aoi in AOIS:
        assert store.read(f"pansharpened/{aoi}")["rgbn"].shape == (4, 1054, 1054)
        assert store.read_json(f"subset/clean/{aoi}")["mode"] == "clean"
    again = etl(ETLSpec(data=str(small_dataset), aois=AOIS, modes=["clean"]), spec)
    assert {r["status"] for r in again["records"]} == {"unchanged"}
    n = len(store.log())
    one = etl(ETLSpec(data=str(small_dataset), aois=AOIS, modes=["clean"], batch_size=2, force=True), spec,
              stages=["mask"])  # fmt: skip
    assert [r["status"] for r in one["records"]] == ["committed"] * 2
    assert len(store.log()) == n + 2  # min(AOIs, threads) batches, one commit each


def test_etl_on_a_local_dask_cluster(small_dataset: Path, tmp_path: Path) -> None:
    """The same flow on prefect-dask (worker processes on 127.0.0.1): the store lock holds."""
    from flows.etl import etl
    from flows.runners import task_runner

    spec = StoreSpec(uri=str(tmp_path / "store"))
    on_dask = etl.with_options(task_runner=task_runner("local", workers=2))
    result = on_dask(ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import", "mask"]), spec)
    assert sorted(r["status"] for r in result["records"]) == ["committed"] * 4
    store = ArtifactStore.open(spec)
    assert store.list("mask") == [f"mask/{a}" for a in sorted(AOIS)]
    # a batch per worker, one commit each: 2 stages x 2 batches of one AOI, every run once
    stages = [c.metadata.get("stage") for c in store.log() if c.runs]
    assert sorted(stages) == ["import"] * 2 + ["mask"] * 2


def _task_runs(state: State) -> list[TaskRun]:
    """The task runs of the flow run that ended in ``state``, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))


def test_batches_run_side_by_side_on_threads(small_dataset: Path, tmp_path: Path) -> None:
    """On the default thread pool the batches overlap: every batch's import runs before any
    batch's later stage takes a worker (a worker that picks a task whose upstream has not
    finished waits there, so a batch's stages submitted together filled every worker)."""
    from flows.etl import etl

    state = etl(ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import", "mask", "pansharpen"]),
                StoreSpec(uri=str(tmp_path / "store")), return_state=True)
    assert state.is_completed()
    runs = _task_runs(state)
    imports = sorted((r for r in runs if r.name.startswith("import-")), key=lambda r: r.start_time)
    assert len(imports) == 2 and all(r.start_time and r.end_time for r in imports)
    assert imports[1].start_time < imports[0].end_time, [(r.name, r.start_time, r.end_time) for r in imports]


def test_more_batches_than_workers_go_in_waves(small_dataset: Path, tmp_path: Path) -> None:
    """Batches beyond one per worker wait for the wave before them to finish every stage: with
    one worker and batches of one AOI, the first AOI's mask runs before the second's import."""
    from flows.etl import etl
    from flows.runners import task_runner

    one_worker = etl.with_options(task_runner=task_runner(workers=0))
    state = one_worker(ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import", "mask"], batch_size=1),
                       StoreSpec(uri=str(tmp_path / "store")), return_state=True)
    assert state.is_completed()
    runs = _task_runs(state)
    order = [r.name.split("-")[0] for r in sorted(runs, key=lambda r: r.start_time)]
    assert order == ["import", "mask", "import", "mask"], order


def test_one_batch_isolates_a_failed_aoi_and_announces_each_changed_one(
    small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both AOIs in one batch (one worker): the corrupted one fails alone, its downstream stage is
    not run, the other commits, and the import announces the AOI that changed, by name."""
    import prefect.events

    from flows.etl import etl
    from flows.runners import task_runner

    events: list[dict] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **kw: events.append(kw))
    spec = StoreSpec(uri=str(tmp_path / "store"))
    one_worker = etl.with_options(task_runner=task_runner(workers=0))
    imported = one_worker(ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import"]), spec)
    assert [e["resource"]["stliif.aoi"] for e in events] == AOIS
    assert {e["event"] for e in events} == {"stliif.artifact.committed"}
    assert ArtifactStore.open(spec).log()[0].metadata["stage"] == "import"
    assert len(ArtifactStore.open(spec).log()[0].runs) == 2  # one commit for the batch

    events.clear()
    bad = next((small_dataset / "lr_dataset" / AOIS[0] / "L2A").glob("*-2-L2A_data.tiff"))
    bad.write_bytes(bad.read_bytes()[:1000])
    _add_revisit(small_dataset, AOIS[1], 1, 9, "2019-10-21")
    state = one_worker(ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import"]), spec, return_state=True)
    with pytest.raises(RunFailures, match=f"1 stage run.*{AOIS[0]} \\(import\\).*-2-L2A_data.tiff"):
        state.result()
    assert [e["resource"]["stliif.aoi"] for e in events] == [AOIS[1]]  # only the AOI that changed
    assert ArtifactStore.open(spec).read("raw/" + AOIS[1]).sizes["time"] == 9

    # the failed import blocks that AOI's mask, which would otherwise run on its old cube
    both = one_worker(ETLSpec(data=str(small_dataset), aois=AOIS, stages=["import", "mask"]), spec,
                      return_state=True)  # fmt: skip
    assert both.is_failed() and ArtifactStore.open(spec).list("mask") == [f"mask/{AOIS[1]}"]
    assert imported["snapshot_id"] != ArtifactStore.open(spec).snapshot_id()
