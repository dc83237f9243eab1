"""Acquisition against a real STAC API (stac-fastapi-pgstac) on 127.0.0.1 serving WorldStrat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from affine import Affine
from conftest import dem_plane, free_port

from stliif.acquire import area_of, run_acquire, search, target_geobox
from stliif.config import AcquireSpec, StoreSpec
from stliif.errors import DataAccessError, InvalidInputError
from stliif.sources.load import load_cube
from stliif.sources.providers import get_provider
from stliif.sources.worldstrat import find_aoi_files, read_lr
from stliif.store import ArtifactStore

AOI = "Landcover-14956"

pytestmark = pytest.mark.integration


def _items(stac_api: dict[str, Any], aoi: str) -> list[dict[str, Any]]:
    return [i for i in stac_api["items"] if i["collection"] == "worldstrat-lr" and i["properties"]["worldstrat:aoi"] == aoi]


def _spec(stac_api: dict[str, Any], **kw: Any) -> AcquireSpec:
    bbox = _items(stac_api, AOI)[0]["bbox"]
    fields: dict[str, Any] = dict(aoi="lc", providers=[stac_api["url"]], collection="worldstrat-lr",
                                  provider_name="local", bbox=tuple(bbox), start="2019-01-01",
                                  end="2019-12-31", quicklooks=None, retries=0, timeout=10)  # fmt: skip
    return AcquireSpec(**{**fields, **kw})


def _store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))


def test_search_by_bbox_dates_and_cloud_cover_matches_the_catalog(stac_api: dict[str, Any]) -> None:
    items = _items(stac_api, AOI)
    start, end, max_cloud = "2019-09-01", "2019-10-31", 5.0
    expected = {
        i["id"] for i in items
        if start <= i["properties"]["datetime"][:10] <= end and i["properties"].get("eo:cloud_cover", 0) <= max_cloud
    }  # fmt: skip
    assert 0 < len(expected) < len(items)
    found = search(_spec(stac_api, start=start, end=end, max_cloud=max_cloud))
    assert {i.id for i in found.items} == expected
    assert found.found == {"local": len(expected)} and not found.errors
    # Every item is harmonised (WorldStrat's L2A come with offset 0) and tagged with its provider.
    assert all(i.properties["stliif:provider"] == "local" for i in found.items)
    assert all(i.properties["stliif:harmonisation"]["reflectance_offset"] == 0.0 for i in found.items)


def test_pixels_loaded_through_the_api_equal_the_source_files(stac_api: dict[str, Any], worldstrat: Path) -> None:
    """On the source grid with nearest resampling, every loaded value is the source value."""
    found = search(_spec(stac_api))
    src = read_lr(find_aoi_files(worldstrat, AOI))
    from odc.geo.geobox import GeoBox

    geobox = GeoBox((src.sizes["y"], src.sizes["x"]), Affine(*src.rio.transform()[:6]), "EPSG:4326")
    cube = load_cube(found.items, ["red", "green", "blue", "nir"], geobox, resampling="nearest").load()
    assert list(cube["time"].values.astype("datetime64[D]")) == list(src["time"].values.astype("datetime64[D]"))
    want = src["reflectance"].sel(band=["B04", "B03", "B02", "B08"]).values
    got = cube["reflectance"].values
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    assert np.array_equal(cube["clm"].values, src["clm"].values)
    assert np.array_equal(cube["scl"].values, src["scl"].values)


def test_acquire_commits_a_utm_cube_and_a_refresh_adds_only_new_dates(
    stac_api: dict[str, Any], worldstrat: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    first = run_acquire(store, _spec(stac_api, end="2019-10-05"))
    assert first.status == "committed" and first.new_dates == first.dates
    cube = store.read("raw/lc", load=True)
    assert str(cube.rio.crs) == "EPSG:32635"  # UTM zone 35N at 28.6 E
    assert cube.rio.resolution() == (10.0, -10.0)
    # The grid covers the area, and the UTM cube tracks the source (bilinear resampling).
    w, s, e, n = cube.rio.transform_bounds("EPSG:4326")
    bb = _items(stac_api, AOI)[0]["bbox"]
    assert w <= bb[0] and s <= bb[1] and e >= bb[2] and n >= bb[3]
    src = read_lr(find_aoi_files(worldstrat, AOI))
    day = np.datetime64(first.dates[0])
    a = cube["reflectance"].sel(time=day, band="B04").values
    b = src["reflectance"].sel(time=day, band="B04").values
    assert abs(np.nanmean(a) - np.nanmean(b)) < 0.002 and abs(np.nanstd(a) - np.nanstd(b)) < 0.2 * np.nanstd(b)
    snapshots = len(store.log())
    # A refresh over a longer range loads only the new acquisitions and commits once.
    second = run_acquire(store, _spec(stac_api, end="2019-12-31"))
    assert second.status == "committed"
    assert second.new_dates and all(d > "2019-10-05" for d in second.new_dates)
    assert second.dates == sorted(first.dates + second.new_dates)
    assert len(store.log()) == snapshots + 1
    after = store.read("raw/lc", load=True)
    np.testing.assert_array_equal(after["reflectance"].sel(time=cube["time"]).values, cube["reflectance"].values)
    # Stored compactly as the items' DN (one scale and offset here), the refresh's new dates too.
    assert zarr.open_group(store._session(None).store, path="raw/lc", mode="r")["reflectance"].dtype == np.uint16
    assert list(after["revisit"].values) == list(range(1, len(second.dates) + 1))
    # Nothing new: no commit.
    third = run_acquire(store, _spec(stac_api, end="2019-12-31"))
    assert third.status == "unchanged" and len(store.log()) == snapshots + 1
    # The mask stage works on the acquired cube as on an imported one.
    from stliif.stages import run_stage

    masked = run_stage(store, "mask", "lc", data=worldstrat)
    assert masked.status == "committed"
    fractions = store.read("mask/lc", load=True)["clear_fraction"].values
    assert len(fractions) == len(second.dates) and (fractions > 0.5).all()
    # Square and polygon crops apply to the acquired (UTM) cube as to an imported one.
    from stliif.stages import run_crop

    cx, cy = (bb[0] + bb[2]) / 2, (bb[1] + bb[3]) / 2
    sq = run_crop(store, "raw/lc", "sq", center=(cx, cy), size_m=500)
    assert sq.status == "committed"
    part = store.read("crop/raw/lc/sq", load=True)
    assert part.sizes["y"] == part.sizes["x"] == 50 and part.sizes["time"] == len(second.dates)
    tri = tmp_path / "tri.geojson"
    tri.write_text(json.dumps({"type": "Polygon", "coordinates": [[[bb[0], bb[1]], [bb[2], bb[1]], [bb[0], bb[3]], [bb[0], bb[1]]]]}))
    assert run_crop(store, "raw/lc", "tri", polygon=tri).status == "committed"
    inside = store.read("crop/raw/lc/tri", load=True)["data_mask"].values[0] == 1
    assert 0.3 < inside.mean() < 0.7
    for crop in ("sq", "tri"):
        assert zarr.open_group(store._session(None).store, path=f"crop/raw/lc/{crop}", mode="r")["reflectance"].dtype == np.uint16


def test_no_items_and_all_cloudy_are_recorded_without_a_commit(stac_api: dict[str, Any], tmp_path: Path) -> None:
    store = _store(tmp_path)
    none = run_acquire(store, _spec(stac_api, start="2016-01-01", end="2016-02-01"))
    assert none.status == "no-data" and "no items" in none.reason
    cloudy = run_acquire(store, _spec(stac_api, start="2019-10-08", end="2019-10-08", min_clear=0.95))
    assert cloudy.status == "no-data" and "too cloudy" in cloudy.reason and "2019-10-08" in cloudy.dropped
    assert store.list("raw") == [] and [c.message for c in store.log()] == ["store created", "Repository initialized"]


def test_over_budget_is_refused_before_reading(stac_api: dict[str, Any], tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(InvalidInputError, match="above the budget of 0.1 MiB"):
        run_acquire(store, _spec(stac_api, max_mb=0.1))
    assert store.list("raw") == []


def test_polygon_area_masks_pixels_outside(stac_api: dict[str, Any], tmp_path: Path) -> None:
    w, s, e, n = _items(stac_api, AOI)[0]["bbox"]
    triangle = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[w, s], [e, s], [w, n], [w, s]]]}}  # fmt: skip
    path = tmp_path / "triangle.geojson"
    path.write_text(json.dumps(triangle))
    store = _store(tmp_path)
    spec = _spec(stac_api, bbox=None, polygon=str(path), end="2019-09-30")
    assert run_acquire(store, spec).status == "committed"
    cube = store.read("raw/lc", load=True)
    valid = cube["data_mask"].values[0] == 1
    h, w_ = valid.shape
    # Lower-left half inside, upper-right corner outside (y runs north to south).
    assert valid[int(h * 0.8), int(w_ * 0.2)] and not valid[int(h * 0.2), int(w_ * 0.8)]
    assert 0.35 < valid.mean() < 0.65
    assert np.isnan(cube["reflectance"].values[0][:, ~valid]).all()
    # A polygon that is not one is refused before any request.
    bad = tmp_path / "bowtie.geojson"
    bad.write_text(json.dumps({"type": "Polygon", "coordinates": [[[w, s], [e, n], [e, s], [w, n], [w, s]]]}))
    with pytest.raises(InvalidInputError):
        area_of(_spec(stac_api, bbox=None, polygon=str(bad)))


def test_dem_lands_on_the_same_grid(stac_api: dict[str, Any], tmp_path: Path) -> None:
    store = _store(tmp_path)
    spec = _spec(stac_api, end="2019-09-30", dem=True, dem_collection="cop-dem-glo-30", dem_asset="data",
                 quicklooks=str(tmp_path / "ql"))
    assert run_acquire(store, spec).status == "committed"
    cube = store.read("raw/lc", load=True)
    dem = cube["dem"]
    assert dem.dims == ("y", "x") and dem.shape == cube["data_mask"].shape[1:]
    # Compare with the plane at each pixel centre (bilinear resampling of a plane is exact
    # up to the source's float32 values).
    from pyproj import Transformer

    xx, yy = np.meshgrid(cube["x"].values, cube["y"].values)
    lon, lat = Transformer.from_crs(cube.rio.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    assert np.nanmax(np.abs(dem.values - dem_plane(lon, lat))) < 0.5
    from stliif.quicklook import write_quicklooks

    files = write_quicklooks(cube, tmp_path / "ql")
    assert files["dem"] and files["sheet"] and len(files["rgb"]) == cube.sizes["time"]


def test_a_failing_provider_is_recorded_and_the_others_used(stac_api: dict[str, Any]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    found = search(_spec(stac_api, providers=[stac_api["url"], dead], provider_name="local"))
    assert found.items and found.found == {"local": len(found.items)}
    assert list(found.errors) == ["local-2"] and "unavailable" in found.errors["local-2"]
    with pytest.raises(DataAccessError, match="every provider failed"):
        search(_spec(stac_api, providers=[dead]))


def test_grid_change_on_refresh_is_refused(stac_api: dict[str, Any], tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert run_acquire(store, _spec(stac_api, end="2019-09-30")).status == "committed"
    with pytest.raises(InvalidInputError, match="another grid"):
        run_acquire(store, _spec(stac_api, end="2019-12-31", resolution=20.0))


def test_target_grid_is_stable_and_utm() -> None:
    from stliif.types import AOI as Area

    area = Area.from_like({"type": "Polygon", "coordinates": [[[-70.1, -33.5], [-70.0, -33.5], [-70.0, -33.4], [-70.1, -33.4], [-70.1, -33.5]]]})
    g = target_geobox(area)
    assert str(g.crs) == "EPSG:32719"  # southern hemisphere, zone 19
    assert g.affine.a == 10 and g.affine.c % 10 == 0 and g.affine.f % 10 == 0
    assert target_geobox(area) == g


def test_assets_on_s3_load_through_gdal(stac_api: dict[str, Any], worldstrat: Path, s3_env: str,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same items with their COGs in an S3 bucket (moto on 127.0.0.1), read by GDAL."""
    import os

    import boto3
    from stac_server import catalog_objects

    from stliif.sources.stac_export import export_worldstrat_stac

    bucket = os.environ["STLIIF_TEST_BUCKET"]
    out = tmp_path / "ws3"
    catalog = export_worldstrat_stac(worldstrat, out, aois=[AOI], href_base=f"s3://{bucket}/ws/")
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    for f in out.rglob("*.tif"):
        s3.upload_file(str(f), bucket, f"ws/{f.relative_to(out)}")
    cols, items = catalog_objects(catalog)
    lr = {**next(c for c in cols if c["id"] == "worldstrat-lr"), "id": "ws-s3"}
    stac_api["server"].load([lr], [{**i, "collection": "ws-s3"} for i in items if i["collection"] == "worldstrat-lr"])
    monkeypatch.setenv("AWS_S3_ENDPOINT", s3_env.removeprefix("http://"))
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")
    store = _store(tmp_path)
    s3_result = run_acquire(store, _spec(stac_api, collection="ws-s3", aoi="lc-s3", end="2019-09-30"))
    file_result = run_acquire(store, _spec(stac_api, aoi="lc-file", end="2019-09-30"))
    assert s3_result.status == file_result.status == "committed" and s3_result.dates == file_result.dates
    a = store.read("raw/lc-s3", load=True)["reflectance"].values
    b = store.read("raw/lc-file", load=True)["reflectance"].values
    np.testing.assert_array_equal(a, b)


