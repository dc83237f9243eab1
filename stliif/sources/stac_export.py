"""Export the WorldStrat dataset as a static STAC catalog with Cloud-Optimized GeoTIFF assets.

Layout written under ``out_dir`` (pystac's default layout, relative links)::

    catalog.json                                   id "worldstrat"
    worldstrat-lr/collection.json                  Sentinel-2 L2A revisits
    worldstrat-lr/<AOI>-<n>/<AOI>-<n>.json         one item per revisit
    worldstrat-lr/<AOI>-<n>/{B01..B12,B8A}.tif     one COG per band: uint16 DN, nodata 0
    worldstrat-lr/<AOI>-<n>/{CLM,CLP,SCL,dataMask}.tif   masks (uint8; SCL when present)
    worldstrat-hr/collection.json                  SPOT 6/7
    worldstrat-hr/<AOI>/<AOI>.json                 one item per AOI
    worldstrat-hr/<AOI>/{pan,rgbn}.tif

Band assets are keyed by S2 band id (the layout :func:`stliif.sources.providers.custom_provider`
assumes) and carry ``eo:bands`` (name, common name, wavelengths) and ``raster:bands``
(``uint16``, nodata 0, scale 0.0001, offset 0: WorldStrat's L2A values come harmonised), so
``odc.stac.load(items, bands=[...])`` loads each band by id or common name. Items carry the
projection extension (``proj:code``, shape, transform, bbox). Asset hrefs are absolute:
``file://`` URIs by default, or ``href_base`` + the path relative to ``out_dir`` (to serve the
folder over HTTP). Catalog links are relative, so the folder can be moved or served as is.

The export is deterministic (no creation timestamps) and atomic: it is written to a temporary
sibling folder and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pystac
import rasterio
import rasterio.errors
from affine import Affine
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.transform import array_bounds

from stliif.errors import DataAccessError, InvalidInputError
from stliif.names import validate_name
from stliif.sources.worldstrat import (
    BANDS,
    MASKS,
    find_aoi_files,
    list_aois,
    read_hr,
    read_metadata,
)
from stliif.types import S2_BANDS

__all__ = [
    "CATALOG_ID",
    "HR_COLLECTION",
    "LR_COLLECTION",
    "MASK_ASSETS",
    "export_worldstrat_stac",
]

log = logging.getLogger(__name__)

CATALOG_ID = "worldstrat"
LR_COLLECTION = "worldstrat-lr"
HR_COLLECTION = "worldstrat-hr"
COG_MEDIA_TYPE = pystac.MediaType.COG
WORLDSTRAT_URL = "https://zenodo.org/record/6810792"
SCIENTIFIC_EXT = "https://stac-extensions.github.io/scientific/v1.0.0/schema.json"
CITATION = (
    "Cornebise, Orsolic, Kalaitzis: High-Resolution Satellite Imagery: The WorldStrat Dataset - "
    "With Application to Super-Resolution. NeurIPS 2022 Datasets and Benchmarks."
)
SCALE = 1e-4
"""Reflectance = DN * SCALE (WorldStrat L2A values are harmonised: no BOA offset)."""

MASK_ASSETS: dict[str, dict[str, Any]] = {
    "CLM": {"title": "Cloud mask (0 clear, 1 cloud)", "roles": ["cloud"], "nodata": None},
    "CLP": {"title": "Cloud probability (0-255)", "roles": ["cloud"], "nodata": None},
    "SCL": {"title": "Scene classification (L2A SCL)", "roles": ["data", "classification"], "nodata": 0},
    "dataMask": {"title": "Valid-data mask (1 valid)", "roles": ["data-mask"], "nodata": None},
}
"""Mask assets of the LR items: title, roles and nodata (``None``: every value is valid)."""

# STAC eo common names (eo v1.1.0 list); B05-B07 use the unambiguous STAC 1.1 names.
_EO_COMMON = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge071",
    "B06": "rededge075", "B07": "rededge078", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22",
}  # fmt: skip

_COG_OPTIONS = {"driver": "COG", "compress": "deflate", "blocksize": 256}


def _check_href_base(href_base: str | None) -> str | None:
    if href_base is None:
        return None
    if not isinstance(href_base, str):
        raise InvalidInputError(f"href_base must be a string URL, got {href_base!r}")
    parts = urlsplit(href_base)
    if parts.scheme not in ("http", "https", "s3", "file") or (parts.scheme != "file" and not parts.netloc):
        raise InvalidInputError(
            f"href_base {href_base!r} must be an http(s)://host/..., s3://bucket/... or file:// URL"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInputError("href_base must not carry credentials, a query string or a fragment")
    return href_base if href_base.endswith("/") else href_base + "/"


def _write_cog(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine,
    crs: str,
    nodata: float | None,
    scales: Sequence[float] | None = None,
) -> None:
    """Write a (bands, y, x) or (y, x) array as a COG."""
    arr = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        **_COG_OPTIONS,
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if arr.dtype == np.uint16:
        profile["predictor"] = "YES"  # horizontal differencing (COG driver: YES/NO/...)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
        if scales is not None:
            dst.scales = tuple(scales)
            dst.offsets = tuple(0.0 for _ in scales)


def _read(path: Path) -> tuple[np.ndarray, Any]:
    try:
        with rasterio.open(path) as src:
            return src.read(), src.profile
    except (rasterio.errors.RasterioError, OSError) as err:
        raise DataAccessError(f"{path}: unreadable raster ({err})") from err


def _to_dn(data: np.ndarray, path: Path) -> np.ndarray:
    """uint16 DN from either WorldStrat encoding (uint16 DN, or float32 reflectance)."""
    if data.dtype == np.uint16:
        return data
    if np.issubdtype(data.dtype, np.floating):
        dn = np.where(np.isfinite(data), np.rint(data.astype(np.float64) / SCALE), 0)
        if dn.min() < 0 or dn.max() > 65535:
            raise DataAccessError(f"{path}: reflectance outside the uint16 DN range")
        return dn.astype(np.uint16)
    if np.issubdtype(data.dtype, np.integer) and data.min() >= 0 and data.max() <= 65535:
        return data.astype(np.uint16)
    raise DataAccessError(f"{path}: unexpected data type {data.dtype}")


def _to_uint8(data: np.ndarray, path: Path) -> np.ndarray:
    if data.dtype == np.uint8:
        return data
    finite = np.where(np.isfinite(data), data, 0) if np.issubdtype(data.dtype, np.floating) else data
    if finite.min() < 0 or finite.max() > 255:
        raise DataAccessError(f"{path}: mask values outside 0..255")
    return np.rint(finite).astype(np.uint8)


def _href(path: Path, out_dir: Path, href_base: str | None) -> str:
    rel = path.relative_to(out_dir).as_posix()
    if href_base is None:
        return path.resolve().as_uri()
    return href_base + rel


def _date(value: np.datetime64) -> dt.datetime:
    day = dt.date.fromisoformat(str(value)[:10])
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _footprint(transform: Affine, height: int, width: int) -> tuple[list[float], dict[str, Any]]:
    west, south, east, north = array_bounds(height, width, transform)
    bbox = [float(west), float(south), float(east), float(north)]
    geometry = {
        "type": "Polygon",
        "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
    }
    return bbox, geometry


def _band_asset(href: str, band: str) -> pystac.Asset:
    info = S2_BANDS[band]
    asset = pystac.Asset(
        href=href,
        media_type=COG_MEDIA_TYPE,
        title=f"{band} ({info.common_name}) surface reflectance, DN x 1e-4",
        roles=["data", "reflectance"],
        extra_fields={"gsd": 10.0},
    )
    EOExtension.ext(asset).bands = [
        Band.create(
            name=band,
            common_name=_EO_COMMON[band],
            center_wavelength=info.center_wavelength,
            full_width_half_max=info.full_width_half_max,
        )
    ]
    RasterExtension.ext(asset).bands = [
        RasterBand.create(
            nodata=0, data_type=DataType.UINT16, scale=SCALE, offset=0.0, spatial_resolution=10.0
        )
    ]
    return asset


def _mask_asset(href: str, name: str) -> pystac.Asset:
    spec = MASK_ASSETS[name]
    asset = pystac.Asset(
        href=href, media_type=COG_MEDIA_TYPE, title=spec["title"], roles=list(spec["roles"])
    )
    kwargs: dict[str, Any] = {"data_type": DataType.UINT8, "spatial_resolution": 10.0}
    if spec["nodata"] is not None:
        kwargs["nodata"] = spec["nodata"]
    RasterExtension.ext(asset).bands = [RasterBand.create(**kwargs)]
    EOExtension.ext(asset).bands = [Band.create(name=name)]
    return asset


def _lr_items(
    root: Path, aoi: str, work: Path, out_dir: Path, href_base: str | None
) -> tuple[list[pystac.Item], tuple[float, ...], np.datetime64]:
    """Write the COGs of an AOI's revisits under ``work``; return their items, bounds, HR date."""
    files = find_aoi_files(root, aoi)
    items = []
    bounds: tuple[float, ...] | None = None
    hr_date = None
    for rev in files.revisits:
        meta = read_metadata(rev.metadata)
        hr_date = meta["hr_date"]
        data, profile = _read(rev.data)
        if data.shape[0] != len(BANDS):
            raise DataAccessError(f"{rev.data}: expected {len(BANDS)} bands, found {data.shape[0]}")
        dn = _to_dn(data, rev.data)
        crs = profile["crs"].to_string() if profile.get("crs") else "EPSG:4326"
        if crs != "EPSG:4326":
            raise DataAccessError(f"{rev.data}: expected EPSG:4326, found {crs}")
        transform: Affine = profile["transform"]
        height, width = dn.shape[1:]
        item_id = validate_name(f"{aoi}-{rev.n}", what="item id")
        folder = work / LR_COLLECTION / item_id
        final = out_dir / LR_COLLECTION / item_id
        bbox, geometry = _footprint(transform, height, width)
        bounds = tuple(bbox)
        props: dict[str, Any] = {
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "gsd": 10.0,
            "worldstrat:aoi": aoi,
            "worldstrat:revisit": rev.n,
            "worldstrat:hr_date": str(meta["hr_date"])[:10],
            "worldstrat:delta_days": meta["delta_days"],
        }
        if math.isfinite(meta["cloud_cover"]):
            props["eo:cloud_cover"] = float(meta["cloud_cover"])
        for key in ("LCCS", "SMOD", "IPCC"):
            if key in meta:
                props[f"worldstrat:{key.lower()}"] = meta[key]
        item = pystac.Item(
            id=item_id,
            geometry=geometry,
            bbox=bbox,
            datetime=_date(meta["date"]),
            properties=props,
            collection=LR_COLLECTION,
        )
        proj = ProjectionExtension.ext(item, add_if_missing=True)
        proj.code = "EPSG:4326"
        proj.shape = [int(height), int(width)]
        proj.transform = [float(v) for v in list(transform)[:6]]
        proj.bbox = bbox
        EOExtension.add_to(item)
        RasterExtension.add_to(item)
        for i, band in enumerate(BANDS):
            name = f"{band}.tif"
            _write_cog(folder / name, dn[i], transform=transform, crs=crs, nodata=0, scales=[SCALE])
            item.add_asset(band, _band_asset(_href(final / name, out_dir, href_base), band))
        for mask in MASKS:
            src = rev.masks.get(mask)
            if src is None:
                continue
            mdata, mprofile = _read(src)
            if mdata.shape[1:] != (height, width):
                raise DataAccessError(f"{src}: size {mdata.shape[1:]} differs from the data's {(height, width)}")
            name = f"{mask}.tif"
            _write_cog(folder / name, _to_uint8(mdata[0], src), transform=transform, crs=crs,
                       nodata=MASK_ASSETS[mask]["nodata"])
            item.add_asset(mask, _mask_asset(_href(final / name, out_dir, href_base), mask))
        items.append(item)
    assert bounds is not None and hr_date is not None
    return items, bounds, hr_date


