"""Cloud and validity masks: which LR pixels are clear, the clear fraction per revisit, and the
one nearest-pixel fill of invalid pixels (:func:`fill_nearest`)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr
from scipy import ndimage

from stliif.errors import InvalidInputError

__all__ = ["SCL_INVALID", "area_mask", "clear_fraction", "clear_mask", "compute_masks", "fill_nearest"]

SCL_INVALID: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
"""Sentinel-2 L2A scene classes treated as not clear: no data, saturated/defective, cloud
shadow, cloud medium and high probability, thin cirrus."""


def _finite(reflectance: xr.DataArray) -> xr.DataArray:
    """Pixels whose every band is a finite number."""
    ok: xr.DataArray = xr.apply_ufunc(np.isfinite, reflectance, dask="allowed")
    return ok.all("band")


def clear_mask(lr: xr.Dataset) -> xr.DataArray:
    """Boolean (time, y, x): pixel has data, is not cloud (CLM) and, where SCL exists, not a
    cloud, shadow, cirrus or defective class; where reflectance exists, every band finite."""
    for var in ("clm", "data_mask"):
        if var not in lr:
            raise InvalidInputError(f"LR cube lacks variable {var!r} needed for masking")
    clear = (lr["data_mask"] == 1) & (lr["clm"] == 0)
    if "scl" in lr:
        clear = clear & ~lr["scl"].isin(SCL_INVALID)
    if "reflectance" in lr:
        clear = clear & _finite(lr["reflectance"])
    return clear.rename("clear")


def area_mask(lr: xr.Dataset) -> xr.DataArray:
    """Boolean (y, x): the cube's area, the pixels with data (``data_mask == 1``) on any date.

    For an acquired or imported polygon area it is the polygon (pixels outside it have
    ``data_mask`` 0 on every date), for a polygon crop the crop's polygon, for a WorldStrat AOI
    the whole grid.
    """
    if "data_mask" not in lr:
        raise InvalidInputError("LR cube lacks variable 'data_mask' needed for its area")
    dm = lr["data_mask"] == 1
    return (dm.any("time") if "time" in dm.dims else dm).rename("area")


def clear_fraction(lr: xr.Dataset, clear: xr.DataArray | None = None) -> xr.DataArray:
    """The clear fraction of each date over the cube's area: clear pixels (:func:`clear_mask`,
    or ``clear`` when given) inside :func:`area_mask` / pixels of the area; 0 for an empty area.

    The one definition: ``acquire``, the ``mask`` stage, the clean subset and ``render`` use it.
    Lazy (dask) cubes stay lazy.
    """
    area = area_mask(lr)
    if clear is None:
        clear = clear_mask(lr)
    n = area.sum(("y", "x"))
    frac = (clear.astype(bool) & area).sum(("y", "x")) / n.where(n > 0, 1)
    return frac.astype(np.float32).rename("clear_fraction")


def compute_masks(lr: xr.Dataset) -> xr.Dataset:
    """Masks of an LR cube.

    Returns:
        Dataset with ``clear`` (time, y, x) uint8 {0, 1}, ``clear_fraction`` (time, over the
        cube's area: :func:`clear_fraction`) and ``valid_fraction`` (time, over the whole grid)
        float32 in [0, 1], ``revisit`` and the cube's georeference.
    """
    # Only the grid, dates and revisit numbers carry over (an acquired cube's per-date metadata,
    # its own clear_fraction included, stays in raw/<aoi>).
    lr = lr.drop_vars([c for c in lr.coords if c not in ("time", "band", "y", "x", "revisit", "spatial_ref")])
    clear = clear_mask(lr)
    valid = lr["data_mask"] == 1
    if "reflectance" in lr:
        valid = valid & _finite(lr["reflectance"])
    out = xr.Dataset(
        {
            "clear": clear.astype(np.uint8),
            "clear_fraction": clear_fraction(lr, clear),
            "valid_fraction": valid.mean(("y", "x")).astype(np.float32),
        },
        attrs={
            "aoi": lr.attrs.get("aoi", ""),
            "rule": "data_mask==1 & CLM==0 & SCL not in "
            f"{list(SCL_INVALID)} (when SCL exists) & all bands finite (when present)",
        },
    )
    if "spatial_ref" in lr.coords:
        out = out.assign_coords(spatial_ref=lr["spatial_ref"])
    return out


def fill_nearest(
    image: np.ndarray, valid: np.ndarray, *, channels: Literal["last", "first"] = "last"
) -> np.ndarray:
    """Invalid pixels of ``image`` take the value of their nearest valid pixel (Euclidean
    distance, ties broken as ``scipy.ndimage.distance_transform_edt`` breaks them).

    Args:
        image: ``(H, W, C)`` (``channels="last"``) or ``(C, H, W)`` (``channels="first"``).
        valid: ``(H, W)`` bool, the pixels that keep their value.

    Returns:
        A new array of ``image``'s shape and dtype; ``image`` itself when every pixel is valid,
        or none is (there is nothing to fill from).
    """
    if valid.all() or not valid.any():
        return image
    _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return image[:, iy, ix] if channels == "first" else image[iy, ix]
