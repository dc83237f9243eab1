"""Square and polygon crops of georeferenced cubes (xarray objects with rioxarray metadata).

Every function takes an ``xr.Dataset`` or ``xr.DataArray`` whose last two dims are the
rioxarray spatial dims (y, x) of a north-up grid, with any leading dims (time, band), and
returns the same type, with the coordinates, CRS and geotransform of the cropped window.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import geopandas as gpd
import numpy as np
import pyogrio
import pyogrio.errors
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError
from rasterio.features import geometry_mask
from rasterio.warp import transform_bounds

from stliif.errors import DataAccessError, InvalidInputError, NoDataError

__all__ = [
    "DEFAULT_MAX_FEATURES",
    "DEFAULT_MAX_VERTICES",
    "PolygonSource",
    "crop_polygon",
    "crop_square",
    "polygon_fingerprint",
    "read_polygon",
]

T = TypeVar("T", xr.Dataset, xr.DataArray)
PolygonSource = (
    str | os.PathLike[str] | Mapping[str, Any] | shapely.Geometry | gpd.GeoDataFrame | gpd.GeoSeries
)

DEFAULT_MAX_FEATURES = 1_000
"""Default limit on the number of features of a polygon source."""
DEFAULT_MAX_VERTICES = 100_000
"""Default limit on the total number of vertices of a polygon source."""

_GEOD = Geod(ellps="WGS84")
_POLYGONAL = ("Polygon", "MultiPolygon")


# --------------------------------------------------------------------------------------------
# grid helpers


def _parse_crs(value: Any, field: str) -> CRS:
    try:
        return CRS.from_user_input(value)
    except (CRSError, TypeError, ValueError) as err:
        raise InvalidInputError(f"{field}: not a valid CRS {value!r} ({err})") from err


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
    y_dim, x_dim, transform, height, width, data_crs = _raster_grid(obj)
    in_crs = _parse_crs(crs, "crs")
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
    return _window(obj, y_dim, x_dim, transform, inside_rows, inside_cols)


def _transform_point(src: CRS, dst: CRS, x: float, y: float) -> tuple[float, float]:
    tx, ty = Transformer.from_crs(src, dst, always_xy=True).transform(x, y)
    if not (math.isfinite(tx) and math.isfinite(ty)):
        raise InvalidInputError(
            f"center: ({x}, {y}) cannot be transformed from {src.to_string()} to {dst.to_string()}"
        )
    return float(tx), float(ty)


# --------------------------------------------------------------------------------------------
# polygons


def _check_shapefile(path: Path) -> None:
    """Reject a shapefile missing its index or projection, or truncated."""
    siblings = {p.suffix.lower(): p for p in path.parent.iterdir() if p.stem == path.stem}
    if ".shx" not in siblings:
        raise InvalidInputError(
            f"{path}: shapefile index missing ({path.with_suffix('.shx').name} not found)"
        )
    if ".prj" not in siblings:
        raise InvalidInputError(
            f"{path}: shapefile projection missing ({path.with_suffix('.prj').name} not found): "
            "no CRS, refusing to guess one"
        )
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
        size = path.stat().st_size
    except OSError as err:
        raise DataAccessError(f"{path}: unreadable ({err})") from err
    if len(header) < 100 or struct.unpack(">i", header[:4])[0] != 9994:
        raise InvalidInputError(f"{path}: not a shapefile (bad or short 100-byte header)")
    declared = struct.unpack(">i", header[24:28])[0] * 2
    if size < declared:
        raise InvalidInputError(
            f"{path}: truncated .shp: its header declares {declared} bytes, the file has {size}"
        )


_VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json")
"""Vector files looked for inside a zip (shapefiles first)."""
_VSIZIP = re.compile(r"^/vsizip/(?P<zip>.*?\.zip)(?:/(?P<member>.*))?$", re.IGNORECASE)


def _junk(member: str) -> bool:
    """macOS resource forks and folders (``__MACOSX/``, ``._name``) and folder entries."""
    parts = member.split("/")
    return member.endswith("/") or "__MACOSX" in parts or parts[-1].startswith("._")


def _zip_members(zip_path: Path) -> list[str]:
    if not zip_path.is_file():
        raise InvalidInputError(f"{zip_path}: zip file not found")
    try:
        with zipfile.ZipFile(zip_path) as z:
            return [n for n in z.namelist() if not _junk(n)]
    except zipfile.BadZipFile as err:
        raise InvalidInputError(f"{zip_path}: not a valid zip file ({err})") from err
    except OSError as err:
        raise DataAccessError(f"{zip_path}: unreadable ({err})") from err


def _zip_target(text: str) -> tuple[Path, str, list[str]]:
    """(zip path, member, member list) of a ``.zip`` path or a ``/vsizip/<zip>[/<member>]`` path.

    Without a member, the one vector file of the zip is chosen (shapefiles first, subfolders
    searched, ``__MACOSX`` and ``._*`` ignored); several are an error naming them."""
    m = _VSIZIP.match(text)
    zip_path = Path(m["zip"] if m else text).expanduser()
    member = (m["member"] or "").strip("/") if m else ""
    members = _zip_members(zip_path)
    if member:
        if member not in members:
            raise InvalidInputError(f"{zip_path}: no member {member!r} (files: {', '.join(members) or 'none'})")
        return zip_path, member, members
    for suffixes in (_VECTOR_SUFFIXES[:1], _VECTOR_SUFFIXES[1:]):
        found = [n for n in members if n.lower().endswith(suffixes)]
        if len(found) > 1:
            raise InvalidInputError(
                f"{zip_path}: {len(found)} vector files in the zip ({', '.join(found)}): choose one "
                f"with /vsizip/{zip_path}/<member>"
            )
        if found:
            return zip_path, found[0], members
    raise InvalidInputError(
        f"{zip_path}: no shapefile, GeoPackage or GeoJSON in the zip (files: {', '.join(members) or 'none'})"
    )


def _zipped_shapefile_encoding(zip_path: Path, member: str, members: list[str]) -> str | None:
    """Check a zipped shapefile's parts; its declared encoding (see :func:`_declared_encoding`)."""
    stem = member[: -len(".shp")]
    parts = {n[len(stem) :].lower(): n for n in members if n[: len(stem)] == stem}
    for ext, what in ((".shx", "index"), (".dbf", "attribute table"), (".prj", "projection")):
        if ext not in parts:
            tail = ": no CRS, refusing to guess one" if ext == ".prj" else ""
            raise InvalidInputError(f"{zip_path}: shapefile {what} missing ({stem}{ext} not in the zip){tail}")
    try:
        with zipfile.ZipFile(zip_path) as z:
            cpg = z.read(parts[".cpg"]) if ".cpg" in parts else None
            with z.open(parts[".dbf"]) as fh:
                header = fh.read(32)
    except (OSError, zipfile.BadZipFile) as err:
        raise DataAccessError(f"{zip_path}: unreadable ({err})") from err
    return _declared_encoding(cpg, header)