def _hr_item(
    root: Path,
    aoi: str,
    bounds: tuple[float, ...],
    hr_date: np.datetime64,
    work: Path,
    out_dir: Path,
    href_base: str | None,
) -> pystac.Item:
    """Write an AOI's SPOT pan and rgbn COGs under ``work``; return their item."""
    files = find_aoi_files(root, aoi)
    hr = read_hr(files, bounds)
    item_id = validate_name(aoi, what="item id")
    folder = work / HR_COLLECTION / item_id
    final = out_dir / HR_COLLECTION / item_id
    bbox = [float(v) for v in bounds]
    _, geometry = _footprint(hr.pan.rio.transform(), *hr.pan.shape)
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=_date(hr_date),
        properties={
            "constellation": "spot",
            "instruments": ["naomi"],
            "worldstrat:aoi": aoi,
            "description": "SPOT 6/7 12-bit DN, georeferenced on the footprint of the AOI's LR revisits",
        },
        collection=HR_COLLECTION,
    )
    ProjectionExtension.ext(item, add_if_missing=True).code = "EPSG:4326"
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    for name, da, gsd, bands in (
        ("pan", hr.pan, 1.5, [("pan", "pan")]),
        ("rgbn", hr.rgbn, 6.0, [("red", "red"), ("green", "green"), ("blue", "blue"), ("nir", "nir")]),
    ):
        transform = da.rio.transform()
        data = np.asarray(da.values)
        _write_cog(folder / f"{name}.tif", data, transform=transform, crs="EPSG:4326", nodata=None)
        asset = pystac.Asset(
            href=_href(final / f"{name}.tif", out_dir, href_base),
            media_type=COG_MEDIA_TYPE,
            title=f"SPOT 6/7 {'panchromatic' if name == 'pan' else 'R, G, B, NIR'} (12-bit DN)",
            roles=["data"],
            extra_fields={"gsd": gsd},
        )
        h, w = data.shape[-2:]
        aproj = ProjectionExtension.ext(asset)
        aproj.shape = [int(h), int(w)]
        aproj.transform = [float(v) for v in list(transform)[:6]]
        EOExtension.ext(asset).bands = [Band.create(name=n, common_name=c) for n, c in bands]
        RasterExtension.ext(asset).bands = [
            RasterBand.create(data_type=DataType.UINT16, spatial_resolution=gsd) for _ in bands
        ]
        item.add_asset(name, asset)
    return item


