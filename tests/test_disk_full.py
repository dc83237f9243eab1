"""Disk full: a store on a small tmpfs. The failing commit says so, the store keeps its last good
snapshot, and once space is freed the same stage completes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stliif.errors import StoreError
from stliif.stages import run_stage
from stliif.store import ArtifactStore

pytestmark = pytest.mark.integration

SIZE_MB = 24


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of SIZE_MB MiB mounted for the test (the tests run as root, as CI does)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, f"cannot mount a tmpfs: {out.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave: int) -> Path:
    """Write a filler file until only ``leave`` bytes are free."""
    free = shutil.disk_usage(mnt).free
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        f.truncate(0)
        block = b"\0" * (1 << 20)
        todo = free - leave
        while todo > 0:
            n = f.write(block[: min(len(block), todo)])
            todo -= n
        f.flush()
        os.fsync(f.fileno())
    return filler


def test_disk_full_commit_fails_cleanly_and_recovers(small_disk: Path, small_dataset: Path) -> None:
    store = ArtifactStore.open(str(small_disk / "store"))
    first, second = "Landcover-14956", "Amnesty_POI-13-1-1"
    assert run_stage(store, "import", first, data=small_dataset).status == "committed"
    head = store.snapshot_id()
    before = store.read(f"raw/{first}", load=True)
    filler = _fill(small_disk, leave=256 * 1024)
    with pytest.raises(StoreError, match="nothing committed: .*No space left on device") as err:
        run_stage(store, "import", second, data=small_dataset)
    assert "\n" not in str(err.value), "one line, not a Rust backtrace"
    # The store is intact at its last good snapshot, readable by a new process's view.
    again = ArtifactStore.open(str(small_disk / "store"), create=False)
    assert again.snapshot_id() == head and again.list("raw") == [f"raw/{first}"]
    np.testing.assert_array_equal(again.read(f"raw/{first}", load=True)["reflectance"].values,
                                  before["reflectance"].values)
    # Space freed: the same stage completes, exactly once.
    filler.unlink()
    assert run_stage(again, "import", second, data=small_dataset).status == "committed"
    assert run_stage(again, "import", second, data=small_dataset).status == "unchanged"
    assert again.list("raw") == sorted([f"raw/{first}", f"raw/{second}"])
