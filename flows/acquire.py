"""The acquire flow: one query across STAC providers into a versioned datacube ``raw/<aoi>``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import AcquireSpec, StoreSpec
from tasks.acquire import acquire_task, publish_acquire_task


@flow(name="acquire")
def acquire(spec: AcquireSpec, store: StoreSpec | None = None, announce: bool = True) -> dict[str, Any]:
    """Search ``spec.providers``, load the new acquisitions onto the area's grid, commit
    ``raw/<aoi>`` (only when something new is usable), write quicklooks and publish the
    metadata table. Returns the :class:`stliif.acquire.AcquireResult` as a dict."""
    result = acquire_task(spec, store or StoreSpec(), announce)
    publish_acquire_task(result)
    return result
