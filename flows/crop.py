"""The crop flow: an artifact cut to a square, a bbox or a polygon's features, committed once."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import CropSpec, StoreSpec
from tasks.crop import crop_task


@flow(name="crop")
def crop(spec: CropSpec, store: StoreSpec | None = None) -> dict[str, Any]:
    """Cut ``spec.source`` as ``spec`` asks and commit ``crop/<source>/<name>`` (one crop per
    feature with ``spec.each``, in the same commit). Returns the stage record
    (:class:`stliif.stages.StageResult` as a dict: status, snapshot id, artifacts, sizes)."""
    from prefect.runtime import flow_run

    return crop_task(spec, store or StoreSpec(), str(flow_run.id or ""))
