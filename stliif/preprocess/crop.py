"""Square and polygon crops of georeferenced cubes (xarray objects with rioxarray metadata).

Every function takes an ``xr.Dataset`` or ``xr.DataArray`` whose last two dims are the
rioxarray spatial dims (y, x) of a north-up grid, with any leading dims (time, band), and
returns the same type, with the coordinates, CRS and geotransform of the cropped window.
:func:`square_window` and :func:`polygon_window` are their checks alone: the window a crop would
cut, or the error it would raise, from the cube's grid (a lazy cube is not read).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds

from stliif.errors import InvalidInputError, NoDataError
from stliif.preprocess.vectors import PolygonSource, parse_crs, read_polygon

__all__ = ["crop_polygon", "crop_square", "polygon_window", "square_window"]

T = TypeVar("T", xr.Dataset, xr.DataArray)
_GEOD = Geod(ellps="WGS84")


# --------------------------------------------------------------------------------------------
# grid helpers


def _raster_grid(obj: xr.Dataset | xr.DataArray) -> tuple[str, str, Affine, int, int, CRS]:
    """(y_dim, x_dim, transform, height, width, crs) of a north-up rioxarray object."""
    if not isinstance(obj, xr.Dataset | xr.DataArray):
        raise InvalidInputError(f"obj: expected an xarray Dataset or DataArray, got {type(obj).__name__}")
    try:
        y_dim, x_dim = obj.rio.y_dim, obj.rio.x_dim
        transform = obj.rio.transform()
        crs = obj.rio.crs
    except Exception as err:  # rioxarray raises several types for a missing grid
        raise InvalidInputError(f"obj: not a georeferenced raster with (y, x) dims ({err})") from err
    if crs is None:
        raise InvalidInputError("obj: has no CRS (write one with .rio.write_crs)")
    if transform.b != 0 or transform.d != 0:
        raise InvalidInputError(f"obj: rotated geotransforms are not supported ({tuple(transform)[:6]})")
    return y_dim, x_dim, transform, obj.sizes[y_dim], obj.sizes[x_dim], CRS.from_user_input(crs)


def _window(
    obj: T, y_dim: str, x_dim: str, transform: Affine, rows: tuple[int, int], cols: tuple[int, int]
) -> T:
    """Select rows [r0, r1) and cols [c0, c1) and write the matching geotransform."""
    (r0, r1), (c0, c1) = rows, cols
    out = obj.isel({y_dim: slice(r0, r1), x_dim: slice(c0, c1)})
    return out.rio.write_transform(transform @ Affine.translation(c0, r0))


def _fractional(transform: Affine, x: float, y: float) -> tuple[float, float]:
    """(col, row) of a point in pixel units from the grid's top-left corner."""
    return (x - transform.c) / transform.a, (y - transform.f) / transform.e


def _raster_bounds(transform: Affine, height: int, width: int) -> tuple[float, float, float, float]:
    xs = (transform.c, transform.c + transform.a * width)
    ys = (transform.f, transform.f + transform.e * height)
    return min(xs), min(ys), max(xs), max(ys)


def _finite_tuple(value: Any, n: int, field: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{field}: expected {n} numbers, got {value!r}") from err
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"{field}: expected {n} finite numbers, got {value!r}")
    return out


# --------------------------------------------------------------------------------------------
# square crops


def _square_bounds_geographic(lon: float, lat: float, size_m: float) -> tuple[float, float, float, float]:
    """Lon/lat box whose sides, through the centre, measure ``size_m`` on the WGS84 ellipsoid."""
    half = size_m / 2
    lons, lats, _ = _GEOD.fwd([lon] * 4, [lat] * 4, [90.0, 270.0, 0.0, 180.0], [half] * 4)
    return lons[1], lats[3], lons[0], lats[2]


