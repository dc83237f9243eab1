"""From one query to a versioned Sentinel-2 L2A (+ DEM) datacube: search, load, commit.

:func:`search` asks several STAC providers concurrently with one validated query, merges,
de-duplicates and harmonises what they return. :func:`load_cube` loads the items with odc-stac,
lazily with dask, onto one explicit grid (default: the AOI's UTM zone at 10 m), as the same
schema the WorldStrat import writes (``raw/<aoi>``), so the downstream stages apply unchanged:

``reflectance`` (time, band, y, x) float32 surface reflectance (NaN where no data);
``scl``, ``clm`` (cloud: SCL 8/9/10, or the items' ``CLM`` asset), ``data_mask`` (time, y, x)
uint8; optional ``dem`` (y, x) float32 metres on the same grid; along ``time``: ``revisit``,
``cloud_cover``, ``clear_fraction``, ``provider``, ``item_ids``, ``processing_baseline``,
``reflectance_offset``. Items of one solar day (adjacent tiles) are mosaicked into one date.

:func:`run_acquire` commits ``raw/<aoi>`` once per acquisition; a later run with a longer date
range loads only the acquisitions the stored cube lacks and commits a new snapshot, so the
downstream stages recompute only that AOI. A request whose estimated size exceeds its budget is
refused before any pixel is read; an outcome with no usable date commits nothing and says why.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from stliif.config import AcquireSpec
from stliif.errors import (
    DataAccessError,
    InvalidInputError,
    NoDataError,
    StliifError,
    TransientDataAccessError,
)
from stliif.preprocess.mask import clear_fraction
from stliif.raw_schema import check_raw
from stliif.sources.providers import DEM, S2_L2A, Provider, custom_provider, get_provider
from stliif.sources.safe import SOURCE
from stliif.sources.stac import (
    RETRY_STATUSES,
    build_search_params,
    check_asset_hrefs,
    deduplicate,
    filter_items_with_assets,
    harmonise,
    make_retrying_client,
    processing_baseline,
    processing_level,
    provider_of,
    reflectance_params,
    resolve_band_asset,
    static_stac_hint,
    tag_provider,
)
from stliif.store import ArtifactStore
from stliif.types import AOI, Bands, BBox, TimeRange

__all__ = [
    "AcquireResult",
    "SearchResult",
    "area_of",
    "estimate_bytes",
    "load_cube",
    "load_dem",
    "run_acquire",
    "search",
    "target_geobox",
    "utm_crs",
]

log = logging.getLogger(__name__)

CLOUD_CLASSES = (8, 9, 10)
"""SCL classes counted as cloud in ``clm``: cloud medium / high probability, thin cirrus."""
GDAL_HTTP = {
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}
"""GDAL's HTTP settings for raster reads (GDAL does not retry by default)."""


# --------------------------------------------------------------------------------------------
# Area and grid
# --------------------------------------------------------------------------------------------


def area_of(spec: AcquireSpec) -> AOI:
    """The request's area as a validated lon/lat polygon (a bbox, or the union of a polygon
    file's / GeoJSON's features)."""
    if spec.bbox is not None:
        return AOI.from_like(BBox.from_like(spec.bbox).to_geojson())
    from stliif.preprocess.vectors import read_polygon

    source: Any = spec.polygon
    if isinstance(source, str) and source.lstrip().startswith("{"):
        import json

        try:
            source = json.loads(source)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"polygon is not valid GeoJSON: {err}") from err
    gdf = read_polygon(source).to_crs("EPSG:4326")
    return AOI.from_like(gdf.union_all())


def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone of a point, as ``EPSG:326zz`` (north) or ``EPSG:327zz`` (south)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def target_geobox(area: AOI, crs: str | None = None, resolution: float = 10.0) -> Any:
    """The output grid: ``area``'s bounds in ``crs`` (default its UTM zone) at ``resolution``
    (CRS units), pixel edges on multiples of the resolution (stable across refreshes)."""
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    c = area.geometry.centroid
    target = crs or utm_crs(c.x, c.y)
    try:
        geom = Geometry(area.geometry, "EPSG:4326").to_crs(target)
    except Exception as err:  # noqa: BLE001 - pyproj raises several types
        raise InvalidInputError(f"cannot use CRS {target!r}: {err}") from err
    if not math.isfinite(resolution) or resolution <= 0:
        raise InvalidInputError(f"resolution must be positive, got {resolution!r}")
    return GeoBox.from_bbox(geom.boundingbox, target, resolution=resolution)


