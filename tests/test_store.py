"""The versioned artifact store: lineage, idempotence, refs, lock, kill safety, S3."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import stliif
from stliif.config import StoreSpec
from stliif.errors import InvalidInputError, StoreError
from stliif.store import ArtifactStore, run_key

WORKER = Path(__file__).with_name("store_worker.py")


def _cube(value: float = 1.0) -> xr.Dataset:
    return xr.Dataset(
        {"v": (("time", "y", "x"), np.full((2, 3, 4), value, np.float32))},
        coords={"time": np.array(["2020-01-01", "2020-01-06"], dtype="datetime64[ns]"), "band_name": "red"},
        attrs={"aoi": "a"},
    )


def test_commit_records_lineage_and_is_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    first = store.commit({"raw/a": _cube(), "meta/a": {"k": [1, 2]}}, stage="import", params={"p": 1},
                         inputs={"source": "abc"}, run_id="run-1")
    assert first.created
    again = store.commit({"raw/a": _cube(), "meta/a": {"k": [1, 2]}}, stage="import", params={"p": 1},
                         inputs={"source": "abc"}, run_id="run-2")
    assert not again.created and again.snapshot_id == first.snapshot_id
    head = store.log()[0]
    md = head.metadata
    assert md["stage"] == "import" and md["run_key"] == first.run_key
    assert md["inputs"] == {"source": "abc"} and md["run_id"] == "run-1"
    assert md["code_version"] == stliif.code_version() and set(md["artifacts"]) == {"raw/a", "meta/a"}
    assert store.version("raw/a") == first.run_key == run_key("import", {"p": 1}, {"source": "abc"})
    assert store.read_json("meta/a") == {"k": [1, 2]}
    xr.testing.assert_equal(store.read("raw/a", load=True)["v"], _cube()["v"])
    # a changed input is a new key and a new commit
    changed = store.commit({"raw/a": _cube(2)}, stage="import", params={"p": 1}, inputs={"source": "abd"})
    assert changed.created and changed.run_key != first.run_key
    assert store.list() == ["meta/a", "raw/a"]


def test_an_empty_store_lists_nothing(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    assert store.list() == [] and store.list("raw") == []
    assert store.version("raw/x") is None


def test_read_at_tag_branch_and_snapshot(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    old = store.commit({"raw/a": _cube(1)}, stage="s", params={"i": 1}).snapshot_id
    store.tag("v1")
    store.commit({"raw/a": _cube(2)}, stage="s", params={"i": 2})
    assert float(store.read("raw/a", ref="v1")["v"].max()) == 1
    assert float(store.read("raw/a", ref=old)["v"].max()) == 1
    assert float(store.read("raw/a")["v"].max()) == 2
    store.create_branch("exp", ref="v1")
    assert float(store.read("raw/a", ref="exp")["v"].max()) == 1
    assert "exp" in store.branches() and store.tags() == ["v1"]
    with pytest.raises(InvalidInputError, match="unknown branch, tag or snapshot"):
        store.read("raw/a", ref="nope")
    with pytest.raises(StoreError, match="no artifact"):
        store.read("raw/missing")


def test_versions_follow_other_writers(tmp_path: Path) -> None:
    """Versions are remembered per snapshot, never per branch: a commit by another writer (another
    store object, as another process would) is seen at once, at the branch and at a tag."""
    reader, writer = ArtifactStore.open(str(tmp_path / "s")), ArtifactStore.open(str(tmp_path / "s"))
    assert reader.version("raw/a") is None
    first = writer.commit({"raw/a": _cube(1)}, stage="s", params={"i": 1})
    assert reader.version("raw/a") == first.run_key
    writer.tag("v1")
    second = writer.commit({"raw/a": _cube(2)}, stage="s", params={"i": 2})
    assert second.run_key != first.run_key
    assert reader.version("raw/a") == second.run_key
    assert reader.version("raw/a", ref="v1") == first.run_key
    assert reader.version("raw/a", ref=first.snapshot_id) == first.run_key


@pytest.mark.parametrize("bad", ["../x", "/abs", "a//b", "a/..", "a b", "a\0b", ""])
def test_unsafe_artifact_paths_rejected(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    with pytest.raises(InvalidInputError):
        store.commit({bad: {"x": 1}}, stage="s", params={})
    with pytest.raises(InvalidInputError):
        store.tag("Bad/Tag")


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    ArtifactStore.open(uri)
    n_writers, n_commits = 4, 5
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), uri, str(w), str(n_commits)])
        for w in range(n_writers)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    store = ArtifactStore.open(uri)
    assert len(store.list()) == n_writers * n_commits
    assert len(store.log()) == n_writers * n_commits + 2  # + the initial snapshot and the identity


def test_sigkill_leaves_last_good_snapshot(tmp_path: Path) -> None:
    uri = str(tmp_path / "s")
    ArtifactStore.open(uri)
    rng = random.Random(0)
    kills = 6
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, str(WORKER), uri, "loop"])
        # Kill at a random moment after this worker's first commit (its start-up time varies
        # with the machine's load; a kill before any commit would prove nothing).
        head = ArtifactStore.open(uri).snapshot_id()
        deadline = time.monotonic() + 120
        while ArtifactStore.open(uri).snapshot_id() == head and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = ArtifactStore.open(uri)
        if not store.list():
            continue
        cube = store.read("kill/x", load=True)
        i = cube.attrs["i"]
        assert (cube["v"].values == i).all(), "a snapshot mixes two writes"
        assert store.read_json("kill/y") == {"i": i}, "artifacts of one commit out of step"
        assert store.log()[0].metadata["params"] == {"i": i}
    assert ArtifactStore.open(uri).list(), "no commit landed in any run: the test proved nothing"


def test_store_on_s3_moto(s3_env: str) -> None:
    spec = StoreSpec(uri=f"s3://{os.environ['STLIIF_TEST_BUCKET']}/stores/t", endpoint_url=s3_env, allow_http=True)
    store = ArtifactStore.open(spec)
    res = store.commit({"raw/a": _cube(3)}, stage="import", params={})
    reopened = ArtifactStore.open(spec, create=False)
    assert reopened.snapshot_id() == res.snapshot_id
    assert float(reopened.read("raw/a")["v"].max()) == 3
    assert "testing-secret" not in repr(reopened.log()[0])


def test_store_spec_refuses_inline_credentials() -> None:
    with pytest.raises(ValueError, match="credentials"):
        StoreSpec(uri="s3://key:secret@bucket/prefix")


def test_code_version_follows_the_source(tmp_path: Path) -> None:
    """A code edit changes the code version, hence every run key: cached stage results are not
    reused across edits (a version bump is not needed)."""
    import shutil
    import subprocess
    import sys

    src = Path(stliif.__file__).parent
    shutil.copytree(src, tmp_path / "stliif", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import stliif; print(stliif.code_version())"

    def version() -> str:
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    before = version()
    assert before == stliif.code_version() and before.startswith(stliif.__version__ + "+")
    (tmp_path / "stliif/preprocess/mask.py").write_text((src / "preprocess/mask.py").read_text() + "\n# edited\n")
    assert version() != before