def crop_square(
    obj: T,
    *,
    center: tuple[float, float] | None = None,
    size_m: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    crs: str | CRS = "EPSG:4326",
    allow_partial: bool = False,
) -> T:
    """Crop a square (or a bounding box) out of a georeferenced cube.

    Either ``center`` + ``size_m`` or ``bbox`` must be given.

    * ``center=(x, y)`` in ``crs`` (``(lon, lat)`` for the default EPSG:4326) and ``size_m`` the
      side in metres. In a projected data CRS whose unit is the metre (UTM...) the square is
      ``center +- size_m / 2`` in CRS units (the grid's scale factor, e.g. UTM's 0.9996, is
      ignored). Otherwise (geographic data) the half-sides are measured on the WGS84 ellipsoid
      along the parallel and the meridian through the centre (``pyproj.Geod.fwd``), i.e.
      ``size_m / 2`` divided by the metres per degree of longitude and latitude at the centre.
      The window has ``round(side / pixel size)`` pixels per axis (at least 1), positioned so
      that the centre is within half a pixel of the window's centre.
    * ``bbox=(minx, miny, maxx, maxy)`` in ``crs``: reprojected to the data CRS (densified
      edges), the window holds the pixels whose centres lie inside it (at least 1 per axis).

    Args:
        obj: Dataset or DataArray with rioxarray spatial dims (y, x) last, north-up grid, CRS set.
        center: Centre of the square in ``crs``.
        size_m: Side of the square in metres (> 0).
        bbox: Bounds in ``crs``.
        crs: CRS of ``center`` / ``bbox``.
        allow_partial: Return the part inside the raster when the window extends beyond it
            (default: raise NoDataError).

    Returns:
        Same type as ``obj``, all leading dims kept, coords/CRS/transform of the window.

    Raises:
        InvalidInputError: bad ``center``/``size_m``/``bbox``/``crs`` combination or values,
            a square smaller than half a pixel, obj not georeferenced.
        NoDataError: the window lies outside the raster (``aoi_outside_raster``), or partly
            outside without ``allow_partial`` (``crop_partly_outside_raster``).
    """
    rows, cols = square_window(obj, center=center, size_m=size_m, bbox=bbox, crs=crs, allow_partial=allow_partial)
    y_dim, x_dim, transform, *_ = _raster_grid(obj)
    return _window(obj, y_dim, x_dim, transform, rows, cols)


