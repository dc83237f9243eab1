"""Validated query types: ``BBox``, ``TimeRange``, ``Bands`` and ``AOI``, and their loose inputs.

Loose inputs (``BBoxLike``, ``TimeRangeLike``, ``BandsLike``, ``AOILike``) are normalised at the
edge, before any I/O: every constructor either returns an object that satisfies its documented
invariants or raises :class:`~stliif.errors.InvalidInputError` (also a ``ValueError``) whose
message names the offending field. Nothing that fails these checks reaches pystac-client,
odc-stac or the filesystem (RELIABILITY rows 1-3, 5, 6, 24).

All coordinates are longitude/latitude in EPSG:4326, ordered ``(minx, miny, maxx, maxy)`` =
``(west, south, east, north)``. All times are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import shapely
import shapely.geometry
import shapely.validation
from shapely.geometry.base import BaseGeometry

from stliif.errors import InvalidInputError

__all__ = [
    "AOI",
    "MIN_EXTENT_DEG",
    "S2_BANDS",
    "AOILike",
    "BBox",
    "BBoxLike",
    "BandInfo",
    "Bands",
    "BandsLike",
    "DateLike",
    "Dates",
    "FutureEndWarning",
    "TimeRange",
    "TimeRangeLike",
    "canonical_band",
]

DateLike: TypeAlias = str | dt.date | np.datetime64
"""A date: ISO string, ``datetime.date``/``datetime`` or ``numpy.datetime64`` (time of day dropped)."""
Dates: TypeAlias = Sequence[DateLike] | np.ndarray
"""Acquisition dates: a sequence of date-likes or a ``datetime64`` array."""

BBoxLike: TypeAlias = "BBox | Sequence[float] | BaseGeometry | Mapping[str, Any]"
"""A bbox: ``BBox``, a sequence of 4 numbers, or a shapely / GeoJSON geometry (its bounds)."""

TimeLike: TypeAlias = "str | dt.date | dt.datetime | None"
TimeRangeLike: TypeAlias = "TimeRange | str | Sequence[TimeLike]"
"""``TimeRange``, an ISO-8601 interval ``"start/end"`` or single date, or a ``(start, end)`` pair."""

BandsLike: TypeAlias = "Bands | str | Sequence[str]"
"""``Bands``, a comma-separated string or a sequence of band names (common names or S2 ids)."""

AOILike: TypeAlias = "AOI | BaseGeometry | Mapping[str, Any]"
"""``AOI``, a shapely (Multi)Polygon, or a GeoJSON Polygon/MultiPolygon geometry or Feature."""


# --------------------------------------------------------------------------------------------
# BBox
# --------------------------------------------------------------------------------------------


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A GeoJSON mapping with lists instead of tuples (JSON-equal to what is sent)."""
    return json.loads(json.dumps(mapping))


_BBOX_FIELDS = ("minx", "miny", "maxx", "maxy")
MIN_EXTENT_DEG = 1e-7
"""Smallest accepted bbox width and height, degrees (~1 cm): smaller boxes are mistakes, and
their area underflows to 0 in floating point (found by Hypothesis)."""