def _collection(cid: str, title: str, description: str, items: list[pystac.Item]) -> pystac.Collection:
    bboxes = sorted({tuple(i.bbox) for i in items if i.bbox})
    spatial = [
        min(b[0] for b in bboxes), min(b[1] for b in bboxes),
        max(b[2] for b in bboxes), max(b[3] for b in bboxes),
    ]  # fmt: skip
    times = sorted(i.datetime for i in items if i.datetime is not None)
    col = pystac.Collection(
        id=cid,
        title=title,
        description=description,
        extent=pystac.Extent(
            pystac.SpatialExtent([spatial, *[list(b) for b in bboxes]]),
            pystac.TemporalExtent([[times[0], times[-1]]]),
        ),
        license="other",
        extra_fields={"sci:citation": CITATION},
        stac_extensions=[SCIENTIFIC_EXT],
    )
    col.add_link(pystac.Link("license", WORLDSTRAT_URL, title="WorldStrat dataset (Zenodo 6810792)"))
    for item in sorted(items, key=lambda i: i.id):
        col.add_item(item)
    return col


def _is_our_export(path: Path) -> bool:
    try:
        return json.loads((path / "catalog.json").read_text()).get("id") == CATALOG_ID
    except (OSError, ValueError, AttributeError):
        return False


