"""Local Sentinel-2 SAFE products (L1C and L2A, folder or ``.zip``) described as STAC items.

:func:`read_safe` reads the product's own metadata (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``,
``GRANULE/<id>/MTD_TL.xml``) with ElementTree and each band file's header with rasterio, and
returns one ``pystac.Item`` per granule, ready for :func:`stliif.sources.load.load_cube` (odc-stac
reads the JPEG 2000 files, through GDAL's ``/vsizip/`` for zipped products):

- one asset per band (key = band id, ``B02`` ...), at the finest resolution the product has,
  with ``proj`` (CRS, shape, transform of the file itself: clipped granules keep the tile's CRS
  and grids with a smaller extent) and ``raster:bands`` scale ``1 / QUANTIFICATION_VALUE`` and
  offset ``RADIO_ADD_OFFSET`` (L1C) or ``BOA_ADD_OFFSET`` (L2A) ``/ QUANTIFICATION_VALUE`` from
  the product's own metadata (none before baseline 04.00), so reflectance = DN x scale + offset;
- the cloud mask: ``SCL`` (L2A), ``MSK_CLASSI`` (L1C from baseline 04.00: 3 bands, opaque
  clouds, cirrus, snow) or ``MSK_CLOUDS`` (older L1C: GML polygons); none is recorded as
  ``stliif:cloud_mask = "none"``, never dropped silently;
- properties ``s2:processing_baseline``, ``s2:product_uri``, ``s2:product_type``,
  ``s2:mgrs_tile``, ``processing:level`` (``L1C`` / ``L2A``), ``stliif:provider = "safe"``,
  ``stliif:source`` (kind, product path, file read per band).

A band whose listed file is missing is resolved by pattern (clipping tools write
``<name>_<suffix>.jp2`` beside or instead of the original); an ambiguous match is refused.
stactools-sentinel2 was not used: it is not installed here and reads geometry from the tile
metadata, which is the full tile's, not a clipped granule's.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pystac

from stliif.errors import DataAccessError, InvalidInputError
from stliif.types import S2_BANDS, Bands

__all__ = [
    "CLOUD_MASK",
    "SOURCE",
    "SafeMetadata",
    "is_safe",
    "read_metadata",
    "read_safe",
]

SOURCE = "stliif:source"
"""Item property: where an item's pixels come from (``kind``, ``href``, ``files``)."""
CLOUD_MASK = "stliif:cloud_mask"
"""Item property: the cloud-mask asset key (``SCL``, ``CLM``, ``MSK_CLASSI``, ``MSK_CLOUDS``) or ``"none"``."""
PROVIDER_NAME = "safe"
_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
"""ESA's ``band_id`` order in the product metadata (0 = B01 ... 8 = B8A ... 12 = B12)."""
_NAME_RE = re.compile(
    r"(?P<mission>S2[A-D])_MSIL(?P<level>1C|2A)_(?P<start>\d{8}T\d{6})_N(?P<pb>\d{4})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})"
)


class _Files:
    """The files of a product, whether a folder or a zip (``prefix`` = the ``.SAFE`` folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise InvalidInputError(f"{path} is neither a SAFE folder nor a .zip of one")
            self.zip = zipfile.ZipFile(path)
            names = [n for n in self.zip.namelist() if not n.endswith("/")]
        elif path.is_dir():
            names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        else:
            raise InvalidInputError(f"{path} does not exist")
        mtd = sorted((n for n in names if re.fullmatch(r"(?:[^/]+/)?MTD_MSIL(1C|2A)\.xml", n)), key=len)
        self.prefix = str(PurePosixPath(mtd[0]).parent) if mtd else ""
        self.prefix = "" if self.prefix == "." else self.prefix
        self.mtd = mtd[0] if mtd else None
        strip = len(self.prefix) + 1 if self.prefix else 0
        self.names = {n[strip:] for n in names if n.startswith(self.prefix)}

    def read(self, rel: str) -> bytes:
        full = f"{self.prefix}/{rel}" if self.prefix else rel
        try:
            if self.zip is not None:
                return self.zip.read(full)
            return (self.path / full).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise DataAccessError(f"{self.path}: cannot read {rel}: {err}") from err

    def href(self, rel: str) -> str:
        full = f"{self.prefix}/{rel}" if self.prefix else rel
        if self.zip is not None:
            return f"/vsizip/{self.path.resolve()}/{full}"
        return str((self.path / full).resolve())


def _text(root: ET.Element, tag: str) -> str | None:
    el = next(root.iter(tag), None)
    return el.text.strip() if el is not None and el.text else None


def _parse(data: bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as err:
        raise DataAccessError(f"{what} is not valid XML: {err}") from err


@dataclass(frozen=True)
class SafeMetadata:
    """Facts read from a SAFE product's metadata."""

    product_uri: str
    """The product name (``S2A_MSIL1C_..._N0509_...``), without ``.SAFE``."""
    level: str
    """``L1C`` (top-of-atmosphere) or ``L2A`` (surface reflectance)."""
    baseline: str
    """Processing baseline, ``MM.mm``."""
    start: dt.datetime
    """``PRODUCT_START_TIME`` (UTC)."""
    quantification: float
    """``QUANTIFICATION_VALUE`` (L1C) or ``BOA_QUANTIFICATION_VALUE`` (L2A), usually 10000."""
    offsets_dn: dict[str, int]
    """``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` per band id (empty before baseline 04.00)."""
    mission: str
    """``S2A``, ``S2B`` or ``S2C``."""
    tile: str
    """MGRS tile (``31TDF``)."""
    image_files: list[str] = field(default_factory=list)
    """The ``IMAGE_FILE`` entries (paths in the product, without extension)."""


