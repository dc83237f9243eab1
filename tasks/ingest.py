"""Import task: read + load + commit one local source, write its quicklooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from stliif.config import ImportSpec, StoreSpec
from stliif.ingest import run_import
from stliif.quicklook import write_quicklooks
from tasks.common import open_store, retry_transient
from tasks.etl import announce_commit


@task(task_run_name="import-{spec.aoi}", retries=1, retry_delay_seconds=[5], retry_condition_fn=retry_transient)
def import_task(spec: ImportSpec, store: StoreSpec, announce: bool = True) -> dict[str, Any]:
    """Run :func:`stliif.ingest.run_import`; a commit emits the same ``stliif.artifact.committed``
    event as an acquisition (stage ``acquire``: it wrote ``raw/<aoi>``), so the AOI's downstream
    stages follow."""
    from prefect.runtime import flow_run

    s = open_store(store)
    result = run_import(s, spec, run_id=str(flow_run.id or "")).to_dict()
    if spec.quicklooks and result["status"] in ("committed", "unchanged") and result["dates"]:
        files = write_quicklooks(s.read(f"raw/{spec.aoi}", load=True), Path(spec.quicklooks) / spec.aoi)
        result["quicklooks"] = {k: [str(p) for p in v] for k, v in files.items()}
    if announce and result["status"] == "committed":
        announce_commit(store, {"stage": "acquire", "aoi": spec.aoi, "snapshot_id": result["snapshot_id"],
                                "artifacts": [f"raw/{spec.aoi}"], "run_key": ""})
    return result