WORKING_FACTOR = 6
"""Peak working memory of an acquisition over the size of its cube: DN, float32 conversion,
band stacking, masking and the store's encoding each hold a copy for a while (measured 3.6x to
4.6x in 4 runs for 8 dates x 12 bands at 2.5 m, bench/memory.py; 6 leaves a margin)."""


def estimate_bytes(n_items: int, n_bands: int, geobox: Any) -> int:
    """Working memory of loading ``n_items`` items: :data:`WORKING_FACTOR` x the cube's size
    (float32 reflectance + 3 uint8 masks per item and pixel)."""
    h, w = geobox.shape
    return WORKING_FACTOR * int(n_items) * int(h) * int(w) * (4 * int(n_bands) + 3)


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """What a multi-provider search found."""

    items: list[pystac.Item]
    """Harmonised, de-duplicated items that have every requested band (sorted by time)."""
    found: dict[str, int] = field(default_factory=dict)
    """Items each provider returned, before de-duplication."""
    errors: dict[str, str] = field(default_factory=dict)
    """Providers that failed, with the reason (the others' items are still used)."""


def check_acquire(spec: AcquireSpec) -> None:
    """Check a request before any search: the area (bbox, or polygon file or GeoJSON), the grid
    (CRS, resolution) and the providers."""
    target_geobox(area_of(spec), spec.crs, spec.resolution)
    _providers(spec)


def _providers(spec: AcquireSpec) -> list[Provider]:
    out: list[Provider] = []
    for name in dict.fromkeys(spec.providers):
        p = get_provider(name)
        if p.name == "custom":  # a STAC API URL: named, and given the request's collections
            n = sum(q.name.startswith(spec.provider_name) for q in out)
            p = custom_provider(
                p.url, name=spec.provider_name if n == 0 else f"{spec.provider_name}-{n + 1}",
                collection=spec.collection or p.collection(S2_L2A),
                dem_collection=spec.dem_collection, dem_asset=spec.dem_asset,
            )
        elif spec.collection is not None or spec.dem_collection is not None:
            raise InvalidInputError("collection / dem_collection apply to STAC API URL providers only")
        out.append(p)
    return out


def _search_one(p: Provider, area: AOI, spec: AcquireSpec, role: str) -> list[pystac.Item]:
    params = build_search_params(
        p, area, (spec.start, spec.end), max_cloud=spec.max_cloud if role == S2_L2A else None,
        limit=min(spec.max_items, 100), max_items=spec.max_items, role=role,
    )
    if role == DEM:  # the DEM is static: its items' dates say nothing about the request's
        params.pop("datetime")
    client = make_retrying_client(p.url, timeout=spec.timeout, retries=spec.retries)
    from pystac_client.exceptions import APIError
    from pystac_client.warnings import DoesNotConformTo

    try:
        items = list(client.search(**params).items())
    except DoesNotConformTo as err:  # a static catalog: no /search
        raise InvalidInputError(static_stac_hint(p.url)) from err
    except APIError as err:
        status = getattr(err, "status_code", None)
        kind = TransientDataAccessError if status is None or status in RETRY_STATUSES else DataAccessError
        raise kind(f"{p.name}: search failed (status {status or 'no response'}) after {spec.retries} retries") from err
    except OSError as err:  # connection errors and timeouts (requests' errors are OSErrors)
        raise TransientDataAccessError(f"{p.name}: search failed after {spec.retries} retries: {type(err).__name__}") from err
    except ValueError as err:  # a body that is not JSON, or not STAC
        raise DataAccessError(f"{p.name}: malformed search response ({type(err).__name__}: {str(err)[:120]})") from err
    return tag_provider(items, p)


