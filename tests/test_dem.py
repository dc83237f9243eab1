"""Local DEM files: several tiles mosaicked onto a cube's grid, nodata kept as NaN at the edges."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from pyproj import Transformer

from stliif.errors import InvalidInputError, NoDataError
from stliif.sources.dem import add_dem, load_dem_files
from stliif.store import ArtifactStore

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "dem"))
from make_dem import BOX, NODATA_WEST_OF, RES, SPLIT_LAT, make_dem, plane  # noqa: E402

CRS = "EPSG:32631"
T = Affine(10.0, 0, 429_300.0, 0, -10.0, 4_580_900.0)
SHAPE = (140, 160)  # west part: the files' nodata; middle: data, across both tiles; east: no file


@pytest.fixture(scope="module")
def dems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_dem(tmp_path_factory.mktemp("dem"))


def grid() -> xr.Dataset:
    h, w = SHAPE
    x = T.c + 10.0 * (np.arange(w) + 0.5)
    y = T.f - 10.0 * (np.arange(h) + 0.5)
    refl = np.ones((1, 1, h, w), np.float32)
    ds = xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl)},
        coords={"time": np.array(["2023-04-12"], dtype="datetime64[ns]"), "band": ["red"], "y": y, "x": x},
    )
    return ds.rio.write_crs(CRS).rio.write_transform(T)


def lonlat() -> tuple[np.ndarray, np.ndarray]:
    ds = grid()
    xx, yy = np.meshgrid(ds.x.values, ds.y.values)
    return Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(xx, yy)


def test_two_tiles_mosaic_nodata_and_edges(dems: dict[str, Path]) -> None:
    dem = load_dem_files([dems["north"], dems["south"]], grid())
    assert dem.dims == ("y", "x") and dem.dtype == np.float32 and dem.attrs["units"] == "m"
    lon, lat = lonlat()
    v = dem.values
    margin = 1.5 * RES  # a bilinear kernel reaches one source pixel from the centre
    nodata = lon < NODATA_WEST_OF - margin
    outside = lon > BOX[2] + margin
    valid = (lon > NODATA_WEST_OF + margin) & (lon < BOX[2] - margin)
    assert nodata.sum() > 1000 and outside.sum() > 1000 and valid.sum() > 5000
    assert np.isnan(v[nodata]).all()  # the file's nodata stays NaN
    assert np.isnan(v[outside]).all()  # no file there: NaN, not 0
    assert not (v == 0).any()
    # valid pixels, seam between the tiles included, are the plane (bilinear is exact on a plane)
    assert np.isfinite(v[valid]).all()
    assert np.abs(v[valid] - plane(lon[valid], lat[valid])).max() < 0.05
    seam = valid & (np.abs(lat - SPLIT_LAT) < 2 * RES)
    assert seam.sum() > 20 and np.isfinite(v[seam]).all()
    # at the edges, every value comes from valid neighbours: within a pixel's rise of the plane
    # (a bleed of -32767 with any weight would be metres to kilometres off)
    finite = np.isfinite(v)
    assert np.abs(v[finite] - plane(lon[finite], lat[finite])).max() < 1.0


def test_one_tile_leaves_the_other_half_nan(dems: dict[str, Path]) -> None:
    dem = load_dem_files([dems["north"]], grid()).values
    lon, lat = lonlat()
    assert np.isnan(dem[lat < SPLIT_LAT - 1.5 * RES]).all()
    assert np.isfinite(dem[(lat > SPLIT_LAT + 1.5 * RES) & (lon > NODATA_WEST_OF + 1.5 * RES) & (lon < BOX[2] - 1.5 * RES)]).all()


def test_file_without_nodata_explicit_nodata(dems: dict[str, Path]) -> None:
    lon, _ = lonlat()
    west = lon < NODATA_WEST_OF - 1.5 * RES
    with pytest.warns(UserWarning, match="declares no nodata value and holds zeros"):
        as_is = load_dem_files([dems["zeros"]], grid()).values
    assert (as_is[west] == 0).all()  # the clip's zeros, taken as heights (the warning says so)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fixed = load_dem_files([dems["zeros"]], grid(), nodata=0).values
    assert np.isnan(fixed[west]).all() and not (fixed == 0).any()
    assert np.nanmin(fixed) > 80  # no bilinear mix of 0 into valid pixels near the edge


def test_bad_dem_input(dems: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "notes.tif").write_text("not a raster")
    for files, match in (([tmp_path / "missing.tif"], "DEM file not found"), ([tmp_path / "notes.tif"], "not a readable raster"), ([], "give one or more")):
        with pytest.raises(InvalidInputError, match=match):
            load_dem_files(files, grid())
    with pytest.raises(InvalidInputError, match="finite number"):
        load_dem_files([dems["north"]], grid(), nodata=float("nan"))
    far = grid().rio.write_transform(Affine(10.0, 0, 300_000.0, 0, -10.0, 4_000_000.0))
    far = far.assign_coords(x=300_000.0 + 10 * (np.arange(SHAPE[1]) + 0.5), y=4_000_000.0 - 10 * (np.arange(SHAPE[0]) + 0.5))
    with pytest.raises(NoDataError, match="no DEM file has data on the grid"):
        load_dem_files([dems["north"]], far)


def test_add_dem_commits_into_raw(dems: dict[str, Path], tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "store"))
    with pytest.raises(NoDataError, match="raw/city is missing"):
        add_dem(store, "city", [dems["north"]])
    store.commit({"raw/city": grid()}, stage="import", params={"aoi": "city"})
    res = add_dem(store, "city", [dems["north"], dems["south"]])
    assert res.created and res.artifacts == ("raw/city",)
    cube = store.read("raw/city", load=True)
    assert cube["dem"].attrs["files"] == ["dem_north.tif", "dem_south.tif"]
    assert np.array_equal(cube["dem"].values, load_dem_files([dems["north"], dems["south"]], grid()).values, equal_nan=True)
    assert cube["reflectance"].shape == (1, 1, *SHAPE)
    again = add_dem(store, "city", [dems["north"], dems["south"]])
    assert not again.created and again.snapshot_id == res.snapshot_id


def test_acquire_load_dem_fills_nan_not_zero(tmp_path: Path) -> None:
    """The STAC DEM path: an integer tile without nodata, half over the grid: NaN beyond it."""
    import datetime as dt

    import pystac
    import rasterio
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin

    from stliif.acquire import load_dem
    from stliif.sources.providers import get_provider

    w, s, e, n = BOX[0], BOX[1], (BOX[0] + BOX[2]) / 2, BOX[3]  # the western half
    width, height = round((e - w) / RES), round((n - s) / RES)
    path = tmp_path / "int_dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="int16",
                       crs="EPSG:4326", transform=from_origin(w, n, RES, RES)) as dst:  # fmt: skip
        dst.write(np.full((height, width), 250, np.int16), 1)
    item = pystac.Item("dem-1", {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
                       [w, s, e, n], dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc), {})  # fmt: skip
    item.add_asset("data", pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"],
                                        extra_fields={"raster:bands": [{"data_type": "int16"}]}))  # no nodata
    item.stac_extensions.append("https://stac-extensions.github.io/raster/v1.1.0/schema.json")
    geobox = GeoBox.from_bbox((BOX[0], BOX[1], BOX[2], BOX[3]), "EPSG:4326", resolution=4 * RES)
    dem = load_dem([item], geobox, get_provider("earth-search")).values
    lon = BOX[0] + (np.arange(dem.shape[1]) + 0.5) * 4 * RES
    assert np.isnan(dem[:, lon > e + 2 * RES]).all()  # beyond the tile: NaN, never 0
    assert (dem[:, lon < e - 2 * RES] == 250).all()
