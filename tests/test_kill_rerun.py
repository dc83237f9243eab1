"""A killed ETL run loses nothing: the rerun completes every stage exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from stliif.store import ArtifactStore

STLIIF = Path(sys.executable).with_name("stliif")


def test_sigkill_mid_etl_then_rerun_commits_each_stage_once(small_dataset: Path, tmp_path: Path) -> None:
    store_uri = str(tmp_path / "store")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "STLIIF_DATA": str(small_dataset)}
    cmd = [str(STLIIF), "etl", "--store", store_uri, "--mode", "clean"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill as soon as a few stages have committed (mid-run), bounded in time.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if (Path(store_uri) / "refs").exists() and any(c.runs for c in ArtifactStore.open(store_uri).log()):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ArtifactStore.open(store_uri).list("splits") == [], "the run finished before the kill: nothing was tested"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    store = ArtifactStore.open(store_uri)
    keys = [run["run_key"] for c in store.log() for run in c.runs]  # a batch commit holds several
    assert len(keys) == 2 * 5 + 1  # 5 stages x 2 AOIs + split, each exactly once
    assert not [k for k, n in Counter(keys).items() if n > 1]
    for aoi in ("Amnesty_POI-13-1-1", "Landcover-14956"):
        for path in (f"raw/{aoi}", f"mask/{aoi}", f"pansharpened/{aoi}", f"subset/clean/{aoi}", f"matched/clean/{aoi}"):
            assert store.version(path), path
