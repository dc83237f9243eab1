"""Polygon areas as users have them: GeoJSON (file or text), shapefiles (also zipped), GeoPackages.

:func:`read_polygon` reads and validates one polygon source into a GeoDataFrame (one row per
feature, attributes kept and decoded, CRS set); :func:`polygon_fingerprint` is a cheap content
key of a polygon file for run keys. Cutting a cube to a polygon is :mod:`stliif.preprocess.crop`.
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import geopandas as gpd
import numpy as np
import pyogrio
import pyogrio.errors
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from stliif.errors import DataAccessError, InvalidInputError

__all__ = [
    "DEFAULT_MAX_FEATURES",
    "DEFAULT_MAX_VERTICES",
    "PolygonSource",
    "parse_crs",
    "polygon_fingerprint",
    "read_polygon",
]

PolygonSource: TypeAlias = (
    str | os.PathLike[str] | Mapping[str, Any] | shapely.Geometry | gpd.GeoDataFrame | gpd.GeoSeries
)

DEFAULT_MAX_FEATURES = 1_000
"""Default limit on the number of features of a polygon source."""
DEFAULT_MAX_VERTICES = 100_000
"""Default limit on the total number of vertices of a polygon source."""

_POLYGONAL = ("Polygon", "MultiPolygon")


def parse_crs(value: Any, field: str) -> CRS:
    """A pyproj CRS from anything pyproj accepts, or one line naming ``field``."""
    try:
        return CRS.from_user_input(value)
    except (CRSError, TypeError, ValueError) as err:
        raise InvalidInputError(f"{field}: not a valid CRS {value!r} ({err})") from err


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
            file_crs = parse_crs(name, "GeoJSON crs")
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
    want = parse_crs(crs, "crs") if crs is not None else None
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


