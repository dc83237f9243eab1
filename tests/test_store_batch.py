"""Fewer, larger commits: a stage run over many AOIs commits once, keeping per-AOI keys and lineage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stliif.errors import DataAccessError, StoreError
from stliif.stages import run_stage, run_stage_batch
from stliif.store import ArtifactStore, run_key


def _ds(value: float) -> xr.Dataset:
    times = np.array(["2020-01-01", "2020-01-06"], dtype="datetime64[ns]")
    return xr.Dataset({"v": (("time", "y", "x"), np.full((2, 3, 4), value, np.float32))}, coords={"time": times})


def _add_all(store: ArtifactStore, values: dict[str, float]) -> list[bool]:
    with store.batch("demo") as batch:
        return [batch.add({f"out/{a}": _ds(v)}, params={"aoi": a, "v": v})[1] for a, v in values.items()]


def test_a_batch_is_one_commit_with_each_runs_key_and_lineage(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    n = len(store.log())
    assert _add_all(store, {"a": 1.0, "b": 2.0, "c": 3.0}) == [True, True, True]
    (commit, *_) = store.log()
    assert len(store.log()) == n + 1
    runs = commit.metadata["runs"]
    assert [r["artifacts"] for r in runs] == [["out/a"], ["out/b"], ["out/c"]]
    for r, a in zip(runs, "abc", strict=True):
        assert store.version(f"out/{a}") == r["run_key"] == run_key("demo", r["params"], {})
    assert commit.metadata["artifacts"] == ["out/a", "out/b", "out/c"]
    assert float(store.read("out/b", load=True)["v"][0, 0, 0]) == 2.0



def test_the_run_of_a_path_in_a_batch_commit_is_its_own(tmp_path: Path) -> None:
    """Lineage readers (the viewer, ``stliif store log``) find each AOI's key and params."""
    store = ArtifactStore.open(str(tmp_path / "s"))
    _add_all(store, {"a": 1.0, "b": 2.0})
    (batch, *_) = store.log()
    assert batch.run_of("out/b")["run_key"] == store.version("out/b") and batch.run_of("out/b")["params"]["v"] == 2.0
    assert batch.run_of("out/a")["params"]["v"] == 1.0 and batch.run_of("out/nope") is None
    store.commit({"out/c": _ds(3.0)}, stage="demo", params={"aoi": "c"})
    (single, *_) = store.log()
    assert single.run_of("out/c")["run_key"] == store.version("out/c") and single.run_of("out/a") is None

def test_an_unchanged_rerun_commits_nothing_and_a_change_commits_that_run_alone(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    _add_all(store, {"a": 1.0, "b": 2.0, "c": 3.0})
    snap, n = store.snapshot_id(), len(store.log())
    assert _add_all(store, {"a": 1.0, "b": 2.0, "c": 3.0}) == [False, False, False]
    assert (store.snapshot_id(), len(store.log())) == (snap, n)
    assert _add_all(store, {"a": 1.0, "b": 5.0, "c": 3.0}) == [False, True, False]
    (commit, *_) = store.log()
    assert commit.metadata["artifacts"] == ["out/b"] and len(store.log()) == n + 1
    # a batch of one run records its key, params and inputs at the top level, as commit() does
    assert commit.metadata["run_key"] == store.version("out/b") and commit.metadata["params"]["v"] == 5.0


def test_a_batch_rebases_over_a_commit_made_meanwhile(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    other = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"out/first": _ds(0.0)}, stage="demo", params={})  # the parent group exists
    with store.batch("demo") as batch:
        batch.add({"out/a": _ds(1.0)}, params={"aoi": "a"})
        other.commit({"out/z": _ds(9.0)}, stage="other", params={})
        batch.add({"out/b": _ds(2.0)}, params={"aoi": "b"})
    assert store.list("out") == ["out/a", "out/b", "out/first", "out/z"]
    assert [c.metadata.get("stage") for c in store.log()[:2]] == ["demo", "other"]


def test_a_batch_overlapping_a_commit_made_meanwhile_fails_and_commits_nothing(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    other = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"out/first": _ds(0.0)}, stage="demo", params={})
    with pytest.raises(StoreError, match="commit of stage 'demo' failed"), store.batch("demo") as batch:
        batch.add({"out/a": _ds(1.0)}, params={"aoi": "a"})
        other.commit({"out/a": _ds(9.0)}, stage="other", params={})
    assert float(store.read("out/a", load=True)["v"][0, 0, 0]) == 9.0 and store.log()[0].metadata["stage"] == "other"


