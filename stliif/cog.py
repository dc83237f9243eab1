"""Cloud-Optimised GeoTIFF output: files that open in QGIS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from stliif.errors import DataAccessError

__all__ = ["write_cog", "write_cog_blocks"]


def write_cog(da: xr.DataArray, path: str | Path) -> Path:
    """Write ``da`` (``(band,) y, x`` with a CRS) as a float32 COG (deflate, overviews), nodata
    declared: ``da``'s own (``.rio.nodata``) or NaN, the value of pixels outside a render's area."""
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


def write_cog_blocks(
    path: str | Path,
    blocks: Iterable[tuple[int, int, np.ndarray]],
    *,
    shape: tuple[int, int, int],
    crs: Any,
    transform: Affine,
    tags: Mapping[str, Any] | None = None,
    band_names: Sequence[str] = (),
    band_tags: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write a float32 COG of ``shape`` (bands, rows, cols) from ``(row, col, values (bands, h, w))``
    blocks, never holding more than one block: the blocks go into an uncompressed tiled GeoTIFF,
    which GDAL's COG driver copies, deflated, with overviews (average of the valid pixels). Nodata is NaN; ``tags``
    (lists joined with ", "), band names (descriptions) and per-band ``band_tags`` are written
    as metadata."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tiles.tif")
    bands, h, w = shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": bands, "dtype": "float32", "crs": crs,
               "transform": transform, "nodata": float("nan"), "tiled": True, "blockxsize": 512, "blockysize": 512,
               "BIGTIFF": "IF_SAFER"}  # fmt: skip
    try:
        with rasterio.Env(GDAL_CACHEMAX=32), rasterio.open(tmp, "w", **profile) as dst:
            for r0, c0, values in blocks:
                dst.write(np.asarray(values, dtype=np.float32), window=Window(c0, r0, values.shape[2], values.shape[1]))
            dst.update_tags(**{k: (", ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)) for k, v in (tags or {}).items()})
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, str(name))
            for i, band in enumerate(band_tags, start=1):
                dst.update_tags(i, **{k: str(v) for k, v in band.items()})
        with rasterio.Env(GDAL_CACHEMAX=32):  # MiB: memory bounded by the cache, not by the image
            rasterio.shutil.copy(tmp, p, driver="COG", COMPRESS="DEFLATE", BIGTIFF="IF_SAFER",
                                 OVERVIEW_RESAMPLING="AVERAGE", NUM_THREADS="ALL_CPUS")  # fmt: skip
    except (OSError, rasterio.errors.RasterioError) as err:
        raise DataAccessError(f"{p}: cannot write the GeoTIFF ({err})") from err
    finally:
        tmp.unlink(missing_ok=True)
    return p
