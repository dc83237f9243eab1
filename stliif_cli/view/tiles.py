"""Slippy-map tiles (Web Mercator, 256 px PNG) of the store's arrays, by rio-tiler.

rio-tiler's :class:`~rio_tiler.io.XarrayReader` reads the tile from an ``xarray.DataArray``
with a CRS (reprojection and tile bounds are rio-tiler's); this module only chooses the array
(a date of an LR cube, a render, a cloud mask) and the colours: RGB reflectance stretched
linearly from 0 to the AOI's display maximum, the same for the input and its renders, so a
side-by-side comparison is fair; clouds as a translucent overlay.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import XarrayReader

from stliif.errors import InvalidInputError
from stliif.preprocess.mask import area_mask, clear_mask
from stliif.quicklook import RGB

__all__ = ["EMPTY_PNG", "TILE", "cloud_tile", "overview", "overview_factor", "rgb_tile"]

TILE = 256
CLOUD_RGBA = (230, 0, 120, 140)
"""Not-clear pixels: translucent magenta (visible over white clouds and dark ground)."""


def _empty_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (TILE, TILE), (0, 0, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


EMPTY_PNG = _empty_png()
"""A transparent tile: what a tile outside the array shows (never an HTTP error: a browser
logs every failed image as a console error)."""


def overview_factor(da: xr.DataArray, z: int) -> int:
    """How many of ``da``'s pixels a side one pixel of a zoom-``z`` tile covers, as a power of
    two (1 when the tile is as fine as the array or finer): the overview level to read from."""
    left, _, right, _ = da.rio.transform_bounds(WEB_MERCATOR_TMS.rasterio_crs)
    array_m = (right - left) / max(1, da.sizes["x"])
    ratio = WEB_MERCATOR_TMS.matrix(z).cellSize / max(array_m, 1e-9)
    return 2 ** math.floor(math.log2(ratio)) if ratio >= 2 else 1


def overview(da: xr.DataArray, factor: int) -> xr.DataArray:
    """``da`` (``(band,) y, x`` with CRS) averaged over ``factor`` x ``factor`` blocks, loaded:
    what a tile far coarser than the array is read from, so a zoomed-out view of a large
    render reads it once, not whole for every tile. NaN (no data) is left out of the means."""
    out = da.coarsen(y=factor, x=factor, boundary="trim").mean()  # type: ignore[attr-defined]
    out = out.rio.write_crs(da.rio.crs).rio.write_transform(da.rio.transform() * Affine.scale(factor))
    return out.astype("float32").load()


def _read(da: xr.DataArray, x: int, y: int, z: int) -> Any:
    """The tile's ImageData, or None outside the array."""
    with XarrayReader(da) as reader:
        try:
            return reader.tile(x, y, z, tilesize=TILE)
        except TileOutsideBounds:
            return None


def rgb_tile(da: xr.DataArray, x: int, y: int, z: int, *, top: float) -> bytes:
    """PNG of RGB reflectance ``da`` (band, y, x) with CRS: 0..``top`` stretched to 0..255,
    pixels without data transparent."""
    missing = [b for b in RGB if b not in set(map(str, da["band"].values))]
    if missing:
        raise InvalidInputError(f"no true-colour tiles: the array lacks bands {missing}")
    da = da.sel(band=list(RGB)).astype("float32").rio.write_nodata(np.nan)
    img = _read(da, x, y, z)
    if img is None:
        return EMPTY_PNG
    img.rescale(in_range=((0.0, max(top, 1e-6)),) * 3)
    return bytes(img.render(img_format="PNG", add_mask=True))


def cloud_tile(cube_date: xr.Dataset, x: int, y: int, z: int) -> bytes:
    """PNG of the pixels of one date that are not clear (the library's rule,
    :func:`stliif.preprocess.mask.clear_mask`) inside the area, as a translucent overlay."""
    one = cube_date.expand_dims("time") if "time" not in cube_date.dims else cube_date
    cloudy = (~clear_mask(one).isel(time=0) & area_mask(one)).astype("uint8")
    cloudy.attrs, cloudy.encoding = {}, {}  # not the reflectance's NaN nodata
    cloudy = cloudy.rio.write_crs(cube_date.rio.crs).rio.write_nodata(0)  # clear: transparent
    img = _read(cloudy, x, y, z)
    if img is None:
        return EMPTY_PNG
    cmap = {0: (0, 0, 0, 0), 1: CLOUD_RGBA}
    return bytes(img.render(img_format="PNG", colormap=cmap, add_mask=True))