def _as_float(value: Any, field: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{what}.{field} must be a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise InvalidInputError(f"{what}.{field} must be finite, got {value!r}")
    return f


def _geometry_from(value: Any, what: str) -> BaseGeometry:
    """A shapely geometry from a shapely object or a GeoJSON geometry / Feature mapping."""
    if isinstance(value, BaseGeometry):
        return value
    if isinstance(value, Mapping):
        obj: Any = value
        if obj.get("type") == "Feature":
            obj = obj.get("geometry")
            if obj is None:
                raise InvalidInputError(f"{what}: the GeoJSON Feature has no geometry")
        elif obj.get("type") == "FeatureCollection":
            feats = obj.get("features") or []
            if len(feats) != 1:
                raise InvalidInputError(
                    f"{what}: a FeatureCollection must hold exactly one feature, found {len(feats)}"
                )
            return _geometry_from(feats[0], what)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # NaN coordinates: checked later
                return shapely.geometry.shape(obj)
        except Exception as err:  # shapely raises many types on malformed GeoJSON
            raise InvalidInputError(f"{what}: not a valid GeoJSON geometry ({err})") from err
    if hasattr(value, "__geo_interface__"):
        return _geometry_from(dict(value.__geo_interface__), what)
    raise InvalidInputError(
        f"{what}: expected a shapely geometry or a GeoJSON mapping, got {type(value).__name__}"
    )


@dataclass(frozen=True)
class BBox:
    """A validated lon/lat bounding box in EPSG:4326.

    Invariants: all four values finite; ``-180 <= minx < maxx <= 180``;
    ``-90 <= miny < maxy <= 90`` (so the area is positive and the box never crosses the
    antimeridian).
    """

    minx: float
    """West edge, degrees longitude."""
    miny: float
    """South edge, degrees latitude."""
    maxx: float
    """East edge, degrees longitude."""
    maxy: float
    """North edge, degrees latitude."""

    def __post_init__(self) -> None:
        values = [_as_float(getattr(self, f), f, "bbox") for f in _BBOX_FIELDS]
        for f, v in zip(_BBOX_FIELDS, values, strict=True):
            object.__setattr__(self, f, v)
        minx, miny, maxx, maxy = values
        for f, v in (("minx", minx), ("maxx", maxx)):
            if not -180.0 <= v <= 180.0:
                raise InvalidInputError(f"bbox.{f}={v} is outside [-180, 180] (longitude)")
        for f, v in (("miny", miny), ("maxy", maxy)):
            if not -90.0 <= v <= 90.0:
                raise InvalidInputError(
                    f"bbox.{f}={v} is outside [-90, 90] (latitude); the order is "
                    "(minx, miny, maxx, maxy) = (west, south, east, north) in EPSG:4326 - "
                    "were longitude and latitude swapped?"
                )
        if minx > maxx:
            raise InvalidInputError(
                f"bbox.minx={minx} > bbox.maxx={maxx}: a bbox crossing the antimeridian is not "
                "supported; split it into two boxes on either side of 180 degrees"
            )
        if minx == maxx:
            raise InvalidInputError(f"bbox has zero width (bbox.minx == bbox.maxx == {minx})")
        if miny >= maxy:
            raise InvalidInputError(
                f"bbox.miny={miny} must be < bbox.maxy={maxy} (zero or negative height)"
            )
        if maxx - minx < MIN_EXTENT_DEG or maxy - miny < MIN_EXTENT_DEG:
            raise InvalidInputError(
                f"bbox is degenerate: {maxx - minx:.3g} x {maxy - miny:.3g} degrees, below the "
                f"minimum extent of {MIN_EXTENT_DEG:g} degrees (about 1 cm)"
            )

    @classmethod
    def from_like(cls, value: BBoxLike) -> BBox:
        """Normalise a loose bbox input.

        Args:
            value: A ``BBox``; a sequence of exactly 4 numbers ``(minx, miny, maxx, maxy)``; or
                a shapely geometry / GeoJSON geometry, Feature or one-feature FeatureCollection,
                whose bounds are used.

        Returns:
            The validated ``BBox``.

        Raises:
            InvalidInputError: wrong length (3-D bboxes of 6 values are not supported),
                non-numeric, NaN/inf, out of range, zero/negative area or antimeridian crossing.
        """
        if isinstance(value, BBox):
            return value
        if isinstance(value, BaseGeometry | Mapping) or hasattr(value, "__geo_interface__"):
            geom = _geometry_from(value, "bbox")
            if geom.is_empty:
                raise InvalidInputError("bbox: the geometry is empty")
            return cls(*geom.bounds)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise InvalidInputError(
                f"bbox must be 4 numbers (minx, miny, maxx, maxy) or a geometry, got {value!r}"
            )
        if len(value) != 4:
            extra = " (3-D bboxes are not supported)" if len(value) == 6 else ""
            raise InvalidInputError(
                f"bbox must have exactly 4 values (minx, miny, maxx, maxy), got {len(value)}{extra}"
            )
        return cls(*value)

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)``."""
        return (self.minx, self.miny, self.maxx, self.maxy)

    def as_list(self) -> list[float]:
        """``[minx, miny, maxx, maxy]`` (what STAC ``bbox`` fields hold)."""
        return list(self.as_tuple())

    @property
    def width(self) -> float:
        """East-west extent in degrees."""
        return self.maxx - self.minx

    @property
    def height(self) -> float:
        """North-south extent in degrees."""
        return self.maxy - self.miny

    def to_shapely(self) -> shapely.Polygon:
        """The box as a shapely polygon."""
        return shapely.box(*self.as_tuple())

    def to_geojson(self) -> dict[str, Any]:
        """The box as a GeoJSON Polygon (counter-clockwise exterior)."""
        return _plain(shapely.geometry.mapping(self.to_shapely()))


# --------------------------------------------------------------------------------------------
# TimeRange
# --------------------------------------------------------------------------------------------


class FutureEndWarning(UserWarning):
    """A time range ended in the future and was clamped to the current time."""


_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?)?$"
)


def _parse_time(value: TimeLike, field: str, *, end: bool) -> dt.datetime | None:
    """One end of a time range as an aware UTC datetime; ``None``/``".."``/``""`` = open."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time.max if end else dt.time.min)
    elif isinstance(value, str):
        text = value.strip()
        if text in ("", ".."):
            return None
        m = _ISO.fullmatch(text)
        if m is None:
            raise InvalidInputError(
                f"time_range.{field}={value!r} is not a strict ISO-8601 date or datetime "
                "(expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]][Z|+HH:MM])"
            )
        try:
            if m.group("time") is None:
                day = dt.date.fromisoformat(m.group("date"))
                moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
            else:
                tz = m.group("tz")
                if tz in ("z", "Z"):
                    text = text[:-1] + "+00:00"
                moment = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError as err:
            raise InvalidInputError(f"time_range.{field}={value!r} is not a valid date: {err}") from err
    else:
        raise InvalidInputError(
            f"time_range.{field} must be an ISO-8601 string, date or datetime, got {type(value).__name__}"
        )
    try:
        if moment.tzinfo is None or moment.utcoffset() is None:
            return moment.replace(tzinfo=dt.UTC)  # naive means UTC (documented)
        return moment.astimezone(dt.UTC)
    except (OverflowError, ValueError) as err:
        raise InvalidInputError(f"time_range.{field}={value!r} cannot be expressed in UTC") from err