def test_planetary_computer_assets_are_signed_at_read_time_only() -> None:
    """Search results keep plain hrefs; odc-stac gets the signer as ``patch_url``, called per
    read (tokens expire inside long lazy loads). Non-Azure URLs pass through unchanged."""
    import planetary_computer

    from stliif.sources.load import _patch_url
    from stliif.sources.providers import PLANETARY_COMPUTER

    signer = _patch_url(PLANETARY_COMPUTER)
    assert signer is planetary_computer.sign_url
    assert signer("https://example.org/a.tif") == "https://example.org/a.tif"
    assert _patch_url(get_provider("earth-search")) is None


def test_a_dead_provider_answers_within_the_deadline(stac_api: dict[str, Any]) -> None:
    """A dead host retried with backoff would take minutes (10 retries); the deadline ends it."""
    import time

    dead = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(DataAccessError, match=r"every provider failed: .*no answer within the deadline of 1.5 s"):
        search(_spec(stac_api, providers=[dead], retries=10, deadline=1.5))
    assert time.monotonic() - start < 5
    # a live provider beside it still answers, and the dead one is recorded
    found = search(_spec(stac_api, providers=[stac_api["url"], dead], provider_name="local", retries=10, deadline=8))
    assert found.items and "no answer within the deadline" in found.errors["local-2"]
