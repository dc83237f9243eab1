"""The import flow: a local SAFE product or a static STAC catalog into a versioned datacube ``raw/<aoi>``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import ImportSpec, StoreSpec
from tasks.acquire import add_dem_task, publish_acquire_task
from tasks.ingest import import_task


@flow(name="import")
def import_source(
    spec: ImportSpec,
    store: StoreSpec | None = None,
    announce: bool = True,
    dem_files: list[str] | None = None,
    dem_nodata: float | None = None,
) -> dict[str, Any]:
    """Read ``spec.source``, load its items onto the area's grid, commit ``raw/<aoi>`` (only when
    something is usable), then the local ``dem_files`` into it, write quicklooks and publish the
    metadata table, as the acquire flow does. Returns the :class:`stliif.acquire.AcquireResult`
    as a dict (with ``dem_files``: the DEM commit)."""
    store = store or StoreSpec()
    result = import_task(spec, store, announce)
    if dem_files and result["status"] != "no-data":
        result["dem_files"] = add_dem_task(store, spec.aoi, dem_files, dem_nodata)
    publish_acquire_task(result)
    return result
