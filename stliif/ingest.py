"""Import data the user brings (a local SAFE product, a static STAC catalog, a folder of band
files) into ``raw/<aoi>``.

:func:`read_source` turns a source into harmonised STAC items (SAFE products through
:mod:`stliif.sources.safe`, static catalogs / collections / items through
:mod:`stliif.sources.static`, band files through :mod:`stliif.sources.bandfiles`); :func:`run_import` filters them by date, takes the area (the
given polygon or bbox, else the items' footprint), and loads and commits them exactly as
:func:`stliif.acquire.run_acquire` does (same schema, same per-date provenance: ``source_kind``,
``source_href``, ``processing_level``, ``processing_baseline``, ``cloud_mask``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import pystac

from stliif.acquire import AcquireResult, commit_items, target_geobox
from stliif.config import AcquireSpec, ImportSpec
from stliif.errors import InvalidInputError
from stliif.sources.safe import read_safe
from stliif.sources.stac import harmonise
from stliif.store import ArtifactStore
from stliif.types import AOI, BBox, TimeRange

__all__ = ["check_import", "import_area", "read_source", "run_import", "source_kind"]

log = logging.getLogger(__name__)


def source_kind(source: str) -> str:
    """``"safe"`` (a SAFE folder or zip), ``"stac"`` (a static catalog / collection / item) or
    ``"files"`` (a folder of dated band files).

    Raises:
        InvalidInputError: neither.
    """
    if source.startswith(("http://", "https://")) or source.endswith(".json"):
        return "stac"
    path = Path(source)
    if not path.exists() and not source.startswith("/vsi"):
        raise InvalidInputError(f"{source} does not exist")
    if path.is_dir() and (path / "catalog.json").is_file():
        return "stac"
    from stliif.sources.bandfiles import is_band_folder
    from stliif.sources.safe import is_safe

    if not is_safe(path) and is_band_folder(path):
        return "files"
    return "safe"


def read_source(
    source: str,
    bands: Sequence[str],
    time_range: TimeRange | None = None,
    *,
    offset: float | None = None,
    level: str = "L2A",
) -> list[pystac.Item]:
    """The source's items that have every band, within ``time_range``, harmonised.

    ``offset`` and ``level`` apply to a folder of band files only (SAFE products and STAC items
    say their own).

    Raises:
        InvalidInputError: not a product or catalog, a missing band, nothing in the date range.
        DataAccessError: a listed file is missing or unreadable.
    """
    kind = source_kind(source)
    if kind == "safe":
        items = read_safe(source, bands=bands)
    elif kind == "files":
        from stliif.sources.bandfiles import read_band_folder

        items = read_band_folder(source, bands=bands, offset=offset, level=level)
    else:
        from stliif.sources.static import read_static

        items = read_static(source, bands=bands)
    if time_range is not None:
        inside = [i for i in items if _when(i) is not None and time_range.start <= _when(i) <= time_range.end]  # type: ignore[operator]
        if not inside:
            have = sorted(str(w)[:10] for i in items if (w := _when(i)) is not None)
            raise InvalidInputError(
                f"{source}: nothing between {str(time_range.start)[:10]} and {str(time_range.end)[:10]} "
                f"(its dates: {', '.join(dict.fromkeys(have)) or 'none'})")
        items = inside
    return harmonise(items)


def _when(item: pystac.Item) -> dt.datetime | None:
    when = item.datetime
    if when is None and item.properties.get("start_datetime"):
        when = dt.datetime.fromisoformat(str(item.properties["start_datetime"]).replace("Z", "+00:00"))
    return when.astimezone(dt.UTC) if when is not None else None


def _time_range(spec: ImportSpec) -> TimeRange | None:
    if spec.start is None and spec.end is None:
        return None
    return TimeRange.from_like((spec.start or "1900-01-01", spec.end or ".."))


def import_area(spec: ImportSpec, items: Sequence[pystac.Item]) -> AOI:
    """The import's area: its polygon or bbox, else the union of the items' footprints."""
    if spec.bbox is not None or spec.polygon is not None:
        from stliif.acquire import area_of

        probe = AcquireSpec(aoi=spec.aoi, bbox=spec.bbox, polygon=spec.polygon, start="2020-01-01", end="2020-01-02")
        return area_of(probe)
    from shapely.geometry import shape
    from shapely.ops import unary_union

    geoms = [shape(i.geometry) for i in items if i.geometry]
    if not geoms:
        boxes = [BBox.from_like(i.bbox).to_geojson() for i in items if i.bbox]
        geoms = [shape(b) for b in boxes]
    if not geoms:
        raise InvalidInputError("the source's items have no footprint: give --polygon or --bbox")
    return AOI.from_like(unary_union(geoms))


def check_import(spec: ImportSpec) -> tuple[list[pystac.Item], str]:
    """Read and check the source before anything is written.

    Returns:
        The harmonised items that overlap the area, and why there are none (``""`` when some).
    """
    items = read_source(spec.source, spec.bands, _time_range(spec), offset=spec.offset, level=spec.level)
    area = import_area(spec, items)
    target_geobox(area, spec.crs, spec.resolution)
    overlapping = [i for i in items if _overlaps(i, area)]
    why = "" if overlapping else f"none of the {len(items)} item(s) of {spec.source} overlaps the area"
    return overlapping, why


def run_import(store: ArtifactStore, spec: ImportSpec, *, run_id: str | None = None) -> AcquireResult:
    """Read ``spec.source``, load its items onto the area's grid and commit ``raw/<spec.aoi>``
    (a rerun adds only items the stored cube lacks).

    Returns:
        The same result as :func:`stliif.acquire.run_acquire`: ``found`` counts the source's
        items, ``status`` is ``"no-data"`` (with the reason) when nothing usable was found.

    Raises:
        InvalidInputError: bad source, band, dates, area or grid (nothing is committed).
        DataAccessError: a file could not be read.
    """
    items = read_source(spec.source, spec.bands, _time_range(spec), offset=spec.offset, level=spec.level)
    area = import_area(spec, items)
    geobox = target_geobox(area, spec.crs, spec.resolution)
    overlapping = [i for i in items if _overlaps(i, area)]
    kind = source_kind(spec.source)
    result = AcquireResult(spec.aoi, "no-data", found={kind: len(items)})
    nothing = f"none of the {len(items)} item(s) of {spec.source} overlaps the area"
    return commit_items(
        store, spec.aoi, overlapping, area, geobox, bands=spec.bands, providers={},
        resampling=spec.resampling, min_clear=spec.min_clear, max_mb=spec.max_mb, stage="import",
        params=spec.model_dump(mode="json"), attrs={"source": kind, "providers": [kind]},
        result=result, nothing=nothing, run_id=run_id,
    )


def _overlaps(item: pystac.Item, area: AOI) -> bool:
    from shapely.geometry import shape

    if item.geometry:
        return bool(shape(item.geometry).intersects(area.geometry))
    return item.bbox is None or bool(shape(BBox.from_like(item.bbox).to_geojson()).intersects(area.geometry))