def export_worldstrat_stac(
    root: str | Path,
    out_dir: str | Path,
    *,
    aois: Sequence[str] | None = None,
    href_base: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the WorldStrat dataset (or some AOIs of it) as a static STAC catalog of COGs.

    Args:
        root: WorldStrat dataset root (holding ``lr_dataset/`` and ``hr_dataset/``).
        out_dir: Folder to create. It must not exist, or be empty, or (with ``overwrite``)
            hold a previous export of this function.
        aois: AOI names to export; all AOIs when ``None``.
        href_base: Base URL of the asset hrefs (for example ``http://127.0.0.1:8000/``) when the
            folder will be served; default: absolute ``file://`` URIs of the written COGs.
        overwrite: Replace a previous export in ``out_dir``.

    Returns:
        Path of the root ``catalog.json``.

    Raises:
        InvalidInputError: bad dataset root, AOI names, ``href_base`` or a non-empty
            ``out_dir`` that is not a previous export (or ``overwrite`` not set).
        DataAccessError: unreadable or inconsistent source files.
    """
    root = Path(root).expanduser()
    available = list_aois(root)
    if aois is None:
        selected = available
    else:
        if isinstance(aois, str):
            raise InvalidInputError("aois must be a list of AOI names, not a string")
        selected = []
        for a in aois:
            validate_name(a, what="AOI name")
            if a not in available:
                raise InvalidInputError(f"unknown AOI {a!r} in {root}")
            if a not in selected:
                selected.append(a)
        if not selected:
            raise InvalidInputError("aois is empty: name at least one AOI, or pass None for all")
    base = _check_href_base(href_base)
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InvalidInputError(f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()):
            if not overwrite:
                raise InvalidInputError(
                    f"{out_dir} is not empty; pass overwrite=True to replace a previous export"
                )
            if not _is_our_export(out_dir):
                raise InvalidInputError(
                    f"{out_dir} is not empty and holds no WorldStrat STAC export; refusing to "
                    "replace it"
                )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        lr_items: list[pystac.Item] = []
        hr_items: list[pystac.Item] = []
        for aoi in selected:
            items, bounds, hr_date = _lr_items(root, aoi, work, out_dir, base)
            lr_items += items
            hr_items.append(_hr_item(root, aoi, bounds, hr_date, work, out_dir, base))
            log.info("exported %s: %d revisits", aoi, len(items))
        catalog = pystac.Catalog(
            id=CATALOG_ID,
            description=f"WorldStrat ({len(selected)} AOIs) as a static STAC catalog of COGs. {CITATION}",
            title="WorldStrat",
        )
        catalog.add_child(
            _collection(LR_COLLECTION, "WorldStrat Sentinel-2 L2A revisits",
                        "Sentinel-2 L2A revisits of each WorldStrat AOI: 12 bands as uint16 DN "
                        "(reflectance = DN x 1e-4, nodata 0) and CLM/CLP/SCL/dataMask masks.", lr_items)
        )
        catalog.add_child(
            _collection(HR_COLLECTION, "WorldStrat SPOT 6/7 high resolution",
                        "SPOT 6/7 panchromatic (~1.5 m) and R, G, B, NIR (~6 m) 12-bit DN, "
                        "georeferenced on the LR footprint of each AOI.", hr_items)
        )
        catalog.normalize_hrefs(str(out_dir))
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, dest_href=str(work))
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, old)
            os.replace(work, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, out_dir)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return out_dir / "catalog.json"
