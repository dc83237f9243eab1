"""The acquire flow: one query across STAC providers into a versioned datacube ``raw/<aoi>``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import AcquireSpec, StoreSpec
from tasks.acquire import acquire_task, add_dem_task, publish_acquire_task


@flow(name="acquire")
def acquire(
    spec: AcquireSpec,
    store: StoreSpec | None = None,
    announce: bool = True,
    dem_files: list[str] | None = None,
    dem_nodata: float | None = None,
) -> dict[str, Any]:
    """Search ``spec.providers``, load the new acquisitions onto the area's grid, commit
    ``raw/<aoi>`` (only when something new is usable), then the local ``dem_files`` into it
    (unless nothing was usable), write quicklooks and publish the metadata table. Returns the
    :class:`stliif.acquire.AcquireResult` as a dict (with ``dem_files``: the DEM commit)."""
    store = store or StoreSpec()
    result = acquire_task(spec, store, announce)
    if dem_files and result["status"] != "no-data":
        result["dem_files"] = add_dem_task(store, spec.aoi, dem_files, dem_nodata)
    publish_acquire_task(result)
    return result
