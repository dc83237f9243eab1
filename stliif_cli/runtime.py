"""How the CLI runs a flow: after every argument is checked, under a Prefect API it can stop.

Without ``PREFECT_API_URL``, Prefect would start its own temporary server, which a Ctrl-C in the
terminal kills before the flow stops, and which a SIGTERM or SIGKILL of the command leaves
running. Instead the CLI starts that server itself (:func:`temporary_api`): in a session of its
own (the terminal's Ctrl-C reaches only the command) and with a parent-death signal (it dies with
the command, even on SIGKILL). :func:`install_interrupts` makes SIGINT and SIGTERM stop the run
at once with one line: the flow run is marked cancelled (on SIGTERM Prefect's own handler marks
it crashed first), every child process is ended, and the store keeps its last whole snapshot
(commits are atomic).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from stliif.errors import StliifError

__all__ = ["child_pids", "flow_module", "install_interrupts", "run_flow", "server_log", "temporary_api"]

_CHECKOUT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1
_server: subprocess.Popen[bytes] | None = None


def flow_module(name: str) -> ModuleType:
    """Import ``flows.<name>`` from the checkout (the flows are not part of the wheel)."""
    if not (_CHECKOUT / "flows" / "__init__.py").is_file():
        raise StliifError("the orchestration commands need the stliif checkout: install it with `pip install -e .`")
    if str(_CHECKOUT) not in sys.path:
        sys.path.insert(0, str(_CHECKOUT))
    return importlib.import_module(f"flows.{name}")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def temporary_api(timeout: float | None = None) -> Iterator[str | None]:
    """Within: a Prefect API for flow runs. ``PREFECT_API_URL`` when set (yields it); else a
    temporary server on 127.0.0.1 owned by this process (yields its URL), stopped on exit."""
    global _server
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    import httpx
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    # The server's output goes to a log file, not to the command's stdout and stderr: a reader
    # of those (a pipe) sees them close when the command exits, whenever the server ends.
    log = server_log()
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
    except OSError as err:
        raise StliifError(f"cannot write the temporary Prefect server's log {log}: {err.strerror or err}"
                          " (set PREFECT_HOME to a writable folder)") from err
    with out:
        _server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parents[1]), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, start_new_session=True, preexec_fn=_die_with_parent,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        limit = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        deadline = time.monotonic() + limit
        while True:
            if _server.poll() is not None:
                raise StliifError(f"the temporary Prefect server exited with code {_server.returncode} (its log: {log})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise StliifError(f"the temporary Prefect server did not answer within {limit:.0f} s (its log: {log})")
            time.sleep(0.1)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_prefect_workers()
    finally:
        _stop(_server)
        _server = None


def server_log() -> Path:
    """Where the temporary server writes its output: ``$PREFECT_HOME/stliif-temporary-server.log``."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser() / "stliif-temporary-server.log"


def _drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send Prefect's pending logs and events while the server still listens."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


def _stop(proc: subprocess.Popen[bytes] | None, grace: float = 3.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def child_pids(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (default: this process), from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid or os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _end_children(grace: float = 1.0) -> None:
    """SIGTERM every descendant, then SIGKILL whatever is left after ``grace`` seconds."""
    pids = child_pids()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in child_pids()):
        time.sleep(0.05)
    for pid in child_pids():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _cancel_flow_run(reason: str, timeout: float = 1.5) -> None:
    """Mark the flow run of this thread's context cancelled (best effort, within ``timeout``)."""
    try:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
    except Exception:
        return
    if ctx is None or ctx.flow_run is None:
        return
    run_id = ctx.flow_run.id

    def cancel() -> None:
        with contextlib.suppress(Exception):
            from prefect.client.orchestration import get_client
            from prefect.states import Cancelled

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run_id, Cancelled(message=reason), force=True)

    # In this context: Prefect's settings (the temporary server's URL) live in context variables,
    # which a new thread does not inherit; without them the client would start a server of its own.
    t = threading.Thread(target=contextvars.copy_context().run, args=(cancel,), daemon=True)
    t.start()
    t.join(timeout)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    reason = f"interrupted by {name}"
    # One line, then out: nothing more is written, and the store keeps its last whole snapshot.
    with contextlib.suppress(Exception):
        sys.stderr.write(f"error: {reason}: stopped; the store keeps its last whole snapshot\n")
        sys.stderr.flush()
    with contextlib.suppress(Exception):
        _quiet_logging()
        _cancel_flow_run(reason)
    _end_children()
    os._exit(128 + signum)


def _quiet_logging() -> None:
    """Silence every logger (Prefect's included) so that an interrupt prints one line."""
    import logging

    logging.disable(logging.CRITICAL)


def install_interrupts() -> None:
    """SIGINT and SIGTERM stop the command within seconds, with one line and no process left."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def run_flow(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``flow`` under :func:`temporary_api`."""
    with temporary_api():
        return flow(*args, **kwargs)
