"""Reading an AOI's LR cube from the store, for every stage and for rendering."""

from __future__ import annotations

import xarray as xr

from stliif.names import aoi_cube_path
from stliif.store import ArtifactStore

__all__ = ["MASK_VARS", "read_cube"]

MASK_VARS = ("scl", "clm", "data_mask")
"""uint8 mask variables of an LR cube, 0 where there is no data."""


def read_cube(store: ArtifactStore, aoi: str, *, load: bool = True, cache: bool = False) -> xr.Dataset:
    """The LR cube of a store AOI (``raw/<aoi>``, or a crop's path ``crop/raw/<aoi>/<name>``).

    Polygon crops committed before their integer masks recorded nodata as a ``nodata``
    attribute declared it as a ``_FillValue``, which xarray reads back as NaN floats: such masks
    are given back as uint8 with 0 there (no data, no cloud, SCL "no data"), as a crop
    committed now reads (:func:`stliif.preprocess.crop.crop_polygon`). ``cache``: see
    :meth:`ArtifactStore.read`.
    """
    ds = store.read(aoi_cube_path(aoi), load=load, cache=cache)
    for var in MASK_VARS:
        if var in ds and ds[var].dtype.kind == "f":
            ds[var] = ds[var].fillna(0).astype("uint8")
    return ds