def read_metadata(files: _Files) -> SafeMetadata:
    """Read the product metadata file (``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``)."""
    assert files.mtd is not None
    root = _parse(files.read(PurePosixPath(files.mtd).name), files.mtd)
    uri = (_text(root, "PRODUCT_URI") or "").removesuffix(".SAFE")
    m = _NAME_RE.search(uri)
    if m is None:
        raise InvalidInputError(f"{files.path}: PRODUCT_URI {uri!r} is not a Sentinel-2 MSI product name")
    level = {"Level-1C": "L1C", "Level-2A": "L2A", "Level-2Ap": "L2A"}.get(_text(root, "PROCESSING_LEVEL") or "")
    level = level or f"L{m.group('level')}"
    baseline = _text(root, "PROCESSING_BASELINE") or f"{m.group('pb')[:2]}.{m.group('pb')[2:]}"
    start_txt = _text(root, "PRODUCT_START_TIME")
    try:
        start = dt.datetime.fromisoformat(start_txt.replace("Z", "+00:00")) if start_txt else None
    except ValueError:
        start = None
    if start is None:
        start = dt.datetime.strptime(m.group("start"), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    quant_tag = "QUANTIFICATION_VALUE" if level == "L1C" else "BOA_QUANTIFICATION_VALUE"
    q = _text(root, quant_tag)
    try:
        quant = float(q) if q is not None else 10000.0
    except ValueError as err:
        raise DataAccessError(f"{files.path}: {quant_tag} {q!r} is not a number") from err
    offset_tag = "RADIO_ADD_OFFSET" if level == "L1C" else "BOA_ADD_OFFSET"
    offsets = {}
    for el in root.iter(offset_tag):
        i = int(el.get("band_id", "-1"))
        if 0 <= i < len(_BAND_IDS) and el.text:
            offsets[_BAND_IDS[i]] = int(float(el.text))
    return SafeMetadata(
        product_uri=uri, level=level, baseline=baseline, start=start.astimezone(dt.UTC), quantification=quant,
        offsets_dn=offsets, mission=m.group("mission"), tile=m.group("tile"),
        image_files=[el.text.strip() for el in root.iter("IMAGE_FILE") if el.text],
    )


def is_safe(path: str | Path) -> bool:
    """Whether ``path`` is a Sentinel-2 SAFE product (folder or zip) with product metadata."""
    try:
        return _Files(Path(path)).mtd is not None
    except (InvalidInputError, OSError, zipfile.BadZipFile):
        return False


def _band_of(rel: str) -> tuple[str, int | None] | None:
    """(band id, resolution or None) of an image file path, e.g. ``..._B02_10m`` -> ("B02", 10)."""
    m = re.search(r"_(B\d[\dA]|SCL)(?:_(\d{2})m)?(?:_[^/]*)?$", PurePosixPath(rel).stem if rel.endswith(".jp2") else rel)
    if m is None:
        return None
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _resolve(files: _Files, listed: str) -> str:
    """The file on disk for a listed image (``<listed>.jp2``, else one ``<listed>_*.jp2``)."""
    if f"{listed}.jp2" in files.names:
        return f"{listed}.jp2"
    matches = sorted(n for n in files.names if fnmatch.fnmatchcase(n, f"{listed}_*.jp2"))
    if len(matches) > 1:
        raise DataAccessError(
            f"{files.path}: {PurePosixPath(listed).name} matches several files ({', '.join(PurePosixPath(n).name for n in matches)}); "
            "keep one"
        )
    if not matches:
        raise DataAccessError(f"{files.path}: listed band file {listed}.jp2 is missing")
    return matches[0]


def _raster_info(href: str) -> dict[str, Any]:
    import rasterio

    try:
        with rasterio.open(href) as src:
            return {"epsg": src.crs.to_epsg() if src.crs else None, "shape": [src.height, src.width],
                    "transform": list(src.transform)[:6], "bounds": tuple(src.bounds), "count": src.count,
                    "crs": src.crs}
    except rasterio.errors.RasterioIOError as err:
        raise DataAccessError(f"cannot read {href}: {err}") from err


def _set_proj(asset: pystac.Asset, info: dict[str, Any]) -> None:
    from pystac.extensions.projection import ProjectionExtension

    pe = ProjectionExtension.ext(asset)
    pe.epsg = info["epsg"]
    pe.shape = info["shape"]
    pe.transform = info["transform"]


def _footprint(info: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    from odc.geo.geom import box

    left, bottom, right, top = info["bounds"]
    geom = box(left, bottom, right, top, info["crs"]).to_crs("EPSG:4326")
    return geom.json, list(geom.boundingbox.bbox)


def _granules(files: _Files) -> list[str]:
    return sorted({n.split("/")[1] for n in files.names if n.startswith("GRANULE/") and n.count("/") >= 2})


def _cloud_mask(files: _Files, granule: str) -> tuple[str, str] | None:
    """(asset key, file) of an L1C granule's cloud mask, from ``MTD_TL.xml`` or the QI_DATA folder."""
    listed: dict[str, str] = {}
    tl = f"GRANULE/{granule}/MTD_TL.xml"
    if tl in files.names:
        root = _parse(files.read(tl), tl)
        for el in root.iter("MASK_FILENAME"):
            if el.text:
                listed[el.get("type", "")] = el.text.strip()
    qi = f"GRANULE/{granule}/QI_DATA/"
    for key, name, kind in (("MSK_CLASSI", "MSK_CLASSI_B00.jp2", "MSK_CLASSI"), ("MSK_CLOUDS", "MSK_CLOUDS_B00.gml", "MSK_CLOUDS")):
        for rel in (listed.get(kind), qi + name):
            if rel and rel in files.names:
                return key, rel
    return None


def read_safe(path: str | Path, *, bands: Sequence[str] | None = None) -> list[pystac.Item]:
    """Describe a SAFE product (folder or ``.zip``) as one STAC item per granule.

    Args:
        path: The ``.SAFE`` folder, a folder holding exactly one, or a ``.zip`` of one.
        bands: Bands that must be present (band ids or common names); default: none checked.

    Returns:
        Items with band assets, the cloud-mask asset (or ``stliif:cloud_mask = "none"``) and
        the product's own scale and offsets (see the module docstring).

    Raises:
        InvalidInputError: not a SAFE product, not Sentinel-2 MSI, or a requested band missing.
        DataAccessError: a listed file is missing or ambiguous, or unreadable.
    """
    p = Path(path)
    files = _Files(p)
    if files.mtd is None:
        if p.is_dir():
            inner = [c for c in p.iterdir() if c.name.endswith(".SAFE") and c.is_dir()]
            if len(inner) == 1:
                return read_safe(inner[0], bands=bands)
        if "manifest.safe" in files.names or p.name.endswith(".SAFE"):
            raise InvalidInputError(
                f"{p} is not a Sentinel-2 MSI product (no MTD_MSIL1C.xml or MTD_MSIL2A.xml): "
                "only Sentinel-2 L1C and L2A SAFE products can be imported")
        raise InvalidInputError(
            f"{p} is not a SAFE product (no manifest.safe and no MTD_MSIL1C.xml / MTD_MSIL2A.xml found)")
    meta = read_metadata(files)
    wanted = [b for b in Bands.from_like(list(bands)).names if b != "SCL"] if bands else []
    by_granule: dict[str, dict[str, list[tuple[int, str]]]] = {}
    for listed in meta.image_files:
        parts = listed.split("/")
        if len(parts) < 3 or parts[0] != "GRANULE":
            continue
        band_res = _band_of(listed)
        if band_res is None:
            continue
        band, res = band_res
        if band not in S2_BANDS and band != "B10":
            continue
        res = res or (int(S2_BANDS[band].gsd) if band in S2_BANDS else 60)
        by_granule.setdefault(parts[1], {}).setdefault(band, []).append((res, listed))
    if not by_granule:
        raise DataAccessError(f"{p}: the product metadata lists no band files")
    items = []
    for granule in sorted(by_granule):
        listed_bands = by_granule[granule]
        missing = [b for b in wanted if b not in listed_bands]
        if missing:
            raise InvalidInputError(
                f"{p}: the product has no band {', '.join(missing)} (it has {', '.join(sorted(b for b in listed_bands if b != 'SCL'))})")
        keep = wanted + (["SCL"] if "SCL" in listed_bands else []) if wanted else sorted(listed_bands)
        assets: dict[str, pystac.Asset] = {}
        read: dict[str, str] = {}
        info10: dict[str, Any] | None = None
        offsets: set[float] = set()
        for band in keep:
            res, listed = min(listed_bands[band])
            rel = _resolve(files, listed)
            href = files.href(rel)
            info = _raster_info(href)
            read[band] = rel
            if band == "SCL":
                asset = pystac.Asset(href, media_type="image/jp2", roles=["data", "cloud"], title="Scene classification")
                asset.extra_fields["raster:bands"] = [{"nodata": 0, "data_type": "uint8"}]
            else:
                scale = 1.0 / meta.quantification
                off = meta.offsets_dn.get(band, 0) / meta.quantification
                offsets.add(off)
                asset = pystac.Asset(href, media_type="image/jp2", roles=["data", "reflectance"], title=band)
                asset.extra_fields["eo:bands"] = [{"name": band, "common_name": S2_BANDS[band].common_name}] if band in S2_BANDS else [{"name": band}]
                asset.extra_fields["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "scale": scale, "offset": off}]
                asset.extra_fields["gsd"] = float(res)
                if info10 is None or res < info10["res"]:
                    info10 = {**info, "res": res}
            _set_proj(asset, info)
            assets[band] = asset
        if len(offsets) > 1:
            raise DataAccessError(f"{p}: the bands' offsets differ ({sorted(offsets)}); not supported")
        mask_key = "SCL" if "SCL" in assets else "none"
        if mask_key == "none":
            found = _cloud_mask(files, granule)
            if found is not None:
                key, rel = found
                href = files.href(rel)
                if key == "MSK_CLASSI":
                    asset = pystac.Asset(href, media_type="image/jp2", roles=["cloud"], title="MSK_CLASSI_B00")
                    asset.extra_fields["raster:bands"] = [{"data_type": "uint8"}] * 3
                    _set_proj(asset, _raster_info(href))
                    assets[key], mask_key = asset, key
                else:  # GML polygons (an empty mask means no cloud)
                    assets[key] = pystac.Asset(href, media_type="application/gml+xml", roles=["cloud"], title="MSK_CLOUDS_B00")
                    mask_key = key
                read[key] = rel
        if info10 is None:
            raise DataAccessError(f"{p}: no reflectance band in granule {granule}")
        geometry, bbox = _footprint(info10)
        item_id = meta.product_uri if len(by_granule) == 1 else f"{meta.product_uri}_{granule}"
        item = pystac.Item(item_id, geometry, bbox, meta.start, properties={})
        item.properties.update({
            "platform": f"sentinel-2{meta.mission[-1].lower()}",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "s2:product_uri": f"{meta.product_uri}.SAFE",
            "s2:product_type": f"S2MSI{meta.level[1:]}",
            "s2:processing_baseline": meta.baseline,
            "s2:mgrs_tile": meta.tile,
            "s2:granule_id": granule,
            "processing:level": meta.level,
            "stliif:provider": PROVIDER_NAME,
            CLOUD_MASK: mask_key,
            SOURCE: {"kind": "safe", "href": str(p.resolve()), "files": read},
        })
        for key, asset in assets.items():
            item.add_asset(key, asset)
        item.stac_extensions += [
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        ]
        items.append(item)
    return items
