"""The ``raw/<aoi>`` schema, checked in one place by every writer (WorldStrat import, acquire,
import) and by the tests.

A raw cube holds ``reflectance`` (time, band, y, x) float32; ``clm`` and ``data_mask`` (time, y,
x) uint8; optionally ``scl``, ``clp`` (time, y, x) uint8 and ``dem`` (y, x) float32; a CRS and a
``reflectance_units`` attribute. Cubes from STAC or local products also carry per-date
provenance along ``time``: ``processing_level`` (``L1C`` / ``L2A``, the same for every date and
equal to the ``processing_level`` attribute), ``processing_baseline``, ``reflectance_offset``,
``cloud_mask``, ``source_kind``, ``source_href``, ``provider``, ``item_id``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from stliif.errors import InvalidInputError

__all__ = ["LEVELS", "PROVENANCE", "check_raw"]

PROVENANCE = (
    "processing_level", "processing_baseline", "reflectance_offset", "cloud_mask", "source_kind", "source_href",
    "provider", "item_id",
)
"""Per-date provenance coordinates of cubes loaded from STAC items (acquire, import)."""
LEVELS = ("L1C", "L2A")
_VARS = {
    "reflectance": (("time", "band", "y", "x"), np.float32),
    "clm": (("time", "y", "x"), np.uint8),
    "data_mask": (("time", "y", "x"), np.uint8),
}
_OPTIONAL = {
    "scl": (("time", "y", "x"), np.uint8),
    "clp": (("time", "y", "x"), np.uint8),
    "dem": (("y", "x"), np.float32),
}


def check_raw(ds: xr.Dataset, *, provenance: bool | None = None) -> None:
    """Check that ``ds`` is a valid ``raw/<aoi>`` cube.

    Args:
        ds: The cube.
        provenance: Require the per-date provenance coordinates (``None``: required when any
            of them is present).

    Raises:
        InvalidInputError: every problem found, in one message.
    """
    problems = []
    for name, (dims, dtype) in _VARS.items():
        if name not in ds:
            problems.append(f"no {name}")
        elif ds[name].dims != dims or ds[name].dtype != dtype:
            problems.append(f"{name} is {ds[name].dims} {ds[name].dtype}, not {dims} {np.dtype(dtype)}")
    for name, (dims, dtype) in _OPTIONAL.items():
        if name in ds and (ds[name].dims != dims or ds[name].dtype != dtype):
            problems.append(f"{name} is {ds[name].dims} {ds[name].dtype}, not {dims} {np.dtype(dtype)}")
    if "time" in ds.coords and not np.issubdtype(ds["time"].dtype, np.datetime64):
        problems.append("time is not datetime64")
    if "time" in ds.coords and ds.sizes.get("time", 0) == 0:
        problems.append("no date")
    if ds.rio.crs is None:
        problems.append("no CRS")
    if not ds.attrs.get("reflectance_units"):
        problems.append("no reflectance_units attribute")
    present = [c for c in PROVENANCE if c in ds.coords]
    if provenance or (provenance is None and present):
        missing = [c for c in PROVENANCE if c not in ds.coords]
        if missing:
            problems.append(f"no provenance coordinate(s) {', '.join(missing)}")
        for c in present:
            if ds[c].dims != ("time",):
                problems.append(f"{c} is along {ds[c].dims}, not ('time',)")
        if "processing_level" in ds.coords:
            levels = set(np.asarray(ds["processing_level"].values).tolist())
            if not levels <= set(LEVELS) or len(levels) > 1:
                problems.append(f"processing_level {sorted(levels)}: one of {', '.join(LEVELS)} for every date")
            elif ds.attrs.get("processing_level") not in levels:
                problems.append(f"the processing_level attribute {ds.attrs.get('processing_level')!r} is not {levels.pop()!r}")
    if problems:
        raise InvalidInputError(f"not a raw cube ({ds.attrs.get('aoi', '?')}): {'; '.join(problems)}")
