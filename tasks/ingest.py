"""Import task: read + load + commit one local source, write its quicklooks."""

from __future__ import annotations

from typing import Any

from prefect import task

from stliif.config import ImportSpec, StoreSpec
from stliif.ingest import run_import
from tasks.acquire import after_raw
from tasks.common import open_store, retry_transient


@task(task_run_name="import-{spec.aoi}", retries=1, retry_delay_seconds=[5], retry_condition_fn=retry_transient)
def import_task(spec: ImportSpec, store: StoreSpec, announce: bool = True) -> dict[str, Any]:
    """Run :func:`stliif.ingest.run_import`; a commit emits the same ``stliif.artifact.committed``
    event as an acquisition (stage ``acquire``: it wrote ``raw/<aoi>``), so the AOI's downstream
    stages follow."""
    from prefect.runtime import flow_run

    s = open_store(store)
    result = run_import(s, spec, run_id=str(flow_run.id or "")).to_dict()
    return after_raw(s, store, spec.aoi, spec.quicklooks, result, announce)