def _shapefile_encoding(path: Path) -> str | None:
    cpg = path.with_suffix(".cpg")
    dbf = path.with_suffix(".dbf")
    try:
        with dbf.open("rb") as fh:
            header = fh.read(32)
        return _declared_encoding(cpg.read_bytes() if cpg.is_file() else None, header)
    except OSError:  # no .dbf: GDAL reads the geometries alone
        return _declared_encoding(cpg.read_bytes() if cpg.is_file() else None, b"")


def _declared_encoding(cpg: bytes | None, dbf_header: bytes) -> str | None:
    """The encoding a shapefile states (``.cpg`` text, or ``"LDID/<n>"`` from the dBASE
    language-driver byte), or None when it states none."""
    if cpg is not None and cpg.strip():
        return cpg.decode("ascii", "replace").strip()
    if len(dbf_header) > 29 and dbf_header[29]:
        return f"LDID/{dbf_header[29]}"
    return None


def _read_ogr(target: str, layer: str | int | None, declared: str | None, shapefile: bool) -> gpd.GeoDataFrame:
    """Read with pyogrio; a shapefile that states no encoding is read as UTF-8 when its text is
    valid UTF-8, else as ISO-8859-1 (the dBASE default). ``attrs["encoding"]`` says which."""
    if not shapefile or declared is not None:
        gdf = gpd.read_file(target, layer=layer, engine="pyogrio")
        gdf.attrs["encoding"] = declared or "UTF-8"
        return gdf
    try:
        gdf = gpd.read_file(target, layer=layer, engine="pyogrio", encoding="UTF-8")
        gdf.attrs["encoding"] = "UTF-8 (no .cpg; text is valid UTF-8)"
    except UnicodeDecodeError:
        gdf = gpd.read_file(target, layer=layer, engine="pyogrio", encoding="ISO-8859-1")
        gdf.attrs["encoding"] = "ISO-8859-1 (no .cpg; text is not valid UTF-8)"
    return gdf


