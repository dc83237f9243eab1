"""Task runners: threads by default; Dask (prefect-dask) when a run outgrows one process."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner


def task_runner(dask: str | None = None, *, workers: int = 2) -> Any:
    """The task runner for a flow run.

    Args:
        dask: ``None`` for threads; ``"local"`` for a Dask ``LocalCluster`` of ``workers``
            processes bound to 127.0.0.1 (dashboard included); otherwise the address of an
            existing Dask scheduler (``tcp://host:8786``).
        workers: Worker processes of the local cluster, or threads of the thread pool.
    """
    if dask is None:
        return ThreadPoolTaskRunner(max_workers=workers + 1)
    from prefect_dask import DaskTaskRunner

    if dask == "local":
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": workers,
                "threads_per_worker": 1,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
            }
        )
    return DaskTaskRunner(address=dask)


def parallelism(runner: Any) -> int:
    """How many tasks ``runner`` runs at once: its threads, or its local cluster's workers; 4 for
    a remote Dask scheduler (its size is not known here)."""
    n = getattr(runner, "_max_workers", None) or (getattr(runner, "cluster_kwargs", None) or {}).get("n_workers")
    return max(1, min(int(n or 4), 256))