def search(spec: AcquireSpec, *, role: str = S2_L2A) -> SearchResult:
    """Search every provider of ``spec`` concurrently and merge the results.

    A provider that fails is recorded in :attr:`SearchResult.errors`; the search fails only
    when every provider failed.

    Raises:
        InvalidInputError: invalid query (checked before any request).
        DataAccessError: every provider failed.
    """
    area = area_of(spec)
    TimeRange.from_like((spec.start, spec.end))
    providers = _providers(spec)
    found: dict[str, list[pystac.Item]] = {}
    errors: dict[str, str] = {}
    transient = True
    # One daemon thread per provider, waited for until the request's deadline: a provider that
    # has not answered by then (a dead host retried with backoff, a stall) is recorded as
    # failed, and its thread cannot hold the process up once the run ends.
    outcomes: dict[str, list[pystac.Item] | BaseException] = {}

    def ask(p: Provider) -> None:
        try:
            outcomes[p.name] = _search_one(p, area, spec, role)
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            outcomes[p.name] = err

    threads = {p.name: threading.Thread(target=ask, args=(p,), daemon=True, name=f"search-{p.name}") for p in providers}
    for t in threads.values():
        t.start()
    end = time.monotonic() + spec.deadline
    for name, t in threads.items():
        t.join(max(0.0, end - time.monotonic()))
        late = TransientDataAccessError(f"{name}: no answer within the deadline of {spec.deadline:g} s")
        outcome = late if t.is_alive() else outcomes[name]
        if isinstance(outcome, InvalidInputError):
            raise outcome
        if isinstance(outcome, StliifError):
            errors[name] = str(outcome)
            transient = transient and isinstance(outcome, TransientDataAccessError)
            log.warning("provider %s failed: %s", name, outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            found[name] = outcome
    if errors and not found:
        kind = TransientDataAccessError if transient else DataAccessError
        raise kind("every provider failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    items = [i for its in found.values() for i in its]
    counts = {k: len(v) for k, v in found.items()}
    if role == DEM or not items:
        return SearchResult(items, counts, errors)
    by_name = {p.name: p for p in providers}
    items = deduplicate(items, preference=[p.name for p in providers])
    items = harmonise(items)
    wanted = [b for b in Bands.from_like(spec.bands).names if b != "SCL"]
    kept = []
    for name, p in by_name.items():
        mine = [i for i in items if provider_of(i) == name]
        if mine:  # items without SCL are kept: their cloud mask is CLM, or recorded as none
            mine = filter_items_with_assets(mine, wanted, provider=p, min_items=0)
            check_asset_hrefs(mine, [*wanted, "SCL"], provider=p)
            kept += mine
    kept.sort(key=lambda i: (i.datetime or dt.datetime.min.replace(tzinfo=dt.UTC), i.id))
    return SearchResult(kept, counts, errors)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _patch_url(p: Provider) -> Callable[[str], str] | None:
    """Planetary Computer: sign each asset URL when it is read (SAS tokens, cached until they
    expire, are fetched by ``planetary_computer``; never logged)."""
    if not p.requires_signing:
        return None
    import planetary_computer

    return planetary_computer.sign_url  # type: ignore[no-any-return]


def _solar_day(item: pystac.Item) -> np.datetime64:
    when = item.datetime or dt.datetime.fromisoformat(str(item.properties["start_datetime"]))
    lon = (item.bbox[0] + item.bbox[2]) / 2 if item.bbox else 0.0
    return np.datetime64((when + dt.timedelta(hours=lon / 15.0)).date(), "D")


def _odc_load(items: list[pystac.Item], assets: list[str], geobox: Any, resampling: Mapping[str, str],
              patch_url: Callable[[str], str] | None) -> xr.Dataset:
    import odc.stac

    odc.stac.configure_rio(cloud_defaults=True, **GDAL_HTTP)
    try:
        ds = odc.stac.load(
            items, bands=assets, geobox=geobox, groupby="id", chunks={"x": 2048, "y": 2048},
            resampling=dict(resampling), patch_url=patch_url, fail_on_error=True,
            preserve_original_order=True,
        )
    except StliifError:
        raise
    except Exception as err:  # noqa: BLE001 - odc/rasterio raise many types
        raise DataAccessError(f"loading {len(items)} item(s) failed: {err}") from err
    return ds.rename({k: v for k, v in (("latitude", "y"), ("longitude", "x")) if k in ds.dims})


def load_cube(
    items: Sequence[pystac.Item],
    bands: Sequence[str],
    geobox: Any,
    *,
    providers: Mapping[str, Provider] | None = None,
    area: AOI | None = None,
    resampling: str = "bilinear",
) -> xr.Dataset:
    """Load harmonised items onto ``geobox`` as a lazy cube in the ``raw/<aoi>`` schema.

    Args:
        items: Harmonised items (:func:`search`), each with ``stliif:provider``.
        bands: Canonical reflectance band ids or common names.
        geobox: The target grid (:func:`target_geobox`).
        providers: Provider objects by name (default: the registry / item layout).
        area: Pixels outside this polygon get ``data_mask`` 0 and NaN reflectance.
        resampling: Resampling of the reflectance bands (masks always use nearest).

    Returns:
        A dask-backed Dataset (see the module docstring), one date per solar day.

    Raises:
        NoDataError: no items.
        DataAccessError: an asset could not be read.
    """
    if not items:
        raise NoDataError("no items to load")
    names = [b for b in Bands.from_like(bands).names if b != "SCL"]
    levels = {processing_level(i) for i in items}
    if len(levels) > 1:
        raise InvalidInputError(
            f"items mix processing levels {sorted(levels)}: top-of-atmosphere (L1C) and surface reflectance (L2A) "
            "cannot share one cube; load them under different AOI names")
    level = levels.pop()
    per_item: list[xr.Dataset] = []
    groups: dict[tuple[str, str | None, str], list[pystac.Item]] = {}
    for it in items:
        name = provider_of(it)
        p = (providers or {}).get(name)
        scl_key = resolve_band_asset(it, "SCL", provider=p)
        groups.setdefault((name, scl_key, _cloud_source(it, scl_key)), []).append(it)
    for (name, scl_key, cloud), its in groups.items():
        p = (providers or {}).get(name)
        keys = {b: resolve_band_asset(its[0], b, provider=p) for b in names}
        lacking = [b for b, k in keys.items() if k is None]
        if lacking:
            raise NoDataError(f"item {its[0].id} has no asset for band(s) {', '.join(lacking)}")
        extra = {"CLM": ["CLM"], "MSK_CLASSI": ["MSK_CLASSI.1", "MSK_CLASSI.2"]}.get(cloud, [])
        assets = [k for k in keys.values() if k] + ([scl_key] if scl_key else []) + extra
        rs = {"*": resampling, **dict.fromkeys([scl_key or "SCL", *extra], "nearest")}
        ds = _odc_load(list(its), assets, geobox, rs, _patch_url(p) if p else None)
        scale = np.array([reflectance_params(i)[0] for i in its], np.float32)
        offset = np.array([reflectance_params(i)[1] for i in its], np.float32)
        dn = xr.concat([ds[keys[b]] for b in names], dim="band").transpose("time", "band", "y", "x")
        refl = dn.astype(np.float32) * xr.DataArray(scale, dims="time") + xr.DataArray(offset, dims="time")
        refl = refl.where(dn != 0)
        data = {"reflectance": refl.assign_coords(band=names)}
        if scl_key:
            data["scl"] = ds[scl_key].astype(np.uint8)
        if cloud == "CLM":
            data["clm"] = ds["CLM"].astype(np.uint8)
        elif cloud == "SCL":
            data["clm"] = data["scl"].isin(CLOUD_CLASSES).astype(np.uint8)
        elif cloud == "MSK_CLASSI":  # bands 1 and 2: opaque clouds, cirrus (3, snow, is not cloud)
            data["clm"] = ((ds["MSK_CLASSI.1"] > 0) | (ds["MSK_CLASSI.2"] > 0)).astype(np.uint8)
        elif cloud == "MSK_CLOUDS":
            data["clm"] = xr.concat([_gml_cloud_mask(i, geobox) for i in its], dim="time").assign_coords(
                time=ds["time"])
        else:
            log.warning("%d item(s) of %s have no cloud mask (no SCL, CLM, MSK_CLASSI or MSK_CLOUDS): clm is 0, "
                        "recorded as cloud_mask 'none'", len(its), name)
            data["clm"] = xr.zeros_like(ds[keys[names[0]]], dtype=np.uint8)
        per_item.append(xr.Dataset(
            data,
            coords={
                "provider": ("time", [name] * len(its)),
                "item_id": ("time", [i.id for i in its]),
                "day": ("time", [_solar_day(i) for i in its]),
                "cloud_cover": ("time", [float(i.properties.get("eo:cloud_cover", np.nan)) for i in its]),
                "processing_baseline": ("time", [processing_baseline(i) or "" for i in its]),
                "reflectance_offset": ("time", offset),
                "processing_level": ("time", [level] * len(its)),
                "cloud_mask": ("time", [_CLOUD_MASK_NAMES[cloud]] * len(its)),
                "source_kind": ("time", [_source(i)[0] for i in its]),
                "source_href": ("time", [_source(i)[1] for i in its]),
            },
        ).drop_vars("spatial_ref", errors="ignore"))
    if not all("scl" in d for d in per_item):  # SCL only where every date has one
        per_item = [d.drop_vars("scl", errors="ignore") for d in per_item]
    cube = xr.concat(per_item, dim="time").sortby(["day", "time"])
    cube = _mosaic_days(cube)
    cube["data_mask"] = cube["reflectance"].notnull().all("band").astype(np.uint8)
    if area is not None:
        inside = _inside(area, geobox)
        cube["data_mask"] = cube["data_mask"] * inside.astype(np.uint8)
        cube["reflectance"] = cube["reflectance"].where(inside)
    cube = cube.assign_coords(
        clear_fraction=clear_fraction(cube),  # over the area's pixels, the rule of the mask stage
        revisit=("time", np.arange(1, cube.sizes["time"] + 1, dtype=np.int16)),
    )
    cube["reflectance"].attrs["nodata"] = "NaN"
    cube.attrs.update({"reflectance_units": REFLECTANCE_UNITS[level], "processing_level": level})
    return cube.rio.write_crs(str(geobox.crs)).rio.write_transform(geobox.affine)


REFLECTANCE_UNITS = {
    "L2A": "surface reflectance (harmonised: DN x scale + offset)",
    "L1C": "top-of-atmosphere reflectance (L1C: DN x scale + offset)",
}
"""The cube's ``reflectance_units`` attribute per processing level."""
_CLOUD_MASK_NAMES = {"SCL": "SCL", "CLM": "CLM", "MSK_CLASSI": "MSK_CLASSI_B00", "MSK_CLOUDS": "MSK_CLOUDS_B00",
                     "none": "none"}


def _cloud_source(item: pystac.Item, scl_key: str | None) -> str:
    """Where an item's cloud mask comes from: ``CLM``, ``SCL``, ``MSK_CLASSI``, ``MSK_CLOUDS`` or ``none``."""
    if "CLM" in item.assets:
        return "CLM"
    if scl_key:
        return "SCL"
    for key in ("MSK_CLASSI", "MSK_CLOUDS"):
        if key in item.assets:
            return key
    return "none"


def _source(item: pystac.Item) -> tuple[str, str]:
    """(kind, href) of where an item came from: a local product's path, else the item's self link."""
    rec = item.properties.get(SOURCE)
    if isinstance(rec, Mapping):
        return str(rec.get("kind", "")), str(rec.get("href", ""))
    link = item.get_single_link("self")
    return "stac", (link.get_href(transform_href=False) or "") if link is not None else ""


def _gml_cloud_mask(item: pystac.Item, geobox: Any) -> xr.DataArray:
    """An older L1C product's ``MSK_CLOUDS_B00.gml`` (OPAQUE and CIRRUS polygons) rasterised on ``geobox``."""
    import xml.etree.ElementTree as ET

    from odc.geo.geom import Geometry
    from rasterio.features import rasterize
    from shapely.geometry import Polygon

    href = item.assets["MSK_CLOUDS"].href
    data = _read_vsi(href)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise DataAccessError(f"item {item.id}: cloud mask {href} is not valid XML: {err}") from err
    ns = "{http://www.opengis.net/gml/3.2}"
    shapes = []
    for poly in root.iter(f"{ns}Polygon"):
        srs = poly.get("srsName") or ""
        epsg = srs.rsplit(":", 1)[-1] if srs else ""
        pos = next(poly.iter(f"{ns}posList"), None)
        if pos is None or not pos.text:
            continue
        v = [float(t) for t in pos.text.split()]
        ring = list(zip(v[0::2], v[1::2], strict=False))
        if len(ring) >= 3 and epsg.isdigit():
            shapes.append(Geometry(Polygon(ring), f"EPSG:{epsg}").to_crs(geobox.crs).geom)
    mask = np.zeros(geobox.shape, np.uint8)
    if shapes:
        mask = rasterize([(g, 1) for g in shapes], out_shape=geobox.shape, transform=geobox.affine,
                         fill=0, dtype="uint8")
    return xr.DataArray(mask[None], dims=("time", "y", "x"))


def _read_vsi(href: str) -> bytes:
    """The bytes of a local file or a ``/vsizip/`` member."""
    import zipfile
    from pathlib import Path

    if href.startswith("/vsizip/"):
        rest = href[len("/vsizip/"):]
        i = rest.find(".zip/")
        if i < 0:
            raise DataAccessError(f"cannot read {href}")
        try:
            with zipfile.ZipFile(rest[: i + 4]) as zf:
                return zf.read(rest[i + 5:])
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise DataAccessError(f"cannot read {href}: {err}") from err
    try:
        return Path(href).read_bytes()
    except OSError as err:
        raise DataAccessError(f"cannot read {href}: {err}") from err


def _mosaic_days(cube: xr.Dataset) -> xr.Dataset:
    """One date per solar day: the first item with data wins per pixel (items sorted by time)."""
    days = cube["day"].values
    if len(np.unique(days)) == len(days):
        return cube.drop_vars("day")
    out = []
    for day in np.unique(days):
        part = cube.isel(time=np.flatnonzero(days == day))
        first = part.isel(time=0)
        masks = [v for v in ("scl", "clm") if v in part]
        refl = first["reflectance"]
        layers = {v: first[v] for v in masks}
        for k in range(1, part.sizes["time"]):
            nxt = part.isel(time=k)
            fill = refl.isnull().all("band")
            refl = refl.where(~fill, nxt["reflectance"])
            layers = {v: layers[v].where(~fill, nxt[v]) for v in masks}
        merged = first.copy()
        merged["reflectance"] = refl
        for v in masks:
            merged[v] = layers[v]
        joined = {c: "+".join(dict.fromkeys(part[c].values.tolist()))
                  for c in ("provider", "cloud_mask", "source_kind") if c in part.coords}
        merged = merged.assign_coords(
            **joined,
            item_id=" ".join(part["item_id"].values.tolist()),
            cloud_cover=float(np.nanmean(part["cloud_cover"].values)) if part["cloud_cover"].notnull().any() else np.nan,
        )
        if "source_href" in part.coords:
            merged = merged.assign_coords(source_href=" ".join(dict.fromkeys(part["source_href"].values.tolist())))
        out.append(merged)
    return xr.concat(out, dim="time").drop_vars("day")


def _inside(area: AOI, geobox: Any) -> xr.DataArray:
    from odc.geo.geom import Geometry
    from rasterio.features import geometry_mask

    geom = Geometry(area.geometry, "EPSG:4326").to_crs(geobox.crs)
    mask = geometry_mask([geom.geom], out_shape=geobox.shape, transform=geobox.affine, invert=True)
    return xr.DataArray(mask, dims=("y", "x"))


def load_dem(items: Sequence[pystac.Item], geobox: Any, provider: Provider) -> xr.DataArray:
    """The DEM tiles mosaicked onto ``geobox`` (bilinear), float32 metres, NaN where none.

    Loaded as float32, so odc-stac fills the grid outside every tile with NaN, also for integer
    DEMs without a declared nodata (it would fill those with 0: cliffs at the edge); a declared
    nodata is left out of the warp's kernels and becomes NaN."""
    if not items:
        raise NoDataError(f"{provider.name}: no DEM tile covers the area")
    import odc.stac

    asset = provider.dem_asset or "data"
    odc.stac.configure_rio(cloud_defaults=True, **GDAL_HTTP)
    try:
        ds = odc.stac.load(
            list(items), bands=[asset], geobox=geobox, groupby="id", dtype="float32",
            resampling="bilinear", patch_url=_patch_url(provider), fail_on_error=True,
        )  # fmt: skip
    except StliifError:
        raise
    except Exception as err:  # noqa: BLE001 - odc/rasterio raise many types
        raise DataAccessError(f"loading {len(items)} DEM item(s) failed: {err}") from err
    ds = ds.rename({k: v for k, v in (("latitude", "y"), ("longitude", "x")) if k in ds.dims})
    dem = ds[asset].astype(np.float32)
    nodata = ds[asset].attrs.get("nodata")
    if nodata is not None and not np.isnan(nodata):
        dem = dem.where(dem != nodata)
    dem = dem.max("time") if dem.sizes["time"] > 1 else dem.isel(time=0)
    return dem.drop_vars([c for c in dem.coords if c not in ("y", "x")]).rename("dem").assign_attrs(units="m")


# --------------------------------------------------------------------------------------------
# Acquire and commit
# --------------------------------------------------------------------------------------------


@dataclass
class AcquireResult:
    """What :func:`run_acquire` did."""

    aoi: str
    status: str
    """``"committed"``, ``"unchanged"`` (nothing new) or ``"no-data"`` (nothing usable; no commit)."""
    reason: str = ""
    snapshot_id: str = ""
    dates: list[str] = field(default_factory=list)
    """Dates of the stored cube after this run."""
    new_dates: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    """Dates left out, with why (cloudy over the AOI)."""
    found: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    """Metadata table: date, provider, cloud cover, clear fraction, processing baseline."""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def metadata_table(cube: xr.Dataset) -> list[dict[str, Any]]:
    """One row per date: date, provider, items, cloud cover, clear fraction, baseline, offset."""
    rows = []
    for i in range(cube.sizes["time"]):
        c = cube.isel(time=i)
        cc = float(c["cloud_cover"])
        rows.append({
            "date": str(c["time"].values)[:10],
            "provider": str(c["provider"].values),
            "items": str(c["item_id"].values),
            "cloud_cover": None if math.isnan(cc) else round(cc, 2),
            "clear_fraction": round(float(c["clear_fraction"]), 4),
            "processing_baseline": str(c["processing_baseline"].values),
            "reflectance_offset": float(c["reflectance_offset"]),
            **{k: str(c[k].values) for k in ("processing_level", "cloud_mask", "source_kind", "source_href")
               if k in c.coords},
        })
    return rows


def _with_provenance(stored: xr.Dataset) -> xr.Dataset:
    """A cube committed before per-date provenance existed, with the values it implied (L2A, SCL, STAC)."""
    n = stored.sizes["time"]
    defaults = {"processing_level": "L2A", "cloud_mask": "SCL", "source_kind": "stac", "source_href": ""}
    missing = {k: ("time", [v] * n) for k, v in defaults.items() if k not in stored.coords}
    return stored.assign_coords(missing) if missing else stored


def _item_ids(cube: xr.Dataset) -> list[str]:
    """Every item id of a cube (a mosaicked date lists its items separated by spaces)."""
    return [i for ids in cube["item_id"].values.tolist() for i in str(ids).split()]


def _same_grid(stored: xr.Dataset, geobox: Any) -> bool:
    from rasterio.crs import CRS

    return (
        stored.rio.crs == CRS.from_user_input(str(geobox.crs))
        and (stored.sizes["y"], stored.sizes["x"]) == tuple(geobox.shape)
        and np.allclose(tuple(stored.rio.transform())[:6], tuple(geobox.affine)[:6])
    )


def run_acquire(
    store: ArtifactStore, spec: AcquireSpec, *, run_id: str | None = None
) -> AcquireResult:
    """Search, load and commit ``raw/<spec.aoi>``; on a refresh load only the new dates.

    Raises:
        InvalidInputError: invalid request, over the size budget, or a grid that differs from
            the stored cube's (use another AOI name).
        DataAccessError: every provider failed, or an asset could not be read.
    """
    area = area_of(spec)
    geobox = target_geobox(area, spec.crs, spec.resolution)
    found = search(spec)
    providers = {p.name: p for p in _providers(spec)}

    def dem() -> xr.DataArray:
        p = next(iter(providers.values()))
        return load_dem(search(spec, role=DEM).items, geobox, p)

    return _commit_items(
        store, spec.aoi, found.items, area, geobox, bands=spec.bands, providers=providers,
        resampling=spec.resampling, min_clear=spec.min_clear, max_mb=spec.max_mb, stage="acquire",
        params=spec.model_dump(mode="json"), attrs={"source": "stac", "providers": list(providers)},
        result=AcquireResult(spec.aoi, "no-data", found=found.found, errors=found.errors),
        dem=dem if spec.dem else None, run_id=run_id,
        nothing=f"no items match (providers returned {found.found}"
                f"{', errors: ' + str(found.errors) if found.errors else ''})",
    )


def _commit_items(
    store: ArtifactStore,
    aoi: str,
    items: Sequence[pystac.Item],
    area: AOI,
    geobox: Any,
    *,
    bands: Sequence[str],
    providers: Mapping[str, Provider],
    resampling: str,
    min_clear: float,
    max_mb: float,
    stage: str,
    params: Mapping[str, Any],
    attrs: Mapping[str, Any],
    result: AcquireResult,
    nothing: str,
    dem: Callable[[], xr.DataArray] | None = None,
    run_id: str | None = None,
) -> AcquireResult:
    """Load the harmonised ``items`` that ``raw/<aoi>`` lacks and commit the cube once: what
    :func:`run_acquire` and :func:`stliif.ingest.run_import` share (per-date provenance, the
    clear-fraction filter, the size budget, appending to a stored cube on the same grid)."""
    path = f"raw/{aoi}"
    stored = store.read(path, load=True) if store.version(path) is not None else None
    if stored is not None and not _same_grid(stored, geobox):
        raise InvalidInputError(
            f"{path} exists on another grid (CRS, resolution or extent changed): {stage} under a new AOI name"
        )
    have = set()
    if stored is not None:
        have = set(_item_ids(stored))
        result.dates = [str(t)[:10] for t in stored["time"].values]
    new_items = [i for i in items if i.id not in have]
    if not new_items:
        result.status = "unchanged" if stored is not None else "no-data"
        result.reason = "no new acquisitions" if stored is not None else nothing
        if stored is not None:
            result.snapshot_id = store.snapshot_id(store.spec.branch)
            result.table = metadata_table(stored)
        return result
    names = [b for b in Bands.from_like(bands).names if b != "SCL"]
    need = estimate_bytes(len(new_items), len(names), geobox) + 2 * (0 if stored is None else int(stored.nbytes))
    if need > max_mb * 2**20:
        raise InvalidInputError(
            f"request needs about {need / 2**20:.0f} MiB of memory ({len(new_items)} items x {len(names)} bands on a "
            f"{geobox.shape[0]}x{geobox.shape[1]} grid), above the budget of {max_mb:g} MiB: narrow the "
            "area, dates or bands, or raise max_mb"
        )
    cube = load_cube(new_items, names, geobox, providers=providers, area=area, resampling=resampling)
    times = cube["time"].values
    try:  # pixels are read here (the cube is lazy): a bad asset fails now, before any commit
        clear = cube["clear_fraction"].values
        valid = (cube["data_mask"] == 1).any(("y", "x")).values
        keep = (clear >= min_clear) & valid
        cube = cube.isel(time=np.flatnonzero(keep)).load()
    except Exception as err:  # noqa: BLE001 - rasterio/odc raise many types
        raise DataAccessError(f"loading {len(new_items)} item(s) failed: {err}") from err
    for t, c, v in zip(times[~keep], clear[~keep], valid[~keep], strict=True):
        result.dropped[str(t)[:10]] = f"clear fraction {c:.3f} < {min_clear:g}" if v else "no valid pixel over the area"
    if cube.sizes["time"] == 0 and stored is None:
        result.reason = (f"all {len(clear)} date(s) too cloudy over the AOI (min_clear {min_clear:g})" if valid.all()
                         else f"no usable date over the area ({'; '.join(f'{d}: {w}' for d, w in result.dropped.items())})")
        return result
    if cube.sizes["time"] == 0:
        result.status, result.reason = "unchanged", "every new date too cloudy"
        result.snapshot_id = store.snapshot_id(store.spec.branch)
        result.table = metadata_table(stored)
        return result
    result.new_dates = [str(t)[:10] for t in cube["time"].values]
    if dem is not None:
        cube["dem"] = dem().load() if stored is None or "dem" not in stored else stored["dem"]
    if stored is not None:
        stored = _with_provenance(stored)
        if str(stored["processing_level"].values[0]) != cube.attrs["processing_level"]:
            raise InvalidInputError(
                f"{path} holds {stored['processing_level'].values[0]} data and these items are "
                f"{cube.attrs['processing_level']}: {stage} under a new AOI name")
        cube = xr.concat([stored.drop_vars("dem", errors="ignore"), cube.drop_vars("dem", errors="ignore")],
                         dim="time", data_vars="all").sortby("time")
        if "dem" in stored:
            cube["dem"] = stored["dem"]
        cube = cube.assign_coords(revisit=("time", np.arange(1, cube.sizes["time"] + 1, dtype=np.int16)))
    level = str(cube["processing_level"].values[0])
    cube.attrs.update({
        "aoi": aoi, **attrs, "geometry": area.to_geojson(),
        "reflectance_units": REFLECTANCE_UNITS[level], "processing_level": level,
    })
    cube = cube.rio.write_crs(str(geobox.crs)).rio.write_transform(geobox.affine)
    check_raw(cube, provenance=True)
    inputs = {path: store.version(path) or ""} if stored is not None else {}
    commit = store.commit({path: cube}, stage=stage, params={**params, "items": sorted(_item_ids(cube))},
                          inputs=inputs, run_id=run_id,
                          message=f"{stage}: {path} (+{len(result.new_dates)} dates)")
    result.status = "committed" if commit.created else "unchanged"
    result.snapshot_id = commit.snapshot_id
    result.dates = [str(t)[:10] for t in cube["time"].values]
    result.table = metadata_table(cube)
    return result