def _iso_z(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True)
class TimeRange:
    """A validated, closed UTC time interval.

    Invariants: ``start`` and ``end`` are timezone-aware UTC datetimes and ``start <= end``;
    ``end`` is not later than the moment the range was built (a future end is clamped).
    """

    start: dt.datetime
    """First instant (inclusive), UTC."""
    end: dt.datetime
    """Last instant (inclusive), UTC."""

    def __post_init__(self) -> None:
        for field in ("start", "end"):
            value = getattr(self, field)
            if not isinstance(value, dt.datetime) or value.utcoffset() != dt.timedelta(0):
                raise InvalidInputError(f"time_range.{field} must be a UTC-aware datetime, got {value!r}")
        if self.start > self.end:
            raise InvalidInputError(
                f"time_range is reversed: start {_iso_z(self.start)} is after end {_iso_z(self.end)}"
            )

    @classmethod
    def from_like(cls, value: TimeRangeLike, *, now: dt.datetime | None = None) -> TimeRange:
        """Normalise a loose time-range input.

        A date (string ``YYYY-MM-DD`` or ``datetime.date``) as ``start`` means 00:00:00 of that
        day; as ``end`` it means the last microsecond of that day, so ``"2020-01-01/2020-01-31"``
        covers the whole of January. Naive datetimes are taken as UTC; aware ones are converted
        to UTC. An open end (``None``, ``".."`` or ``""``) means "now"; an open start is
        rejected (an unbounded search is never intended).

        Args:
            value: ``TimeRange``; ``"start/end"``; a single date or datetime string (that day or
                instant); or a ``(start, end)`` pair of strings, dates or datetimes.
            now: The current time (for tests; naive means UTC); defaults to ``datetime.now(UTC)``.

        Returns:
            The validated ``TimeRange``; a future end is clamped to ``now`` with a
            :class:`FutureEndWarning`.

        Raises:
            InvalidInputError: malformed strings, missing start, reversed range, or a start in
                the future.
        """
        if isinstance(value, TimeRange):
            return value
        now = now or dt.datetime.now(dt.UTC)
        now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
        if isinstance(value, str):
            parts = value.split("/")
            if len(parts) == 1:
                start_raw: TimeLike = parts[0]
                end_raw: TimeLike = parts[0]
            elif len(parts) == 2:
                start_raw, end_raw = parts
            else:
                raise InvalidInputError(f"time_range {value!r}: expected 'start/end' with one '/'")
        elif isinstance(value, dt.date):  # a single date or datetime
            start_raw = end_raw = value
        elif isinstance(value, Sequence) and not isinstance(value, bytes):
            if len(value) != 2:
                raise InvalidInputError(
                    f"time_range must be a (start, end) pair, got {len(value)} values"
                )
            start_raw, end_raw = value[0], value[1]
        else:
            raise InvalidInputError(f"time_range: unsupported input {type(value).__name__}")
        start = _parse_time(start_raw, "start", end=False)
        end = _parse_time(end_raw, "end", end=True)
        if start is None:
            raise InvalidInputError("time_range.start is required (open-ended starts are not allowed)")
        if end is None:
            end = now
        if start > now:
            raise InvalidInputError(f"time_range.start {_iso_z(start)} is in the future")
        if end > now:
            warnings.warn(
                f"time_range.end {_iso_z(end)} is in the future; clamped to {_iso_z(now)}",
                FutureEndWarning,
                stacklevel=2,
            )
            end = now
        return cls(start, end)

    def to_stac(self) -> str:
        """The STAC API ``datetime`` parameter: ``"<start>Z/<end>Z"``."""
        return f"{_iso_z(self.start)}/{_iso_z(self.end)}"

    @property
    def duration(self) -> dt.timedelta:
        """``end - start``."""
        return self.end - self.start

    def contains(self, moment: dt.datetime) -> bool:
        """Whether an aware datetime lies in the closed interval."""
        return self.start <= moment.astimezone(dt.UTC) <= self.end