def square_window(
    obj: xr.Dataset | xr.DataArray,
    *,
    center: tuple[float, float] | None = None,
    size_m: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    crs: str | CRS = "EPSG:4326",
    allow_partial: bool = False,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pixel window ``((r0, r1), (c0, c1))`` that :func:`crop_square` cuts, with every check
    it makes (same arguments, same errors), from ``obj``'s grid alone: no pixel is read, so a
    lazy cube is checked without loading it."""
    _, _, transform, height, width, data_crs = _raster_grid(obj)
    in_crs = parse_crs(crs, "crs")
    if bbox is not None and (center is not None or size_m is not None):
        raise InvalidInputError("crop_square: give either bbox or center + size_m, not both")
    if bbox is None and (center is None or size_m is None):
        raise InvalidInputError("crop_square: give center and size_m (or bbox)")
    res_x, res_y = abs(transform.a), abs(transform.e)

    if bbox is not None:
        minx, miny, maxx, maxy = _finite_tuple(bbox, 4, "bbox")
        if not (minx < maxx and miny < maxy):
            raise InvalidInputError(f"bbox: expected minx < maxx and miny < maxy, got {bbox!r}")
        if in_crs.is_geographic and (min(miny, maxy) < -90 or max(miny, maxy) > 90):
            raise InvalidInputError(f"bbox: latitude outside [-90, 90] in {in_crs.to_string()}: {bbox!r}")
        box = transform_bounds(in_crs, data_crs, minx, miny, maxx, maxy, densify_pts=21)
        c0, r0 = _fractional(transform, box[0], box[3])
        c1, r1 = _fractional(transform, box[2], box[1])
        c0, c1, r0, r1 = min(c0, c1), max(c0, c1), min(r0, r1), max(r0, r1)
        # pixels whose centre (i + 0.5) is inside [c0, c1)
        cols = (math.ceil(c0 - 0.5), math.ceil(c1 - 0.5))
        rows = (math.ceil(r0 - 0.5), math.ceil(r1 - 0.5))
        if cols[1] <= cols[0]:
            cols = (math.floor((c0 + c1) / 2),) * 2
            cols = (cols[0], cols[0] + 1)
        if rows[1] <= rows[0]:
            rows = (math.floor((r0 + r1) / 2),) * 2
            rows = (rows[0], rows[0] + 1)
        what = f"bbox {bbox!r} ({in_crs.to_string()})"
    else:
        cx, cy = _finite_tuple(center, 2, "center")
        try:
            size = float(size_m)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            raise InvalidInputError(f"size_m: expected a number of metres, got {size_m!r}") from err
        if not (math.isfinite(size) and size > 0):
            raise InvalidInputError(f"size_m: must be a finite positive number of metres, got {size_m!r}")
        if in_crs.is_geographic and not -90 <= cy <= 90:
            raise InvalidInputError(f"center: latitude {cy} outside [-90, 90] (center is (lon, lat))")
        xs, ys = (
            (cx, cy)
            if in_crs == data_crs
            else _transform_point(in_crs, data_crs, cx, cy)
        )
        units = data_crs.axis_info[0].unit_name if data_crs.axis_info else ""
        if data_crs.is_projected and units in ("metre", "meter"):
            minx, miny, maxx, maxy = xs - size / 2, ys - size / 2, xs + size / 2, ys + size / 2
        else:
            lon, lat = _transform_point(data_crs, CRS.from_epsg(4326), xs, ys)
            if abs(lat) >= 89.9:
                raise InvalidInputError(
                    f"center: latitude {lat} too close to a pole for a square in metres"
                )
            geo_box = _square_bounds_geographic(lon, lat, size)
            minx, miny, maxx, maxy = transform_bounds("EPSG:4326", data_crs, *geo_box, densify_pts=21)
        n_x = round((maxx - minx) / res_x)
        n_y = round((maxy - miny) / res_y)
        if n_x < 1 or n_y < 1:
            raise InvalidInputError(
                f"size_m: {size} m is smaller than half a pixel ({res_x:g} x {res_y:g} "
                f"{data_crs.axis_info[0].unit_name if data_crs.axis_info else 'units'})"
            )
        ccol, crow = _fractional(transform, xs, ys)
        c_start, r_start = round(ccol - n_x / 2), round(crow - n_y / 2)
        cols, rows = (c_start, c_start + n_x), (r_start, r_start + n_y)
        what = f"square of {size:g} m centred on {(cx, cy)} ({in_crs.to_string()})"

    inside_cols = (max(cols[0], 0), min(cols[1], width))
    inside_rows = (max(rows[0], 0), min(rows[1], height))
    if inside_cols[1] <= inside_cols[0] or inside_rows[1] <= inside_rows[0]:
        raise NoDataError(
            f"aoi_outside_raster: {what} does not overlap the raster bounds "
            f"{_raster_bounds(transform, height, width)} ({data_crs.to_string()})"
        )
    if (inside_cols, inside_rows) != (cols, rows) and not allow_partial:
        raise NoDataError(
            f"crop_partly_outside_raster: {what} needs rows {rows} and cols {cols} but the raster "
            f"has {height} x {width} pixels (pass allow_partial=True to keep the overlap)"
        )
    return inside_rows, inside_cols


def _transform_point(src: CRS, dst: CRS, x: float, y: float) -> tuple[float, float]:
    tx, ty = Transformer.from_crs(src, dst, always_xy=True).transform(x, y)
    if not (math.isfinite(tx) and math.isfinite(ty)):
        raise InvalidInputError(
            f"center: ({x}, {y}) cannot be transformed from {src.to_string()} to {dst.to_string()}"
        )
    return float(tx), float(ty)


def crop_polygon(
    obj: T,
    polygon: PolygonSource,
    *,
    crs: str | CRS | None = None,
    all_touched: bool = False,
    make_valid: bool = False,
    int_fill: int | None = None,
) -> T:
    """Clip a georeferenced cube to a polygon and mask the pixels outside it.

    The polygon (anything :func:`read_polygon` accepts; the union of its features) is
    reprojected to the data CRS; the output window is the smallest one holding every selected
    pixel: those whose centre lies inside the polygon, or every pixel it touches with
    ``all_touched=True`` (``rasterio.features.geometry_mask``).

    Outside pixels are set, per variable with both spatial dims: floating -> NaN (nodata
    written as NaN); integer / bool -> ``int_fill`` if given, else the variable's own nodata
    (``.rio.nodata``) if set, else 0, dtype kept and the fill recorded as the variable's
    ``nodata`` attribute (what ``.rio.nodata`` reads; not a ``_FillValue``, which xarray would
    decode to NaN floats when the crop is read back from a store). For the WorldStrat masks 0
    means "no data" (``data_mask``) / "clear" (``clm``): use ``data_mask`` to tell outside pixels
    apart. Variables without the spatial dims are left unchanged.

    Args:
        obj: Dataset or DataArray with rioxarray spatial dims (y, x) last, north-up, CRS set.
        polygon: Path, GeoJSON mapping, shapely geometry or GeoDataFrame (see read_polygon).
        crs: CRS of a polygon that carries none (shapely geometry; default EPSG:4326).
        all_touched: Keep every pixel touched by the polygon, not only those with their centre in it.
        make_valid: Repair invalid polygons instead of rejecting them (see read_polygon).
        int_fill: Fill value of integer variables outside the polygon.

    Returns:
        Same type as ``obj``, cropped to the polygon's window, outside pixels masked,
        coords/CRS/transform of the window.

    Raises:
        InvalidInputError: invalid polygon source (see read_polygon) or obj not georeferenced.
        NoDataError: ``aoi_outside_raster`` when the polygon does not intersect the raster, or
            selects no pixel (smaller than a pixel: try ``all_touched=True``).
    """
    rows, cols, inside = polygon_window(obj, polygon, crs=crs, all_touched=all_touched, make_valid=make_valid)
    y_dim, x_dim, transform, *_ = _raster_grid(obj)
    out = _window(obj, y_dim, x_dim, transform, rows, cols)
    mask = xr.DataArray(inside, dims=(y_dim, x_dim))
    if isinstance(out, xr.DataArray):
        return _mask_var(out, mask, y_dim, x_dim, int_fill)
    for name, var in out.data_vars.items():
        if y_dim in var.dims and x_dim in var.dims:
            out[name] = _mask_var(var, mask, y_dim, x_dim, int_fill)
    return out


def polygon_window(
    obj: xr.Dataset | xr.DataArray,
    polygon: PolygonSource,
    *,
    crs: str | CRS | None = None,
    all_touched: bool = False,
    make_valid: bool = False,
) -> tuple[tuple[int, int], tuple[int, int], np.ndarray]:
    """The pixel window ``((r0, r1), (c0, c1))`` that :func:`crop_polygon` cuts and its
    ``inside`` mask (bool, the window's shape), with every check it makes (same arguments, same
    errors), from ``obj``'s grid alone: no pixel is read, so a lazy cube is checked without
    loading it."""
    _, _, transform, height, width, data_crs = _raster_grid(obj)
    gdf = read_polygon(polygon, crs=crs, make_valid=make_valid)
    try:
        geom = shapely.union_all(np.asarray(gdf.to_crs(data_crs).geometry.values))
    except Exception as err:  # pyproj failures on far-out coordinates
        raise InvalidInputError(
            f"polygon: cannot be reprojected to {data_crs.to_string()} ({err})"
        ) from err
    if geom.is_empty or not np.isfinite(shapely.get_coordinates(geom)).all():
        raise InvalidInputError(f"polygon: degenerate after reprojection to {data_crs.to_string()}")
    bounds = _raster_bounds(transform, height, width)
    if not geom.intersects(shapely.box(*bounds)):
        raise NoDataError(
            f"aoi_outside_raster: the polygon (bounds {tuple(round(v, 6) for v in geom.bounds)}) does not "
            f"intersect the raster bounds {tuple(round(v, 6) for v in bounds)} ({data_crs.to_string()})"
        )
    # Window of the polygon's bounding box (pixels it may touch), then the mask inside it.
    c0, r0 = _fractional(transform, geom.bounds[0], geom.bounds[3])
    c1, r1 = _fractional(transform, geom.bounds[2], geom.bounds[1])
    cols = (max(math.floor(min(c0, c1)), 0), min(math.ceil(max(c0, c1)), width))
    rows = (max(math.floor(min(r0, r1)), 0), min(math.ceil(max(r0, r1)), height))
    if cols[1] <= cols[0] or rows[1] <= rows[0]:
        cols, rows = (max(min(cols[0], width - 1), 0),) * 2, (max(min(rows[0], height - 1), 0),) * 2
        cols, rows = (cols[0], cols[0] + 1), (rows[0], rows[0] + 1)
    win_t = transform @ Affine.translation(cols[0], rows[0])
    inside = ~geometry_mask(
        [geom], out_shape=(rows[1] - rows[0], cols[1] - cols[0]), transform=win_t, all_touched=all_touched
    )
    if not inside.any():
        raise NoDataError(
            "aoi_outside_raster: the polygon intersects the raster but contains no pixel centre "
            "(smaller than a pixel? pass all_touched=True)"
        )
    rr, cc = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    rows = (rows[0] + int(rr[0]), rows[0] + int(rr[-1]) + 1)
    cols = (cols[0] + int(cc[0]), cols[0] + int(cc[-1]) + 1)
    inside = inside[rr[0] : rr[-1] + 1, cc[0] : cc[-1] + 1]
    return rows, cols, inside


def _mask_var(
    var: xr.DataArray, mask: xr.DataArray, y_dim: str, x_dim: str, int_fill: int | None
) -> xr.DataArray:
    # Align by position: the window's coords are the variable's own.
    if y_dim in var.coords and x_dim in var.coords:
        mask = mask.assign_coords({y_dim: var[y_dim].values, x_dim: var[x_dim].values})
    attrs, encoding = dict(var.attrs), dict(var.encoding)
    if np.issubdtype(var.dtype, np.floating) or np.issubdtype(var.dtype, np.complexfloating):
        masked = var.where(mask)
        fill: Any = np.nan
    else:
        own = var.rio.nodata if var.rio.nodata is not None else None
        fill = int_fill if int_fill is not None else (own if own is not None else 0)
        if np.issubdtype(var.dtype, np.integer):
            info = np.iinfo(var.dtype)
            if not info.min <= fill <= info.max:
                raise InvalidInputError(
                    f"int_fill: {fill} does not fit {var.name or 'variable'}'s dtype {var.dtype}"
                )
        masked = var.where(mask, fill).astype(var.dtype)
    masked = masked.transpose(*var.dims)
    masked.attrs, masked.encoding = attrs, encoding
    masked.attrs.pop("_FillValue", None)
    if np.issubdtype(var.dtype, np.floating) or np.issubdtype(var.dtype, np.complexfloating):
        return masked.rio.write_nodata(fill, encoded=False)
    # An integer fill is the ``nodata`` attribute (rioxarray's .rio.nodata reads it), never a
    # ``_FillValue``: xarray reads an integer variable with a _FillValue back as floats with NaN
    # there (CF masking), and the mask would no longer be a mask.
    masked.encoding.pop("_FillValue", None)
    masked.attrs["nodata"] = int(fill)
    return masked