def _read_file(path: Path | str, layer: str | int | None) -> gpd.GeoDataFrame:
    text = str(path)
    if _VSIZIP.match(text) or text.lower().endswith(".zip"):
        zip_path, member, members = _zip_target(text)
        where: str = f"{zip_path}!{member}"
        target = f"/vsizip/{zip_path.resolve()}/{member}"
        shapefile = member.lower().endswith(".shp")
        declared = _zipped_shapefile_encoding(zip_path, member, members) if shapefile else None
    else:
        path = Path(text).expanduser()
        where = target = str(path)
        if not path.exists():
            raise InvalidInputError(f"{path}: polygon file not found")
        if path.is_dir():
            raise InvalidInputError(f"{path}: is a folder, expected a GeoJSON, shapefile, GeoPackage or zip file")
        if not os.access(path, os.R_OK):
            raise DataAccessError(f"{path}: not readable (permission denied)")
        shapefile = path.suffix.lower() == ".shp"
        declared = None
        if shapefile:
            _check_shapefile(path)
            declared = _shapefile_encoding(path)
    try:
        layers = pyogrio.list_layers(target)
        if layer is None and len(layers) > 1:
            names = [str(n) for n in layers[:, 0]]
            raise InvalidInputError(f"{where}: {len(layers)} layers {names}; choose one with layer= (--layer)")
        if layer is not None and isinstance(layer, str) and layer not in [str(n) for n in layers[:, 0]]:
            names = [str(n) for n in layers[:, 0]]
            raise InvalidInputError(f"{where}: no layer {layer!r} (layers: {names})")
        gdf = _read_ogr(target, layer, declared, shapefile)
    except InvalidInputError:
        raise
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
        detail = str(err).split(" It might help")[0].replace(f"'{target}' ", "").rstrip(".; ")  # GDAL's advice on drivers is noise here
        raise InvalidInputError(f"{where}: not a readable polygon file (GeoJSON, shapefile, GeoPackage): {detail}") from err
    except (pyogrio.errors.GeometryError, pyogrio.errors.FieldError, pyogrio.errors.CRSError) as err:
        raise InvalidInputError(f"{where}: malformed vector data ({err})") from err
    except OSError as err:
        raise DataAccessError(f"{where}: unreadable ({err})") from err
    gdf.attrs["source"] = where
    _warn_double_encoded(gdf, where)
    return gdf


def _warn_double_encoded(gdf: gpd.GeoDataFrame, where: str) -> None:
    """Report text that reads as UTF-8 decoded twice (``SarriÃ\xa0`` for ``Sarrià``)."""
    for col in gdf.columns:
        if col == gdf.geometry.name:
            continue
        for value in gdf[col]:
            if not isinstance(value, str) or value.isascii():
                continue
            try:
                fixed = value.encode("cp1252" if any(ord(c) > 255 for c in value) else "latin-1").decode("utf-8")
            except UnicodeError:
                continue
            if fixed != value:
                warnings.warn(
                    f"{where}: attribute {col} holds text that looks double-encoded UTF-8 ({value!r} reads "
                    f"{fixed!r} decoded once): fix the file's encoding or its .cpg",
                    UserWarning,
                    stacklevel=4,
                )
                return