# --------------------------------------------------------------------------------------------
# Bands
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BandInfo:
    """Facts about one Sentinel-2 L2A band."""

    id: str
    """Canonical name: the S2 band id (``B01``..``B12``, ``B8A``) or ``SCL``."""
    common_name: str
    """The stliif common name (STAC ``eo`` common names; ``rededge1..3`` and ``scl`` added)."""
    gsd: float
    """Native ground sampling distance, metres."""
    center_wavelength: float | None
    """Centre wavelength, micrometres (S2A, as Earth Search v1 publishes it)."""
    full_width_half_max: float | None
    """Full width at half maximum, micrometres (as Earth Search v1 publishes it)."""


S2_BANDS: Mapping[str, BandInfo] = {
    b.id: b
    for b in (
        BandInfo("B01", "coastal", 60, 0.443, 0.027),
        BandInfo("B02", "blue", 10, 0.49, 0.098),
        BandInfo("B03", "green", 10, 0.56, 0.045),
        BandInfo("B04", "red", 10, 0.665, 0.038),
        BandInfo("B05", "rededge1", 20, 0.704, 0.019),
        BandInfo("B06", "rededge2", 20, 0.74, 0.018),
        BandInfo("B07", "rededge3", 20, 0.783, 0.028),
        BandInfo("B08", "nir", 10, 0.842, 0.145),
        BandInfo("B8A", "nir08", 20, 0.865, 0.033),
        BandInfo("B09", "nir09", 60, 0.945, 0.026),
        BandInfo("B11", "swir16", 20, 1.61, 0.143),
        BandInfo("B12", "swir22", 20, 2.19, 0.242),
        BandInfo("SCL", "scl", 20, None, None),
    )
}
"""Sentinel-2 L2A bands by canonical id, in S2 order (no B10 in L2A). Wavelengths: Earth Search v1."""

_ALIASES: dict[str, str] = {}
for _b in S2_BANDS.values():
    _ALIASES[_b.id.lower()] = _b.id
    _ALIASES[_b.common_name] = _b.id
    if _b.id.startswith("B") and _b.id[1] == "0":
        _ALIASES["b" + _b.id[2:].lower()] = _b.id  # B1 .. B9 without zero padding
_ALIASES["b8a"] = "B8A"
_REJECTED = {
    "b10": "B10 (cirrus) is a Level-1C band and is not in Sentinel-2 L2A",
    "cirrus": "B10 (cirrus) is a Level-1C band and is not in Sentinel-2 L2A",
    "rededge": "'rededge' is ambiguous (B05, B06, B07 and B8A share it): use rededge1..3 or nir08",
    "swir": "'swir' is ambiguous: use swir16 (B11) or swir22 (B12)",
}


