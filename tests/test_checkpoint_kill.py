"""SIGKILL during checkpoint saves: the checkpoint on disk always loads, whole, at some step."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from stliif.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("checkpoint_worker.py")
RUNS = 8


def test_sigkill_during_saves_leaves_a_whole_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    rng = random.Random(0)
    last_step = 0
    for run in range(RUNS):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(path)], cwd=Path(__file__).parents[1])
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)  # the first run waits for a first checkpoint
        time.sleep(rng.uniform(0.2, 1.5))
        assert proc.poll() is None, f"worker died on its own (run {run})"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = load_checkpoint(path)  # never torn: the old file or the new one
        values = torch.cat([v.flatten() for v in ck.state_dict.values() if v.is_floating_point()]).unique()
        assert values.tolist() == [float(ck.step)], f"run {run}: mixed weights {values[:5]}"
        assert ck.step >= 1
        last_step = ck.step
    assert last_step >= 1
