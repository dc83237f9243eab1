"""``stliif render`` and the render flow on real data: files, commits with lineage, bad requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from stliif.stages import run_stage
from stliif.store import ArtifactStore
from stliif_cli.main import app

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

AOI = "Landcover-14956"  # revisits 2019-08-24 .. 2019-11-22, HR 2019-10-20
runner = CliRunner()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory, worldstrat: Path) -> Path:
    path = tmp_path_factory.mktemp("render") / "store"
    store = ArtifactStore.open(str(path))
    for stage in ("import", "mask"):
        run_stage(store, stage, AOI, data=str(worldstrat))
    return path


def _render(store_dir: Path, out: Path, *args: str):
    return runner.invoke(app, ["render", "--aoi", AOI, "--model", "median", "--store", str(store_dir),
                               "--out", str(out), *args])  # fmt: skip


def test_render_one_date_writes_a_cog_on_the_aoi_and_commits_once(store_dir: Path, tmp_path: Path) -> None:
    res = _render(store_dir, tmp_path, "--date", "2019-10-20", "--scale", "4")
    assert res.exit_code == 0, res.output
    store = ArtifactStore.open(str(store_dir))
    path = f"render/{AOI}/median/2019-10-20-x4"
    ds = store.read(path, load=True)
    raw = store.read(f"raw/{AOI}")
    assert ds["reflectance"].shape == (4, 4 * raw.sizes["y"], 4 * raw.sizes["x"])  # R, G, B, NIR
    assert ds["band"].values.tolist() == ["B04", "B03", "B02", "B08"]
    meta = store.log(limit=1)[0].metadata
    assert meta["stage"] == "render" and meta["inputs"][f"raw/{AOI}"] == store.version(f"raw/{AOI}")
    assert ds.attrs["nearest_revisit_days"] == 2 and ds.attrs["temporal_support"] == "interpolated"
    tif = tmp_path / AOI / "median" / "2019-10-20-x4.tif"
    with rasterio.open(tif) as src:
        np.testing.assert_allclose(tuple(src.bounds), raw.rio.bounds(), atol=1e-9)
        assert src.crs == raw.rio.crs and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert (tmp_path / AOI / "median" / "2019-10-20-x4.png").stat().st_size > 0
    from prefect.artifacts import Artifact

    progress = Artifact.get(f"render-progress-{AOI.lower()}")  # the flow's progress artifact, at its end
    assert progress is not None and progress.type == "progress" and float(progress.data) == 100.0
    # product mode by default: the render, averaged back to the 10 m grid, is the inputs' time interpolation
    assert "product mode; against the inputs on their grid: mean abs error 0.0000" in res.output
    flat = " ".join(res.output.split())  # the console wraps long lines
    assert "bias R/G/B/NIR" in flat and "NDVI mean abs error" in flat and "NIR: B08" in flat
    with rasterio.open(tif) as src:
        assert src.tags()["mode"] == "product" and float(src.tags()["consistency_mae"]) < 1e-6
    card = Artifact.get(f"render-{AOI.lower()}-median-2019-10-20-x4")
    assert card is not None and "Mode `product`" in str(card.data) and "| mean abs error |" in str(card.data)
    assert "bias R / G / B / NIR" in str(card.data) and "NDVI mean abs error" in str(card.data)
    n = len(store.log())
    again = _render(store_dir, tmp_path, "--date", "2019-10-20", "--scale", "4")
    assert again.exit_code == 0 and "unchanged" in again.output
    assert len(ArtifactStore.open(str(store_dir)).log()) == n


def test_render_series_writes_animations_and_a_cube(store_dir: Path, tmp_path: Path) -> None:
    res = _render(store_dir, tmp_path, "--start", "2019-10-01", "--end", "2019-10-21", "--step", "10D",
                  "--gsd", "5")  # fmt: skip
    assert res.exit_code == 0, res.output
    name = "2019-10-01_2019-10-21_10D-gsd5m"
    cube = ArtifactStore.open(str(store_dir)).read(f"render/{AOI}/median/{name}")
    assert cube.sizes["time"] == 3 and cube["reflectance"].dims == ("time", "band", "y", "x")
    for suffix in (".gif", ".mp4", "-strip.png"):
        assert (tmp_path / AOI / "median" / f"{name}{suffix}").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--aoi", "Nowhere-1", "--date", "2019-10-20", "--scale", "2"], "raw/Nowhere-1 is not in the store"),
        (["--start", "2019-11-01", "--end", "2019-10-01", "--scale", "2"], "before start"),
        (["--date", "2019-10-20", "--scale", "0"], "greater than 0"),
        (["--date", "2019-10-20"], "exactly one of scale and gsd"),
        (["--date", "2021-01-01", "--scale", "2"], "outside the model's temporal support"),
        (["--date", "2019-10-20", "--scale", "8", "--tile", "16"], "less than the model's halo"),
        (["--date", "2019-10-20", "--scale", "4", "--bbox", "10,10,10.1,10.1"], "is not inside raw/"),
        (["--date", "2019-10-20", "--scale", "4", "--max-mb", "0.01"], "a tile of 64 px needs"),
        (["--date", "2019-10-20", "--scale", "4", "--dask", "udp://x"], "dask must be 'local'"),
    ],
)
def test_bad_render_requests_are_one_clear_error(store_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = ["render", "--model", "median", "--store", str(store_dir), "--out", str(tmp_path)]
    if "--aoi" not in args:
        base += ["--aoi", AOI]
    res = runner.invoke(app, [*base, *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