def canonical_band(name: str) -> str:
    """The canonical id (``B01``..``B12``, ``B8A``, ``SCL``) of a common name or band id.

    Raises:
        InvalidInputError: unknown, ambiguous or non-L2A band names.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"band names must be strings, got {name!r}")
    key = name.strip().lower()
    if key in _REJECTED:
        raise InvalidInputError(f"band {name!r}: {_REJECTED[key]}")
    try:
        return _ALIASES[key]
    except KeyError:
        known = ", ".join(f"{b.id}/{b.common_name}" for b in S2_BANDS.values())
        raise InvalidInputError(f"unknown band {name!r}; known bands: {known}") from None


@dataclass(frozen=True)
class Bands:
    """A validated, duplicate-free, ordered selection of Sentinel-2 L2A bands.

    Invariants: at least one band; every name is a canonical id of :data:`S2_BANDS`; no
    duplicates (the first occurrence wins, order kept).
    """

    names: tuple[str, ...]
    """Canonical band ids, in the requested order."""

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not isinstance(self.names, tuple):
            raise InvalidInputError(f"bands.names must be a tuple of names, got {self.names!r}")
        if not self.names:
            raise InvalidInputError("bands must name at least one band")
        for n in self.names:
            if n not in S2_BANDS:
                raise InvalidInputError(f"bands: {n!r} is not a canonical band id (use Bands.from_like)")
        if len(set(self.names)) != len(self.names):
            raise InvalidInputError(f"bands contain duplicates: {self.names}")

    @classmethod
    def from_like(cls, value: BandsLike) -> Bands:
        """Normalise band names: common names and S2 ids, any case, deduplicated in order.

        Args:
            value: ``Bands``, ``"red,green,blue"``, or a sequence such as ``["B04", "nir"]``.

        Raises:
            InvalidInputError: empty selection, unknown or ambiguous names.
        """
        if isinstance(value, Bands):
            return value
        if isinstance(value, str):
            items: list[Any] = [p for p in value.split(",") if p.strip()]
        elif isinstance(value, Sequence) and not isinstance(value, bytes):
            items = list(value)
        else:
            raise InvalidInputError(f"bands must be a string or a sequence of names, got {value!r}")
        out: list[str] = []
        for item in items:
            c = canonical_band(item)
            if c not in out:
                out.append(c)
        return cls(tuple(out))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, item: object) -> bool:
        return item in self.names

    @property
    def common_names(self) -> tuple[str, ...]:
        """The stliif common names of the bands, in order."""
        return tuple(S2_BANDS[n].common_name for n in self.names)

    @property
    def reflectance(self) -> tuple[str, ...]:
        """The selected bands that are surface reflectance (all but ``SCL``)."""
        return tuple(n for n in self.names if n != "SCL")


# --------------------------------------------------------------------------------------------
# AOI
# --------------------------------------------------------------------------------------------

DEFAULT_MAX_VERTICES = 10_000


@dataclass(frozen=True, eq=False)
class AOI:
    """A validated area of interest: a lon/lat (Multi)Polygon in EPSG:4326.

    Invariants: a non-empty, OGC-valid ``Polygon`` or ``MultiPolygon`` with positive area,
    finite coordinates inside [-180, 180] x [-90, 90], at most ``max_vertices`` vertices, and
    bounds that form a valid :class:`BBox` (so it is not wrapped around the antimeridian).
    """

    geometry: BaseGeometry
    """The polygon (shapely)."""

    def __post_init__(self) -> None:
        _check_polygon(self.geometry, max_vertices=None)

    @classmethod
    def from_like(
        cls,
        value: AOILike,
        *,
        max_vertices: int = DEFAULT_MAX_VERTICES,
        repair: bool = False,
        max_area_change: float = 0.01,
    ) -> AOI:
        """Normalise and validate a polygon input.

        Args:
            value: ``AOI``, a shapely (Multi)Polygon, or a GeoJSON Polygon/MultiPolygon
                geometry, Feature or one-feature FeatureCollection.
            max_vertices: Reject polygons with more vertices than this.
            repair: Repair an invalid polygon with ``shapely.make_valid``; only accepted when
                the repaired area differs from the input's by at most ``max_area_change``
                (relative). A bow-tie (area 0 -> 0.5) is never accepted.
            max_area_change: Relative area change tolerated by ``repair``.

        Raises:
            InvalidInputError: not a polygon, empty, invalid (with GEOS's reason), zero area,
                coordinates out of range or not finite, too many vertices, or antimeridian
                wrapping.
        """
        if isinstance(value, AOI):
            geom = value.geometry
        else:
            geom = _geometry_from(value, "aoi")
        if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
            raise InvalidInputError(f"aoi must be a Polygon or MultiPolygon, got {geom.geom_type}")
        _check_coordinates(geom, max_vertices=max_vertices)
        if not geom.is_valid:
            reason = shapely.validation.explain_validity(geom)
            if not repair:
                raise InvalidInputError(
                    f"aoi is not a valid polygon ({reason}); fix it, or pass repair=True to "
                    "accept shapely.make_valid when the area barely changes"
                )
            fixed = shapely.make_valid(geom)
            parts = getattr(fixed, "geoms", [fixed])
            polys = [g for g in parts if isinstance(g, shapely.Polygon | shapely.MultiPolygon)]
            fixed = shapely.unary_union(polys) if polys else shapely.Polygon()
            before, after = abs(geom.area), fixed.area
            change = math.inf if before == 0 else abs(after - before) / before
            if fixed.is_empty or not math.isfinite(change) or change > max_area_change:
                raise InvalidInputError(
                    f"aoi is not a valid polygon ({reason}) and repairing it changes its area "
                    f"from {before:.6g} to {after:.6g}; fix the polygon"
                )
            geom = fixed
        _check_polygon(geom, max_vertices=max_vertices)
        return cls(geom)

    @property
    def bbox(self) -> BBox:
        """The polygon's bounding box."""
        return BBox(*self.geometry.bounds)

    @property
    def n_vertices(self) -> int:
        """Number of coordinates in the polygon (rings closed)."""
        return int(shapely.get_num_coordinates(self.geometry))

    def to_geojson(self) -> dict[str, Any]:
        """The polygon as a GeoJSON geometry mapping (what STAC ``intersects`` takes)."""
        return _plain(shapely.geometry.mapping(self.geometry))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AOI) and bool(self.geometry.equals_exact(other.geometry, 0.0))

    def __hash__(self) -> int:
        return hash(self.geometry.wkb)