def polygon_fingerprint(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(label, sha256 prefix) of a polygon file or GeoJSON text, for run keys and provenance:
    the label is the file's path (``<zip>!<member>`` inside a zip) or ``"GeoJSON text"``; the
    digest covers every file the reader uses (a shapefile's parts, the whole zip)."""
    import hashlib

    text = os.fspath(source)
    h = hashlib.sha256()
    if isinstance(source, str) and text.lstrip().startswith("{"):
        h.update(text.encode())
        return "GeoJSON text", h.hexdigest()[:16]
    if _VSIZIP.match(text) or text.lower().endswith(".zip"):
        zip_path, member, _ = _zip_target(text)
        files, label = [zip_path], f"{zip_path}!{member}"
        h.update(member.encode())
    else:
        path = Path(text).expanduser()
        label = str(path)
        files = sorted(p for p in path.parent.iterdir() if p.stem == path.stem and p.is_file()) if path.suffix.lower() == ".shp" else [path]
    try:
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    except OSError as err:
        raise DataAccessError(f"{label}: unreadable ({err})") from err
    return label, h.hexdigest()[:16]


def _from_geojson(obj: Mapping[str, Any], crs: CRS | None) -> gpd.GeoDataFrame:
    kind = obj.get("type")
    file_crs: CRS | None = None
    legacy = obj.get("crs")  # GeoJSON 2008 named CRS, still written by some tools
    if isinstance(legacy, Mapping):
        name = (legacy.get("properties") or {}).get("name")
        if name:
            file_crs = _parse_crs(name, "GeoJSON crs")
    try:
        if kind == "FeatureCollection":
            features = obj.get("features")
            if not isinstance(features, list):
                raise InvalidInputError("GeoJSON: FeatureCollection without a 'features' list")
            gdf = gpd.GeoDataFrame.from_features(features)
            if "geometry" not in gdf:
                gdf = gpd.GeoDataFrame(geometry=gpd.GeoSeries([], dtype="geometry"))
        elif kind == "Feature":
            gdf = gpd.GeoDataFrame.from_features([obj])
        elif isinstance(kind, str):
            gdf = gpd.GeoDataFrame(geometry=[shapely.geometry.shape(obj)])
        else:
            raise InvalidInputError(f"GeoJSON: missing or invalid 'type' member: {kind!r}")
    except InvalidInputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as err:
        raise InvalidInputError(f"GeoJSON: malformed {kind!r} object ({err})") from err
    if file_crs is not None and crs is not None and file_crs != crs:
        raise InvalidInputError(
            f"crs: {crs.to_string()} contradicts the GeoJSON's crs {file_crs.to_string()}"
        )
    # RFC 7946: GeoJSON coordinates are WGS84 lon/lat unless a (legacy) crs says otherwise.
    return gdf.set_crs(file_crs or crs or CRS.from_epsg(4326), allow_override=True)


def read_polygon(
    source: PolygonSource,
    *,
    crs: str | CRS | None = None,
    layer: str | int | None = None,
    make_valid: bool = False,
    max_features: int = DEFAULT_MAX_FEATURES,
    max_vertices: int = DEFAULT_MAX_VERTICES,
) -> gpd.GeoDataFrame:
    """Read and validate an area of interest made of polygons.

    Args:
        source: Path of a GeoJSON / shapefile (``.shp`` with its ``.shx`` and ``.prj``) /
            GeoPackage / any OGR vector file; a ``.zip`` holding one of them (found in
            subfolders, ``__MACOSX/`` and ``._*`` ignored) or a ``/vsizip/<zip>/<member>`` path;
            GeoJSON text (a string starting with ``{``); a GeoJSON mapping (geometry, Feature
            or FeatureCollection); a shapely geometry; or a GeoDataFrame / GeoSeries with a CRS.
            Shapefile text is decoded by its ``.cpg`` (or dBASE language byte); without either,
            as UTF-8 when it is valid UTF-8, else as ISO-8859-1 (``gdf.attrs["encoding"]`` says
            which). Text that looks double-encoded UTF-8 is reported with a ``UserWarning``.
        crs: CRS of a source that carries none (a shapely geometry: default EPSG:4326; a GeoJSON
            mapping without the legacy ``crs`` member is EPSG:4326 by RFC 7946). A file or
            frame that has a CRS must agree with it.
        layer: Layer of a multi-layer file (GeoPackage); required when there are several.
        make_valid: Repair invalid polygons (``shapely.make_valid(method="structure")``,
            polygonal part kept) instead of rejecting them. Each repair is recorded in
            ``gdf.attrs["repairs"]`` as ``{"index", "reason", "area_before", "area_after"}``
            (``area_before`` is shapely's signed-ring area of the invalid shape, e.g. 0 for a
            symmetric bow-tie) and reported with a ``UserWarning``; a repair that leaves no
            area is rejected.
        max_features: Largest accepted number of features.
        max_vertices: Largest accepted total number of vertices.

    Returns:
        GeoDataFrame (one row per feature, attributes kept) of valid, non-empty Polygon /
        MultiPolygon geometries, with a CRS; a file's ``attrs`` hold ``source`` (its path,
        ``<zip>!<member>`` inside a zip) and ``encoding``.

    Raises:
        InvalidInputError: missing file; shapefile without ``.shx`` or ``.prj`` or truncated; a
            zip with no vector file or several (named); a missing layer or several without ``layer``;
            unreadable format; no CRS; no features; missing or empty geometries; non-polygon
            types; invalid polygons (reason from GEOS, unless ``make_valid``); non-finite or
            out-of-range geographic coordinates; too many features or vertices.
        DataAccessError: the file exists but cannot be read (permissions, I/O error).
    """
    want = _parse_crs(crs, "crs") if crs is not None else None
    if isinstance(max_features, bool) or not isinstance(max_features, int) or max_features < 1:
        raise InvalidInputError(f"max_features: expected a positive integer, got {max_features!r}")
    if isinstance(max_vertices, bool) or not isinstance(max_vertices, int) or max_vertices < 4:
        raise InvalidInputError(f"max_vertices: expected an integer >= 4, got {max_vertices!r}")

    if isinstance(source, gpd.GeoDataFrame | gpd.GeoSeries):
        gdf = source.to_frame("geometry") if isinstance(source, gpd.GeoSeries) else source.copy()
        what = f"{type(source).__name__}"
        if gdf.crs is None:
            if want is None:
                raise InvalidInputError(f"{what}: has no CRS (set one or pass crs=)")
            gdf = gdf.set_crs(want)
    elif isinstance(source, shapely.Geometry):
        what = f"shapely {source.geom_type}"
        gdf = gpd.GeoDataFrame(geometry=[source], crs=want or CRS.from_epsg(4326))
    elif isinstance(source, Mapping):
        what = "GeoJSON"
        gdf = _from_geojson(source, want)
    elif isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if isinstance(source, str) and text.lstrip().startswith("{"):
            try:
                return read_polygon(
                    json.loads(text), crs=crs, make_valid=make_valid,
                    max_features=max_features, max_vertices=max_vertices,
                )  # fmt: skip
            except json.JSONDecodeError as err:
                raise InvalidInputError(f"GeoJSON text: not valid JSON ({err})") from err
        gdf = _read_file(text, layer)
        what = gdf.attrs["source"]
        if gdf.crs is None:
            raise InvalidInputError(f"{what}: the file defines no CRS, refusing to guess one")
    else:
        raise InvalidInputError(
            f"polygon: unsupported source type {type(source).__name__} (expected a path, a GeoJSON "
            "mapping, a shapely geometry or a GeoDataFrame)"
        )
    if want is not None and CRS.from_user_input(gdf.crs) != want:
        raise InvalidInputError(
            f"crs: {want.to_string()} contradicts the CRS of {what} ({gdf.crs.to_string()})"
        )
    return _validate(gdf, what, make_valid=make_valid, max_features=max_features, max_vertices=max_vertices)


def _validate(
    gdf: gpd.GeoDataFrame, what: str, *, make_valid: bool, max_features: int, max_vertices: int
) -> gpd.GeoDataFrame:
    n = len(gdf)
    if n == 0:
        raise InvalidInputError(f"{what}: no features")
    if n > max_features:
        raise InvalidInputError(f"{what}: {n} features, more than max_features={max_features}")
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    missing = [i for i, g in enumerate(geoms) if g is None]
    if missing:
        hint = " (truncated .shp?)" if what.lower().endswith(".shp") else ""
        raise InvalidInputError(
            f"{what}: {len(missing)} of {n} features have no geometry{hint}, e.g. row {missing[0]}"
        )
    empty = np.flatnonzero(shapely.is_empty(geoms))
    if empty.size:
        raise InvalidInputError(
            f"{what}: {empty.size} of {n} features have an empty geometry, e.g. row {empty[0]}"
        )
    types = sorted({g.geom_type for g in geoms} - set(_POLYGONAL))
    if types:
        raise InvalidInputError(f"{what}: geometry type {', '.join(types)} is not Polygon or MultiPolygon")
    n_vertices = int(shapely.get_num_coordinates(geoms).sum())
    if n_vertices > max_vertices:
        raise InvalidInputError(f"{what}: {n_vertices} vertices, more than max_vertices={max_vertices}")
    coords = shapely.get_coordinates(geoms)
    if not np.isfinite(coords).all():
        raise InvalidInputError(f"{what}: non-finite coordinates")
    crs = CRS.from_user_input(gdf.crs)
    if crs.is_geographic and (np.abs(coords[:, 0]).max() > 360 or np.abs(coords[:, 1]).max() > 90):
        raise InvalidInputError(
            f"{what}: coordinates outside lon/lat range for {crs.to_string()} (projected coordinates "
            "with a wrong CRS, or swapped axes?)"
        )
    invalid = np.flatnonzero(~shapely.is_valid(geoms))
    repairs: list[dict[str, Any]] = []
    if invalid.size:
        reasons = [shapely.is_valid_reason(geoms[i]) for i in invalid]
        if not make_valid:
            raise InvalidInputError(
                f"{what}: {invalid.size} invalid polygon(s), e.g. row {invalid[0]}: {reasons[0]} "
                "(pass make_valid=True to repair)"
            )
        geoms = geoms.copy()
        for i, reason in zip(invalid, reasons, strict=True):
            before = float(geoms[i].area)
            fixed = shapely.make_valid(geoms[i], method="structure", keep_collapsed=False)
            if fixed.geom_type == "GeometryCollection":
                parts = [g for g in fixed.geoms if g.geom_type in _POLYGONAL]
                fixed = shapely.union_all(parts) if parts else shapely.Polygon()
            if fixed.is_empty or fixed.area <= 0 or fixed.geom_type not in _POLYGONAL:
                raise InvalidInputError(
                    f"{what}: row {i} ({reason}) cannot be repaired into a polygon with an area"
                )
            geoms[i] = fixed
            repairs.append(
                {"index": int(i), "reason": reason, "area_before": before, "area_after": float(fixed.area)}
            )
        gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs))
        warnings.warn(
            f"{what}: repaired {len(repairs)} invalid polygon(s): "
            + "; ".join(
                f"row {r['index']} {r['reason']}: area {r['area_before']:.6g} -> {r['area_after']:.6g}"
                for r in repairs
            ),
            UserWarning,
            stacklevel=3,
        )
    gdf.attrs["repairs"] = repairs
    return gdf


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
    (``.rio.nodata``) if set, else 0, dtype kept and the fill written as the variable's nodata
    (``.rio.write_nodata``). For the WorldStrat masks 0 means "no data" (``data_mask``) / "clear"
    (``clm``): use ``data_mask`` to tell outside pixels apart. Variables without the spatial dims
    are left unchanged.

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
    y_dim, x_dim, transform, height, width, data_crs = _raster_grid(obj)
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
    out = _window(obj, y_dim, x_dim, transform, rows, cols)
    mask = xr.DataArray(inside, dims=(y_dim, x_dim))
    if isinstance(out, xr.DataArray):
        return _mask_var(out, mask, y_dim, x_dim, int_fill)
    for name, var in out.data_vars.items():
        if y_dim in var.dims and x_dim in var.dims:
            out[name] = _mask_var(var, mask, y_dim, x_dim, int_fill)
    return out


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
    return masked.rio.write_nodata(fill, encoded=False)
