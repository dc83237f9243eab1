"""The import flow: a local SAFE product or a static STAC catalog into a versioned datacube ``raw/<aoi>``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import ImportSpec, StoreSpec
from tasks.acquire import publish_acquire_task
from tasks.ingest import import_task


@flow(name="import")
def import_source(spec: ImportSpec, store: StoreSpec | None = None, announce: bool = True) -> dict[str, Any]:
    """Read ``spec.source``, load its items onto the area's grid, commit ``raw/<aoi>`` (only when
    something is usable), write quicklooks and publish the metadata table, as the acquire flow
    does. Returns the :class:`stliif.acquire.AcquireResult` as a dict."""
    result = import_task(spec, store or StoreSpec(), announce)
    publish_acquire_task(result)
    return result