def _check_coordinates(geom: BaseGeometry, *, max_vertices: int | None) -> None:
    if geom.is_empty:
        raise InvalidInputError("aoi is empty")
    n = int(shapely.get_num_coordinates(geom))
    if max_vertices is not None and n > max_vertices:
        raise InvalidInputError(f"aoi has {n} vertices, more than the limit of {max_vertices}; simplify it")
    coords = shapely.get_coordinates(geom)
    if not bool(np.isfinite(coords).all()):
        raise InvalidInputError("aoi coordinates must be finite numbers (found NaN or inf)")
    if coords[:, 0].min() < -180 or coords[:, 0].max() > 180:
        raise InvalidInputError("aoi longitude outside [-180, 180]")
    if coords[:, 1].min() < -90 or coords[:, 1].max() > 90:
        raise InvalidInputError("aoi latitude outside [-90, 90]; are longitude and latitude swapped?")


def _check_polygon(geom: BaseGeometry, *, max_vertices: int | None) -> None:
    if not isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        raise InvalidInputError(f"aoi must be a Polygon or MultiPolygon, got {geom.geom_type}")
    _check_coordinates(geom, max_vertices=max_vertices)
    if not geom.is_valid:
        raise InvalidInputError(f"aoi is not a valid polygon ({shapely.validation.explain_validity(geom)})")
    if not geom.area > 0:
        raise InvalidInputError("aoi has zero area")
    minx, _, maxx, _ = geom.bounds
    if maxx - minx > 180:
        raise InvalidInputError(
            "aoi spans more than 180 degrees of longitude: a polygon crossing the antimeridian "
            "must be split at 180 degrees"
        )
    BBox(*geom.bounds)  # bounds form a valid bbox (positive width and height)
