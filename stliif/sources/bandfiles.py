"""A folder of loose band files (GeoTIFF / COG / JPEG 2000) with their dates, as STAC items.

Each file's name (or its parent folder's) carries a date (``20230412``, ``20230412T103021`` or
``2023-04-12``) and its name a band (a Sentinel-2 id ``B02`` / ``B8A`` or a common name
``red``, separated by ``_``, ``-`` or ``.``); files of one date become one item, each file an
asset described by rio-stac (CRS, shape, transform: files of one date may be on different
grids). Loose files say nothing about their processing baseline, so their scale and offset are
the caller's (``reflectance = DN x scale + offset``; a scale or offset the file itself declares
in its GDAL metadata wins over the defaults), and so is their processing level.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import pystac

from stliif.errors import DataAccessError, InvalidInputError
from stliif.sources.safe import CLOUD_MASK, SOURCE
from stliif.types import S2_BANDS, Bands

__all__ = ["PROVIDER_NAME", "is_band_folder", "read_band_folder"]

PROVIDER_NAME = "files"
_SUFFIXES = (".tif", ".tiff", ".jp2")
_DATE_RE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")
_COMMON = {b.common_name: b.id for b in S2_BANDS.values()}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES
                  and "__MACOSX" not in p.parts and not p.name.startswith("._"))


def is_band_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding raster files (and no SAFE metadata)."""
    p = Path(path)
    return p.is_dir() and not list(p.glob("MTD_MSIL*.xml")) and bool(_files(p))


def _date(path: Path, root: Path) -> dt.datetime | None:
    for text in (path.stem, *[q.name for q in path.relative_to(root).parents if q.name]):
        m = _DATE_RE.search(text)
        if m is not None:
            y, mo, d, hh, mm, ss = m.groups()
            try:
                return dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0), tzinfo=dt.UTC)
            except ValueError:
                continue
    return None


def _band(path: Path) -> str | None:
    tokens = re.split(r"[_\-.\s]+", path.stem)
    for tok in tokens:
        t = tok.upper()
        if t in S2_BANDS:
            return t
        if re.fullmatch(r"B[1-9]", t):
            return f"B0{t[1]}"
        if tok.lower() in _COMMON:
            return _COMMON[tok.lower()]
    return None


def read_band_folder(
    folder: str | Path,
    *,
    bands: Sequence[str],
    scale: float = 1e-4,
    offset: float | None = None,
    level: str = "L2A",
) -> list[pystac.Item]:
    """One item per date of a folder of band files.

    Args:
        folder: The folder (searched recursively).
        bands: Bands every date must have.
        scale: Reflectance per DN when the file declares none (default 1e-4).
        offset: Reflectance offset when the file declares none: required (``-0.1`` for DN of
            processing baseline >= 04.00, ``0`` for older or already harmonised ones).
        level: ``"L1C"`` or ``"L2A"``.

    Raises:
        InvalidInputError: no dated band files, a date lacking a band, two files for one band
            and date, or no offset known.
    """
    import rasterio
    from rio_stac import create_stac_item

    root = Path(folder).resolve()  # absolute hrefs: odc-stac reads them from anywhere
    if level not in ("L1C", "L2A"):
        raise InvalidInputError(f"processing level must be L1C or L2A, got {level!r}")
    wanted = [b for b in Bands.from_like(list(bands)).names if b != "SCL"]
    by_date: dict[dt.datetime, dict[str, Path]] = {}
    undated, unnamed = [], []
    for f in _files(root):
        band, when = _band(f), _date(f, root)
        if band is None:
            unnamed.append(f.name)
            continue
        if when is None:
            undated.append(f.name)
            continue
        day = by_date.setdefault(when, {})
        if band in day:
            raise InvalidInputError(f"{root}: two files for {band} on {when:%Y-%m-%d}: {day[band].name}, {f.name}")
        day[band] = f
    if not by_date:
        why = f"; undated: {', '.join(undated[:3])}" if undated else ""
        raise InvalidInputError(f"{root} holds no band file named with a date and a band (e.g. 2023-04-12_B04.tif){why}")
    items = []
    for when, files in sorted(by_date.items()):
        missing = [b for b in wanted if b not in files]
        if missing:
            raise InvalidInputError(f"{root}: {when:%Y-%m-%d} has no file for band {', '.join(missing)}")
        item = pystac.Item(f"{root.name}_{when:%Y%m%dT%H%M%S}", None, None, when, {})
        offsets = set()
        for band in [*wanted, *(["SCL"] if "SCL" in files else [])]:
            try:
                one = create_stac_item(str(files[band]), input_datetime=when, asset_name=band, with_proj=True,
                                       with_raster=True, asset_roles=["data"], raster_max_size=64)
            except rasterio.errors.RasterioIOError as err:
                raise DataAccessError(f"cannot read {files[band]}: {err}") from err
            asset = one.assets[band]
            for key in ("proj:epsg", "proj:code", "proj:shape", "proj:transform"):
                if key in one.properties:
                    asset.extra_fields[key] = one.properties[key]
            if item.geometry is None:
                item.geometry, item.bbox = one.geometry, one.bbox
            if band != "SCL":
                with rasterio.open(files[band]) as src:
                    s, o = src.scales[0], src.offsets[0]
                declared = (s, o) != (1.0, 0.0)
                if not declared and offset is None:
                    raise InvalidInputError(
                        f"{files[band].name} declares no scale or offset: give the offset (-0.1 for DN of "
                        "processing baseline >= 04.00, 0 for older or harmonised data)")
                s, o = (s, o) if declared else (scale, offset)
                offsets.add((s, o))
                asset.extra_fields["raster:bands"] = [{"nodata": 0, "data_type": one.assets[band].extra_fields.get(
                    "raster:bands", [{}])[0].get("data_type", "uint16"), "scale": s, "offset": o}]
                asset.extra_fields["eo:bands"] = [{"name": band, "common_name": S2_BANDS[band].common_name}]
            item.add_asset(band, asset)
        if len(offsets) > 1:
            raise InvalidInputError(f"{root}: the bands of {when:%Y-%m-%d} declare different scales/offsets {sorted(offsets)}")
        item.properties.update({
            "processing:level": level,
            "stliif:provider": PROVIDER_NAME,
            CLOUD_MASK: "SCL" if "SCL" in files else "none",
            SOURCE: {"kind": "files", "href": str(root.resolve()),
                     "files": {b: str(p.relative_to(root)) for b, p in files.items()}},
        })
        items.append(item)
    return items
