"""Interrupts: SIGINT and SIGTERM stop `stliif etl` within 5 s with one line; SIGINT, SIGTERM
and SIGKILL leave no process behind and the store at a whole snapshot (issue: runs that never
lie, item 4)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stliif.errors import StliifError
from stliif.store import ArtifactStore
from stliif_cli.runtime import child_pids

pytestmark = pytest.mark.integration

STLIIF = Path(sys.executable).with_name("stliif")


def _snapshots(store: Path) -> int:
    return len(list((store / "snapshots").iterdir())) if (store / "snapshots").is_dir() else 0


def _listed(store: Path) -> int:
    """Artifacts at the store's head (0 before it exists). A snapshot file is written before the
    branch moves to it, so counting files can run ahead of what a reader sees at the head."""
    try:
        return len(ArtifactStore.open(str(store), create=False).list())
    except StliifError:
        return 0


def _wait(cond, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("the run never reached the point to interrupt")
        time.sleep(0.05)


def _whole(store: Path) -> int:
    """Open the store and read every artifact at its head: a torn snapshot would fail here."""
    st = ArtifactStore.open(str(store), create=False)
    paths = st.list()
    for p in paths:
        st.read(p)
    return len(paths)


@pytest.mark.parametrize("point", ["server-start", "after-first-commit", "mid-run"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupt_stops_cleanly(worldstrat: Path, tmp_path: Path, sig: signal.Signals, point: str) -> None:
    store = tmp_path / "store"
    env = _prefect_env(tmp_path / "prefect")
    # mid-run: one AOI per batch, so that commits come often; otherwise a batch per worker
    batch = ["--batch-size", "1"] if point == "mid-run" else []
    proc = subprocess.Popen([str(STLIIF), "etl", "--data", str(worldstrat), "--store", str(store), "--stage", "import", *batch],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)  # fmt: skip
    try:
        if point == "server-start":  # the temporary Prefect server is starting, no flow yet
            _wait(lambda: any("uvicorn" in _cmdline(p) for p in child_pids(proc.pid)) or proc.poll() is not None)
        elif point == "after-first-commit":  # the head holds the first import (raw, hr/pan, hr/rgbn)
            _wait(lambda: _listed(store) >= 3 or proc.poll() is not None)
        else:  # 12 batches of one AOI committed (after repository creation, identity, shared groups)
            _wait(lambda: _snapshots(store) >= 15 or proc.poll() is not None)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        children = child_pids(proc.pid)
        assert children, "the run has its temporary server as a child"
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(1.0)  # a parent-death signal is delivered at once; give the kernel a moment
    left = [p for p in children if Path(f"/proc/{p}").exists() and "zombie" not in _status(p)]
    assert not left, f"processes left behind: {[_cmdline(p) for p in left]}"
    # nor any started after that snapshot (by the command's interrupt handler, say)
    strays = _with_env("PREFECT_HOME", env["PREFECT_HOME"])
    for pid in strays:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not strays, f"processes of this run left behind: {[_cmdline(p) for p in strays]}"
    if sig != signal.SIGKILL and point != "server-start":  # the flow run is not left running:
        # cancelled on SIGINT; on SIGTERM Prefect's own handler marks it crashed before ours runs
        expected = "CANCELLED" if sig == signal.SIGINT else "CRASHED"
        assert _flow_run_states(tmp_path / "prefect" / "prefect.db") == [expected]
    assert proc.returncode == 128 + sig if sig != signal.SIGKILL else proc.returncode == -signal.SIGKILL
    if sig != signal.SIGKILL:
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert errors == [f"error: interrupted by {sig.name}: stopped; the store keeps its last whole snapshot"], err[-2000:]
        assert "Traceback" not in err and took < 5.0, f"{took:.1f} s"
    if store.is_dir():
        n = _whole(store)
        assert point == "server-start" or n >= 3  # raw, hr/pan, hr/rgbn of the first AOI


def _prefect_env(home: Path) -> dict[str, str]:
    """This process's environment for a command run with its own Prefect home (no server URL:
    the command starts its own temporary server)."""
    return {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, "PREFECT_HOME": str(home)}


def _with_env(name: str, value: str) -> list[int]:
    """Live processes (not this one) whose environment sets ``name`` to ``value``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if f"{name}={value}".encode() in (entry / "environ").read_bytes().split(b"\0") and "zombie" not in _status(int(entry.name)):
                    out.append(int(entry.name))
    return out


def _flow_run_states(db: Path) -> list[str]:
    """The state of every flow run in a Prefect server's SQLite database."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        return [row[0] for row in con.execute("SELECT state_type FROM flow_run")]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


@pytest.mark.services  # it starts the temporary server
def test_temporary_server_writes_to_its_log_not_to_the_commands_pipes(tmp_path: Path) -> None:
    """The temporary server's stdout and stderr are its log file under $PREFECT_HOME, not the
    command's: a reader of the command's pipes sees them close when the command exits, not when
    the server it started is gone too."""
    code = (
        "import os\n"
        "from stliif_cli import runtime\n"
        "with runtime.temporary_api() as url:\n"
        "    pid = runtime._server.pid\n"
        "    print(os.readlink(f'/proc/{pid}/fd/1'), os.readlink(f'/proc/{pid}/fd/2'), runtime.server_log())\n"
    )
    env = _prefect_env(tmp_path / "prefect")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    fd1, fd2, log = out.stdout.split()
    assert log == str(tmp_path / "prefect" / "stliif-temporary-server.log")
    assert fd1 == fd2 == log and Path(log).is_file()


def test_an_unwritable_prefect_home_is_one_clear_error(worldstrat: Path, tmp_path: Path) -> None:
    """`stliif etl` with a PREFECT_HOME where the temporary server's log cannot be written (here
    a file): one line naming it and what to do, no traceback, a failing exit status."""
    home = tmp_path / "not-a-folder"
    home.write_text("")
    env = _prefect_env(home)
    out = subprocess.run([str(STLIIF), "etl", "--data", str(worldstrat), "--store", str(tmp_path / "store"), "--stage", "import"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"cannot write the temporary Prefect server's log {home}/" in errors[0], out.stderr[-2000:]
    assert "set PREFECT_HOME to a writable folder" in errors[0]
