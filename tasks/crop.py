"""Crop task: cut an artifact to a square, a bbox or a polygon's features, and commit the crops."""

from __future__ import annotations

from typing import Any

from prefect import task

from stliif.config import CropSpec, StoreSpec
from stliif.stages import run_crop
from tasks.common import open_store, retry_transient


@task(task_run_name="crop-{spec.name}", retries=1, retry_delay_seconds=[5], retry_condition_fn=retry_transient)
def crop_task(spec: CropSpec, store: StoreSpec, run_id: str = "") -> dict[str, Any]:
    """Run :func:`stliif.stages.run_crop` (it checks the request again, then cuts and commits once)."""
    return run_crop(open_store(store), **spec.model_dump(), run_id=run_id).to_dict()
