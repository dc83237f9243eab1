"""Validated query types: examples from RELIABILITY rows 1-7 and 24, and Hypothesis fuzzing.

Property of every fuzz test: the validator either raises ``InvalidInputError`` or returns an
object satisfying all its invariants; any other exception is an escape and fails the test.
``STLIIF_FUZZ_EXAMPLES`` sets the examples per property (default 300; the report used 10,000).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import socket
import warnings

import pytest
import shapely
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stliif.errors import InvalidInputError
from stliif.names import validate_name
from stliif.types import (
    AOI,
    S2_BANDS,
    BBox,
    Bands,
    FutureEndWarning,
    TimeRange,
    canonical_band,
)

FUZZ = settings(
    max_examples=int(os.environ.get("STLIIF_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("STLIIF_FUZZ_RANDOM") is None,
)
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"test tried to open a network connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# ------------------------------------------------------------------------------ BBox examples


def test_bbox_accepts_sequences_and_geometries() -> None:
    assert BBox.from_like([28.57, 50.46, 28.60, 50.48]).as_tuple() == (28.57, 50.46, 28.60, 50.48)
    assert BBox.from_like((0, 0, 1, 1)) == BBox(0.0, 0.0, 1.0, 1.0)
    poly = shapely.Polygon([(1, 2), (3, 2), (3, 5), (1, 2)])
    assert BBox.from_like(poly).as_tuple() == (1, 2, 3, 5)
    feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(poly)}
    assert BBox.from_like(feature).as_tuple() == (1, 2, 3, 5)
    assert BBox.from_like([-180, -90, 180, 90]).width == 360


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([1, 2, 3], "exactly 4 values"),
        ([1, 2, 3, 4, 5, 6], "3-D bboxes are not supported"),
        ([], "exactly 4 values"),
        ([float("nan"), 0, 1, 1], "bbox.minx must be finite"),
        ([0, 0, float("inf"), 1], "bbox.maxx must be finite"),
        ([0, 0, 1, "1"], "bbox.maxy must be a number"),
        ([True, 0, 1, 1], "bbox.minx must be a number"),
        ([-181, 0, 1, 1], "bbox.minx=-181.0 is outside [-180, 180]"),
        # row 1: a lon/lat swap is caught when a "latitude" exceeds 90
        ([50.46, 28.57, 50.48, 128.6], "bbox.maxy=128.6 is outside [-90, 90]"),
        ([0, 0, 0, 1], "zero width"),
        ([0, 1, 1, 1], "zero or negative height"),
        ([0, 2, 1, 1], "bbox.miny=2.0 must be < bbox.maxy=1.0"),
        ([170, 0, -170, 1], "crossing the antimeridian"),
        ([0, 0, 2.6e-239, 2.6e-239], "bbox is degenerate"),  # found by Hypothesis: area underflow
        ("0,0,1,1", "must be 4 numbers"),
        ({"type": "Point", "coordinates": []}, "empty"),
        ({"type": "Polygon"}, "not a valid GeoJSON geometry"),
    ],
)
def test_bbox_rejections_name_the_field(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(fragment)):
        BBox.from_like(value)  # type: ignore[arg-type]


def test_invalid_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        BBox.from_like([0, 0, 0, 0])


# ------------------------------------------------------------------------------ TimeRange examples


def test_time_range_dates_cover_whole_days_and_naive_means_utc() -> None:
    tr = TimeRange.from_like("2020-01-01/2020-01-31", now=NOW)
    assert tr.start == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert tr.end == dt.datetime(2020, 1, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    assert tr.to_stac() == "2020-01-01T00:00:00.000000Z/2020-01-31T23:59:59.999999Z"
    naive = TimeRange.from_like((dt.datetime(2021, 5, 1, 10), dt.date(2021, 5, 2)), now=NOW)
    assert naive.start == dt.datetime(2021, 5, 1, 10, tzinfo=dt.UTC)
    paris = dt.timezone(dt.timedelta(hours=2))
    aware = TimeRange.from_like(("2021-05-01T12:00:00+02:00", dt.datetime(2021, 5, 1, 14, tzinfo=paris)), now=NOW)
    assert aware.start == dt.datetime(2021, 5, 1, 10, tzinfo=dt.UTC) and aware.duration == dt.timedelta(hours=2)
    single = TimeRange.from_like("2021-05-01", now=NOW)
    assert single.duration == dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    assert TimeRange.from_like("2021-05-01T10:00:00Z/..", now=NOW).end == NOW


def test_time_range_future_end_is_clamped_with_a_warning() -> None:
    with pytest.warns(FutureEndWarning, match="clamped"):
        tr = TimeRange.from_like(("2025-01-01", "2030-01-01"), now=NOW)
    assert tr.end == NOW


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (("2020-02-01", "2020-01-01"), "reversed"),
        ("2020/01/01", "expected 'start/end' with one '/'"),
        ("01-02-2020/2020-03-01", "time_range.start='01-02-2020' is not a strict ISO-8601"),
        ("2020-13-01/2020-12-31", "time_range.start='2020-13-01' is not a valid date"),
        ("2020-01-01/2020-02-30", "time_range.end='2020-02-30' is not a valid date"),
        ("2020-1-2/2020-01-03", "not a strict ISO-8601"),
        ("yesterday/today", "not a strict ISO-8601"),
        ((None, "2020-01-01"), "start is required"),
        (("2026-01-01", None), "is in the future"),
        (("2020-01-01",), "(start, end) pair"),
        ((1577836800, 1580515200), "must be an ISO-8601 string"),
    ],
)
def test_time_range_rejections(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(fragment)):
        TimeRange.from_like(value, now=NOW)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ Bands examples


def test_bands_map_common_names_and_ids_to_canonical_ids() -> None:
    b = Bands.from_like("red, Nir, b8a, B1, swir16, SCL")
    assert b.names == ("B04", "B08", "B8A", "B01", "B11", "SCL")
    assert b.common_names == ("red", "nir", "nir08", "coastal", "swir16", "scl")
    assert b.reflectance == ("B04", "B08", "B8A", "B01", "B11")
    assert Bands.from_like(["B04", "red", "rededge2"]).names == ("B04", "B06")  # duplicates folded
    assert [canonical_band(S2_BANDS[k].common_name) for k in S2_BANDS] == list(S2_BANDS)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "at least one band"),
        ([], "at least one band"),
        ("B10", "not in Sentinel-2 L2A"),
        ("rededge", "ambiguous"),
        ("ultraviolet", "unknown band 'ultraviolet'"),
        ([4], "band names must be strings"),
    ],
)
def test_bands_rejections(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(fragment)):
        Bands.from_like(value)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ AOI examples

SQUARE = {"type": "Polygon", "coordinates": [[[28.57, 50.46], [28.6, 50.46], [28.6, 50.48], [28.57, 50.48], [28.57, 50.46]]]}


def test_aoi_accepts_polygons_features_and_multipolygons() -> None:
    aoi = AOI.from_like(SQUARE)
    assert aoi.bbox.as_tuple() == pytest.approx((28.57, 50.46, 28.6, 50.48))
    assert aoi.to_geojson()["type"] == "Polygon" and aoi.n_vertices == 5
    assert AOI.from_like({"type": "Feature", "properties": {}, "geometry": SQUARE}) == aoi
    assert AOI.from_like({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": SQUARE}]}) == aoi
    multi = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)])
    assert AOI.from_like(multi).bbox.as_tuple() == (0, 0, 3, 3)
    with_hole = shapely.Polygon(shapely.box(0, 0, 4, 4).exterior.coords, [shapely.box(1, 1, 2, 2).exterior.coords])
    assert AOI.from_like(with_hole).geometry.area == 15


BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


@pytest.mark.parametrize(
    ("value", "kwargs", "fragment"),
    [
        (BOWTIE, {}, "not a valid polygon (Self-intersection"),
        (BOWTIE, {"repair": True}, "repairing it changes its area from 0 to 0.5"),  # row 24
        ({"type": "Point", "coordinates": [0, 0]}, {}, "Polygon or MultiPolygon, got Point"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, {}, "got LineString"),
        ({"type": "Polygon", "coordinates": []}, {}, "aoi is empty"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, {}, "Too few points"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]}, {}, "not a valid polygon"),
        ({"type": "Feature", "geometry": None}, {}, "has no geometry"),
        ({"type": "FeatureCollection", "features": []}, {}, "exactly one feature"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 95], [0, 0]]]}, {}, "latitude outside"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [float("nan"), 0], [1, 1], [0, 0]]]}, {}, "finite"),
        (SQUARE, {"max_vertices": 4}, "5 vertices, more than the limit of 4"),
        ({"type": "Polygon", "coordinates": [[[-179, 0], [179, 0], [179, 1], [-179, 1], [-179, 0]]]}, {}, "antimeridian"),
        ("POLYGON ((0 0, 1 0, 1 1, 0 0))", {}, "expected a shapely geometry or a GeoJSON mapping"),
    ],
)
def test_aoi_rejections(value: object, kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(fragment)):
        AOI.from_like(value, **kwargs)  # type: ignore[arg-type]


def test_aoi_repair_accepts_a_tiny_area_change() -> None:
    # A ring with a duplicated spike vertex: invalid, but make_valid removes only the spike.
    ring = [[0, 0], [10, 0], [10, 10], [5, 10], [5, 10.000001], [5, 10], [0, 10], [0, 0]]
    poly = {"type": "Polygon", "coordinates": [ring]}
    with pytest.raises(InvalidInputError):
        AOI.from_like(poly)
    assert AOI.from_like(poly, repair=True).geometry.area == pytest.approx(100)


# ------------------------------------------------------------------------------ fuzzing

finite_or_not = st.floats(allow_nan=True, allow_infinity=True)
in_range_x = st.floats(-180, 180)
in_range_y = st.floats(-90, 90)
loose_number = st.one_of(finite_or_not, st.integers(-400, 400), st.booleans(), st.none(), st.text(max_size=3))


def _check_bbox(b: BBox) -> None:
    vals = b.as_tuple()
    assert all(isinstance(v, float) and math.isfinite(v) for v in vals)
    assert -180 <= b.minx < b.maxx <= 180
    assert -90 <= b.miny < b.maxy <= 90
    assert b.to_shapely().area > 0


@FUZZ
@given(
    st.one_of(
        st.lists(finite_or_not, min_size=0, max_size=7),  # the RELIABILITY design
        st.lists(loose_number, min_size=0, max_size=7),
        st.tuples(in_range_x, in_range_y, in_range_x, in_range_y),  # ~1/4 ordered
        st.tuples(st.lists(in_range_x, min_size=2, max_size=2, unique=True).map(sorted),
                  st.lists(in_range_y, min_size=2, max_size=2, unique=True).map(sorted))
        .map(lambda xy: [xy[0][0], xy[1][0], xy[0][1], xy[1][1]]),  # ordered: mostly accepted
    )
)
def test_fuzz_bbox(value: list[object]) -> None:
    try:
        b = BBox.from_like(value)  # type: ignore[arg-type]
    except InvalidInputError:
        event("rejected")
        return
    event("accepted")
    _check_bbox(b)
    assert BBox.from_like(b.as_list()) == b  # round trip


fixed_tz = st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59)))
any_datetime = st.one_of(st.datetimes(), st.datetimes(timezones=fixed_tz))
iso_text = st.one_of(
    any_datetime.map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    any_datetime.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.text(max_size=30),
    st.sampled_from(["", "..", "2020-02-30", "2020-1-1", "20200101", "2020-01-01T25:00"]),
)
time_end = st.one_of(any_datetime, st.dates(), iso_text, st.none())


@FUZZ
@given(
    st.one_of(
        st.tuples(time_end, time_end),
        st.tuples(iso_text, iso_text).map(lambda p: f"{p[0]}/{p[1]}"),
        iso_text,
        st.lists(time_end, max_size=3),
    )
)
def test_fuzz_time_range(value: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureEndWarning)
        try:
            tr = TimeRange.from_like(value, now=NOW)  # type: ignore[arg-type]
        except InvalidInputError:
            event("rejected")
            return
    event("accepted")
    assert tr.start.utcoffset() == dt.timedelta(0) and tr.end.utcoffset() == dt.timedelta(0)
    assert tr.start <= tr.end <= NOW
    start, end = tr.to_stac().split("/")
    assert start.endswith("Z") and end.endswith("Z")


band_words = st.sampled_from(
    [*S2_BANDS, *(b.common_name for b in S2_BANDS.values()), "b1", "B8a", "rededge", "B10", "cirrus", "nir08 ", "RED"]
)


@FUZZ
@given(
    st.one_of(
        st.lists(st.one_of(band_words, st.text(max_size=6)), max_size=8),
        st.lists(band_words, min_size=1, max_size=8).map(",".join),
        st.text(max_size=20),
    )
)
def test_fuzz_bands(value: object) -> None:
    try:
        b = Bands.from_like(value)  # type: ignore[arg-type]
    except InvalidInputError:
        event("rejected")
        return
    event("accepted")
    assert len(b) >= 1 and len(set(b.names)) == len(b.names)
    assert all(n in S2_BANDS for n in b.names)


ring = st.lists(st.tuples(st.floats(-200, 200), st.floats(-100, 100)), min_size=0, max_size=50)
nan_ring = st.lists(st.tuples(finite_or_not, finite_or_not), min_size=0, max_size=8)
rect = st.tuples(in_range_x, in_range_y, in_range_x, in_range_y).map(
    lambda t: [[t[0], t[1]], [t[2], t[1]], [t[2], t[3]], [t[0], t[3]], [t[0], t[1]]]
)


@FUZZ
@given(st.one_of(ring, nan_ring, rect), st.booleans())
def test_fuzz_aoi(coords: list[object], repair: bool) -> None:
    value = {"type": "Polygon", "coordinates": [coords]}
    try:
        aoi = AOI.from_like(value, max_vertices=40, repair=repair)
    except InvalidInputError:
        event("rejected")
        return
    event("accepted")
    g = aoi.geometry
    assert isinstance(g, shapely.Polygon | shapely.MultiPolygon) and not g.is_empty
    assert g.is_valid and g.area > 0
    assert aoi.n_vertices <= 40 or repair  # make_valid may add nodes; the input had <= 40
    _check_bbox(aoi.bbox)
    assert aoi.bbox.width <= 180


@FUZZ
@given(st.one_of(st.text(max_size=70), st.sampled_from(["../x", "a/b", "a\x00b", "..", "ok-name", "\u202eevil", "ａbc"])))
def test_fuzz_names(name: str) -> None:
    try:
        out = validate_name(name)
    except InvalidInputError:
        event("rejected")
        return
    event("accepted")
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", out) and ".." not in out and "/" not in out
