"""Local DEM files: several tiles mosaicked onto a cube's grid, nodata kept as NaN at the edges."""

from __future__ import annotations

import os
import subprocess
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
from stliif.testing import grid_cube

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "dem"))
from make_dem import BOX, NODATA_WEST_OF, RES, SPLIT_LAT, make_dem, plane

CRS = "EPSG:32631"
T = Affine(10.0, 0, 429_300.0, 0, -10.0, 4_580_900.0)
SHAPE = (140, 160)  # west part: the files' nodata; middle: data, across both tiles; east: no file


@pytest.fixture(scope="module")
def dems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_dem(tmp_path_factory.mktemp("dem"))


def grid() -> xr.Dataset:
    return grid_cube(T, SHAPE, CRS, times=["2023-04-12"], bands=["red"], reflectance=np.ones((1, 1, *SHAPE)))


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

    from stliif.sources.load import load_dem
    from stliif.sources.providers import get_provider

    w, s, e, n = BOX[0], BOX[1], (BOX[0] + BOX[2]) / 2, BOX[3]  # the western half
    width, height = round((e - w) / RES), round((n - s) / RES)
    path = tmp_path / "int_dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="int16",
                       crs="EPSG:4326", transform=from_origin(w, n, RES, RES)) as dst:  # fmt: skip
        dst.write(np.full((height, width), 250, np.int16), 1)
    item = pystac.Item("dem-1", {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
                       [w, s, e, n], dt.datetime(2021, 1, 1, tzinfo=dt.UTC), {})  # fmt: skip
    item.add_asset("data", pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"],
                                        extra_fields={"raster:bands": [{"data_type": "int16"}]}))  # no nodata
    item.stac_extensions.append("https://stac-extensions.github.io/raster/v1.1.0/schema.json")
    geobox = GeoBox.from_bbox((BOX[0], BOX[1], BOX[2], BOX[3]), "EPSG:4326", resolution=4 * RES)
    dem = load_dem([item], geobox, get_provider("earth-search")).values
    lon = BOX[0] + (np.arange(dem.shape[1]) + 0.5) * 4 * RES
    assert np.isnan(dem[:, lon > e + 2 * RES]).all()  # beyond the tile: NaN, never 0
    assert (dem[:, lon < e - 2 * RES] == 250).all()


# ------------------------------------------------------------------------------------ the CLI


def _acquire(
    tmp_path: Path, *args: str, dates: tuple[str, str] = ("2023-04-01", "2023-04-30"), user: bool = False
) -> subprocess.CompletedProcess[str]:
    """``stliif acquire`` into ``tmp_path/store``: the installed command as a user runs it
    (``user``), else the same command line in this process (Typer's runner, for refusals)."""
    args = ("acquire", "--aoi", "city", "--start", dates[0], "--end", dates[1], "--store", str(tmp_path / "store"),
            "--quicklooks", str(tmp_path / "ql"), *args)  # fmt: skip
    if not user:
        from typer.testing import CliRunner

        from stliif_cli.main import app

        res = CliRunner().invoke(app, list(args))
        return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).with_name("stliif")), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--dem-file", "{tmp}/missing.tif"], "DEM file not found"),
        (["--dem-file", "{north}", "--dem"], "not both"),
        (["--dem-nodata", "0"], "--dem-nodata applies to --dem-file files only"),
        (["--dem-file", "{north}", "--dem-nodata", "nan"], "finite number"),
    ],
)
def test_cli_bad_dem_input_is_one_line(dems: dict[str, Path], tmp_path: Path, args: list[str], match: str) -> None:
    args = [a.format(tmp=tmp_path, north=dems["north"]) for a in args]
    out = _acquire(tmp_path, "--bbox", ",".join(map(str, BOX)), *args)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert match in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "store").exists() or ArtifactStore.open(str(tmp_path / "store"), create=False).list() == []


def test_cli_dem_far_from_the_area(dems: dict[str, Path], tmp_path: Path) -> None:
    out = _acquire(tmp_path, "--bbox", "10.0,45.0,10.01,45.01", "--dem-file", str(dems["north"]), "--dem-file", str(dems["south"]))
    assert out.returncode == 2 and "no DEM file overlaps the area (10.0, 45.0, 10.01, 45.01)" in out.stderr, out.stderr


@pytest.mark.integration
def test_cli_acquire_with_dem_files(stac_api: dict, tmp_path: Path) -> None:
    """`stliif acquire --dem-file A --dem-file B`: the tiles, mosaicked, are raw/<aoi>'s dem."""
    from conftest import dem_plane, write_dem_cog

    w, s, e, n = next(i["bbox"] for i in stac_api["items"] if i["id"].startswith("Landcover-14956-"))
    mid = round((w + e) / 2 * 3600) / 3600  # the tiles meet on a pixel edge
    write_dem_cog(tmp_path / "west.tif", (w - 0.01, s - 0.01, mid, n + 0.01))
    write_dem_cog(tmp_path / "east.tif", (mid, s - 0.01, e + 0.01, n + 0.01))
    out = _acquire(tmp_path, "--provider", stac_api["url"], "--collection", "worldstrat-lr", "--bbox",
                   ",".join(f"{v:.6f}" for v in (w, s, e, n)), "--dem-file", str(tmp_path / "west.tif"),
                   "--dem-file", str(tmp_path / "east.tif"), dates=("2019-09-01", "2019-10-20"), user=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "committed dem of raw/city from 2 file(s)" in out.stdout
    cube = ArtifactStore.open(str(tmp_path / "store"), create=False).read("raw/city", load=True)
    dem = cube["dem"]
    xx, yy = np.meshgrid(cube.x.values, cube.y.values)
    lon, lat = Transformer.from_crs(cube.rio.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    assert np.isfinite(dem.values).all() and dem.attrs["files"] == ["west.tif", "east.tif"]
    assert np.abs(dem.values - dem_plane(lon, lat)).max() < 1.0


def test_docs_dem_example_runs(dems: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    folder = dems["north"].parent
    monkeypatch.chdir(folder)
    ArtifactStore.open("stliif-store").commit({"raw/city": grid()}, stage="import", params={"aoi": "city"})
    text = (Path(__file__).resolve().parents[1] / "docs" / "acquisition.md").read_text()
    m = re.search(r"<!-- example: dem-python\b.*?-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert m
    scope: dict = {}
    exec(m.group(1), scope)
    assert scope["result"].created and np.isnan(scope["dem"].values).any() and np.isfinite(scope["dem"].values).any()
    bash = re.search(r"## A DEM from local files\s*```bash\n(.*?)```", text, re.DOTALL)
    assert bash and "--dem-file dem_north.tif --dem-file dem_south.tif" in bash.group(1)
    assert ",".join(f"{v:.4f}" for v in BOX) in bash.group(1)  # the fixtures' area
