"""Cloud-Optimised GeoTIFF output: files that open in QGIS."""

from __future__ import annotations

from pathlib import Path

import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from stliif.errors import DataAccessError

__all__ = ["write_cog"]


def write_cog(da: xr.DataArray, path: str | Path) -> Path:
    """Write ``da`` (``(band,) y, x`` with a CRS) as a float32 COG (deflate, overviews), nodata
    declared: ``da``'s own (``.rio.nodata``) or NaN, the value of pixels outside a render's area."""
    import numpy as np

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    plain = da.copy()
    plain.attrs = {k: (", ".join(map(str, v)) if isinstance(v, list | tuple) else v) for k, v in da.attrs.items()}
    if plain.rio.nodata is None:
        plain = plain.rio.write_nodata(np.nan, encoded=False)
    try:
        plain.rio.to_raster(p, driver="COG", compress="DEFLATE", dtype="float32")
    except OSError as err:
        raise DataAccessError(f"{p}: cannot write the GeoTIFF ({err})") from err
    return p
