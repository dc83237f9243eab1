"""Loading STAC items onto one grid with odc-stac, in the ``raw/<aoi>`` schema.

:func:`load_cube` loads harmonised items (from a STAC API, a static catalog, a local SAFE
product or a folder of band files) lazily with dask onto one explicit grid: reflectance from the
items' own scale and offset, the cloud mask from SCL, CLM, MSK_CLASSI or the GML polygons (or
none, recorded), per-date provenance, one date per solar day (adjacent tiles mosaicked).
:func:`load_dem` mosaics DEM tiles onto the same grid. No reprojection code of our own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from stliif.errors import (
    DataAccessError,
    InvalidInputError,
    NoDataError,
    StliifError,
)
from stliif.preprocess.mask import clear_fraction
from stliif.sources.providers import Provider
from stliif.sources.safe import SOURCE
from stliif.sources.stac import (
    processing_baseline,
    processing_level,
    provider_of,
    reflectance_params,
    resolve_band_asset,
)
from stliif.store_codec import PACK_ENCODING
from stliif.types import AOI, Bands

__all__ = ["CLOUD_CLASSES", "GDAL_HTTP", "REFLECTANCE_UNITS", "load_cube", "load_dem"]

log = logging.getLogger(__name__)

CLOUD_CLASSES = (8, 9, 10)
"""SCL classes counted as cloud in ``clm``: cloud medium / high probability, thin cirrus."""
GDAL_HTTP: dict[str, Any] = {
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}
"""GDAL's HTTP settings for raster reads (GDAL does not retry by default)."""


def _patch_url(p: Provider) -> Callable[[str], str] | None:
    """Planetary Computer: sign each asset URL when it is read (SAS tokens, cached until they
    expire, are fetched by ``planetary_computer``; never logged)."""
    if not p.requires_signing:
        return None
    import planetary_computer

    return planetary_computer.sign_url


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
    except Exception as err:
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
        items: Harmonised items (:func:`stliif.acquire.search`), each with ``stliif:provider``.
        bands: Canonical reflectance band ids or common names.
        geobox: The target grid (:func:`stliif.acquire.target_geobox`).
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
    packs: set[tuple[float, float, str]] = set()  # (scale, offset, DN dtype) of the items
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
        packs |= set(zip(scale.tolist(), offset.tolist(), [str(dn.dtype)] * len(its), strict=True))
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
    if len(packs) == 1 and np.issubdtype((pack := packs.pop())[2], np.integer):  # stored as the DN when lossless
        cube["reflectance"].encoding[PACK_ENCODING] = {
            "dtype": pack[2], "scale_factor": pack[0], "add_offset": pack[1], "fill": 0
        }
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
        joined: dict[str, Any] = {c: "+".join(dict.fromkeys(part[c].values.tolist()))
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
    except Exception as err:
        raise DataAccessError(f"loading {len(items)} DEM item(s) failed: {err}") from err
    ds = ds.rename({k: v for k, v in (("latitude", "y"), ("longitude", "x")) if k in ds.dims})
    dem = ds[asset].astype(np.float32)
    nodata = ds[asset].attrs.get("nodata")
    if nodata is not None and not np.isnan(nodata):
        dem = dem.where(dem != nodata)
    dem = dem.max("time") if dem.sizes["time"] > 1 else dem.isel(time=0)
    return dem.drop_vars([c for c in dem.coords if c not in ("y", "x")]).rename("dem").assign_attrs(units="m")