def test_a_block_that_raises_commits_nothing(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    snap = store.snapshot_id()
    with pytest.raises(RuntimeError), store.batch("demo") as batch:
        batch.add({"out/a": _ds(1.0)}, params={"aoi": "a"})
        raise RuntimeError("boom")
    assert store.snapshot_id() == snap and store.list("out") == []


@pytest.mark.integration
def test_run_stage_batch_one_commit_per_stage_run_and_single_aoi_refresh(small_dataset: Path, tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    aois = ["Amnesty_POI-13-1-1", "Landcover-14956"]
    n = len(store.log())
    results = run_stage_batch(store, "import", aois, data=small_dataset)
    # one commit of the stage, after one of the groups batches share (raw, hr; not hr/<aoi>)
    assert [r.status for r in results] == ["committed", "committed"] and len(store.log()) == n + 2
    assert [c.metadata["stage"] for c in store.log()[:2]] == ["import", "groups"]
    assert store.log()[1].metadata["groups"] == ["hr", "raw"]
    assert {r.snapshot_id for r in results} == {store.snapshot_id()}
    assert results[0].summary["revisits"] > 0
    mask = run_stage_batch(store, "mask", aois, data=small_dataset)
    assert [r.status for r in mask] == ["committed", "committed"] and len(store.log()) == n + 4
    # the same keys as one run per AOI: a per-AOI rerun finds them unchanged
    assert all(run_stage(store, "mask", a, data=small_dataset).status == "unchanged" for a in aois)
    # unchanged rerun: nothing committed
    snap = store.snapshot_id()
    for stage in ("import", "mask"):
        assert [r.status for r in run_stage_batch(store, stage, aois, data=small_dataset)] == ["unchanged"] * 2
    assert store.snapshot_id() == snap
    # one AOI's source rewritten: only that AOI is recomputed and committed
    meta = next((small_dataset / "lr_dataset" / aois[1] / "L2A").glob("*.metadata"))
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 10**9))
    for stage in ("import", "mask"):
        n = len(store.log())
        res = run_stage_batch(store, stage, aois, data=small_dataset)
        assert [r.status for r in res] == ["unchanged", "committed"], stage
        assert store.log()[0].metadata["artifacts"] == list(res[1].artifacts) and len(store.log()) == n + 1


@pytest.mark.integration
def test_run_stage_batch_commits_the_aois_before_an_error(small_dataset: Path, tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    aois = ["Amnesty_POI-13-1-1", "Landcover-14956"]
    next((small_dataset / "lr_dataset" / aois[1] / "L2A").glob("*_data.tiff")).write_bytes(b"not a tiff")
    with pytest.raises(DataAccessError):
        run_stage_batch(store, "import", aois, data=small_dataset)
    assert store.list("raw") == [f"raw/{aois[0]}"]
    skipped = run_stage_batch(store, "import", aois, data=small_dataset, skip_errors=True)
    assert [r.status for r in skipped] == ["unchanged", "skipped"]


@pytest.mark.integration
def test_run_stage_batch_write_failure_commits_nothing(
    small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails halfway through an AOI's artifacts commits no AOI: none out of step."""
    store = ArtifactStore.open(str(tmp_path / "s"))
    snap, real = store.snapshot_id(), ArtifactStore._write
    calls = []

    def failing(session: object, path: str, *args: object) -> None:
        calls.append(path)
        if len(calls) == 5:  # the second AOI's hr/<aoi>/pan, after its raw/<aoi>
            raise OSError(28, "No space left on device")
        real(session, path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ArtifactStore, "_write", staticmethod(failing))
    with pytest.raises(StoreError, match="nothing committed"):
        run_stage_batch(store, "import", ["Amnesty_POI-13-1-1", "Landcover-14956"], data=small_dataset)
    # no artifact committed: the branch moved only by the parent groups' own commit
    assert store.log()[0].metadata["stage"] == "groups" and store.log()[1].snapshot_id == snap
    assert store.list("raw") == [] and store.list("hr") == []


def test_concurrent_batches_into_new_parent_groups_both_commit(tmp_path: Path) -> None:
    """Two batches of one stage writing siblings under a parent that does not exist yet: each
    would create it, which Icechunk cannot rebase; the parents are committed first, once."""
    import threading

    store = ArtifactStore.open(str(tmp_path / "s"))
    store.ensure_groups(["new/deep"])
    start, n = store.snapshot_id(), len(store.log())
    store.ensure_groups(["new/deep", "new"])  # nothing missing: no commit
    assert (store.snapshot_id(), len(store.log())) == (start, n)
    batches = [store.batch("demo").__enter__() for _ in range(2)]  # both sessions from one base
    for batch, aoi in zip(batches, ("a", "b"), strict=True):
        batch.add({f"new/deep/{aoi}": _ds(1.0)}, params={"aoi": aoi})
    threads = [threading.Thread(target=b.commit) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.list("new") == ["new/deep/a", "new/deep/b"] and len(store.log()) == n + 2


@pytest.mark.integration
def test_keep_going_records_a_failed_aoi_and_commits_the_others(small_dataset: Path, tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    aois = ["Amnesty_POI-13-1-1", "Landcover-14956"]
    next((small_dataset / "lr_dataset" / aois[0] / "L2A").glob("*_data.tiff")).write_bytes(b"not a tiff")
    res = run_stage_batch(store, "import", aois, data=small_dataset, keep_going=True)
    assert [r.status for r in res] == ["failed", "committed"] and "_data.tiff" in res[0].reason
    assert store.list("raw") == [f"raw/{aois[1]}"]
    # downstream: the failed AOI is blocked (not run), the other runs
    mask = run_stage_batch(store, "mask", aois, data=small_dataset, keep_going=True, blocked={aois[0]})
    assert [(r.aoi, r.status) for r in mask] == [(aois[0], "not run"), (aois[1], "committed")]
    assert store.list("mask") == [f"mask/{aois[1]}"]

