"""Tiled renders: the mosaic equals a one-shot render, halos cover the receptive field, killed
renders resume, Dask workers get the model once, and bad tiles are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from stliif.errors import InvalidInputError
from stliif.models.calibration import Calibration
from stliif.models.inference import ModelPredictor
from stliif.models.registry import make_model
from stliif.models.window import full_window
from stliif.preprocess.mask import clear_fraction
from stliif.render import render, render_series, run_render
from stliif.render.tiles import plan_tiles
from stliif.testing import CountingBaseline, synthetic_cube

AOI = "synthetic-area"
CUBE = {"h": 37, "w": 29, "dates": ("2024-03-01", "2024-03-11", "2024-03-21", "2024-03-31"), "cloud": (0.0, 0.3, 0.1, 0.0)}
TEMPORAL = {"name": "temporal-liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 2}},
    "hidden": [16], "fusion_blocks": 1}}  # fmt: skip
SINGLE = {"name": "liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}}, "hidden": [16, 16]}}  # fmt: skip


def _model(spec: dict, v_mean: str = "add", seed: int = 0) -> ModelPredictor:
    """A small random model whose every layer matters (no zero-initialised output layer)."""
    torch.manual_seed(seed)
    model = make_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ModelPredictor(model, calibration=Calibration(v_mean=v_mean), name="tiny")  # type: ignore[arg-type]


def _cube():
    cube = synthetic_cube(AOI, **CUBE)
    return cube, np.asarray(clear_fraction(cube).values)


def test_tiles_cover_the_grid_once_with_their_halo() -> None:
    tiles = plan_tiles((37, 29), (93, 73), 20, 3)
    seen = np.zeros((93, 73), int)
    for t in tiles:
        seen[t.r0 : t.r1, t.c0 : t.c1] += 1
        assert t.a0 <= max(0, t.r0 * 37 // 93 - 3) and t.a1 >= min(37, -(-t.r1 * 37 // 93) + 3)
    assert (seen == 1).all() and len(tiles) == 5 * 4


@pytest.mark.parametrize("model", ["bicubic", "median", "linear"])
@pytest.mark.parametrize("scale", [4, 2.5, 0.7])
def test_a_tiled_baseline_render_equals_the_one_shot_render(model: str, scale: float) -> None:
    cube, clear = _cube()
    one = render(model, cube, "2024-03-15", scale=scale, clear_fraction=clear, k=3)
    tiled = render(model, cube, "2024-03-15", scale=scale, clear_fraction=clear, k=3, tile=16 if scale > 1 else 8)
    assert np.isnan(one.values).any() and np.isfinite(one.values).any()  # the polygon area: NaN outside
    np.testing.assert_array_equal(np.isnan(tiled.values), np.isnan(one.values))
    assert float(np.nanmax(np.abs(tiled.values - one.values))) <= 1e-5


@pytest.mark.parametrize("spec", [TEMPORAL, SINGLE], ids=["temporal-liif", "liif"])
def test_a_tiled_model_render_equals_the_one_shot_render(spec: dict) -> None:
    """Tiles of 24 px at x3 (8 LR px) with the halo of the model's receptive field, the output's
    V-mean matched over the whole render: the mosaic equals the one-shot render."""
    cube, clear = _cube()
    pred = _model(spec)
    one = render(pred, cube, "2024-03-15", scale=3, clear_fraction=clear)
    tiled = render(pred, cube, "2024-03-15", scale=3, clear_fraction=clear, tile=pred.halo(3) * 3)
    assert len(plan_tiles((37, 29), (111, 87), pred.halo(3) * 3, pred.halo(3))) > 1
    assert float(np.nanstd(one.values)) > 0.005  # a real image, not a constant
    assert float(np.nanmax(np.abs(tiled.values - one.values))) <= 1e-5


@pytest.mark.parametrize("spec", [TEMPORAL, SINGLE], ids=["temporal-liif", "liif"])
def test_the_halo_covers_the_models_receptive_field(spec: dict) -> None:
    """Changing one LR pixel changes the output only within the model's halo of it."""
    pred = _model(spec, v_mean="none", seed=1)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 41, 41, 3), dtype=np.uint8)
    win = full_window((41, 41), (82, 82))
    dates = np.array(["2024-03-01", "2024-03-11", "2024-03-21"], dtype="datetime64[s]")
    base = pred.predict_window(frames, win, dates=dates, target_date=dates[1])
    moved = frames.copy()
    moved[:, 20, 20] = 255 - moved[:, 20, 20]
    diff = np.abs(pred.predict_window(moved, win, dates=dates, target_date=dates[1]) - base).max(axis=-1)
    rows, cols = np.nonzero(diff > 1e-4)
    reach = max(np.abs(win.ys[rows] - 20.5).max(), np.abs(win.xs[cols] - 20.5).max())
    assert 2 < reach <= pred.halo(2), (reach, pred.halo(2))


def test_tiles_smaller_than_their_halo_or_the_budget_are_refused() -> None:
    cube, clear = _cube()
    with pytest.raises(InvalidInputError, match="less than the model's halo"):
        render("median", cube, "2024-03-15", scale=4, clear_fraction=clear, tile=8)
    from stliif.render.tiles import tile_side

    with pytest.raises(InvalidInputError, match="above the budget"):
        tile_side(_model(TEMPORAL), 4, 5, 0.5, (1000, 1000))
    assert tile_side(_model(TEMPORAL), 4, 5, 512, (4000, 4000)) > tile_side(_model(TEMPORAL), 4, 5, 64, (4000, 4000))


def test_a_series_renders_by_tiles_too() -> None:
    cube, clear = _cube()
    dates = ["2024-03-05", "2024-03-20"]
    one = render_series("linear", cube, dates, scale=2, clear_fraction=clear)
    tiled = render_series("linear", cube, dates, scale=2, clear_fraction=clear, tile=12)
    assert tiled.dims == ("time", "band", "y", "x") and tiled.sizes["time"] == 2
    assert float(np.nanmax(np.abs(tiled.values - one.values))) <= 1e-5


def _store(tmp_path: Path):
    from stliif.store import ArtifactStore

    store = ArtifactStore.open(str(tmp_path / "store"))
    store.commit({f"raw/{AOI}": synthetic_cube(AOI, **CUBE)}, stage="import", params={})
    return store


def test_a_store_render_streams_tiles_into_a_cog_with_overviews_and_the_store(tmp_path: Path) -> None:
    store = _store(tmp_path)
    res = run_render(store, AOI, "linear", date="2024-03-15", scale=16, tile=128, out_dir=tmp_path / "out")
    cube, clear = _cube()
    ref = render("linear", cube, "2024-03-15", scale=16, clear_fraction=clear)
    tif = Path(res["files"][0])
    with rasterio.open(tif) as src:
        assert src.overviews(1) and np.isnan(src.nodata) and src.tags()["model"] == "linear"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_allclose(src.read(), ref.values, atol=1e-5)
    ds = store.read(res["path"])
    assert ds["reflectance"].encoding["chunks"] == (4, 128, 128) and res["attrs"]["tiles"] == 5 * 4
    np.testing.assert_allclose(ds["reflectance"].values, ref.values, atol=1e-5)
    assert not list((tmp_path / "out").rglob(".*.partial"))  # the scratch goes once committed



def test_a_store_render_holds_no_whole_cube_its_revisits_are_copied_one_at_a_time(tmp_path: Path) -> None:
    """The plan's cube stays lazy (dask-backed): memory grows with a revisit, not the time series."""
    from stliif.render import check_render
    from stliif.render.tiles import LowRes

    plan = check_render(_store(tmp_path), AOI, "linear", date="2024-03-15", scale=4)
    assert all(plan.cube[v].chunks is not None for v in ("reflectance", "data_mask", "clm"))
    assert plan.cube["reflectance"].chunks[0] == (1,) * len(CUBE["dates"])  # one chunk per revisit
    idx = np.arange(len(CUBE["dates"]))
    copied, held = LowRes(plan.cube, idx, tmp_path / "scratch"), LowRes(_cube()[0], idx)
    np.testing.assert_array_equal(np.asarray(copied.rgb[:]), held.rgb)
    np.testing.assert_array_equal(np.asarray(copied.clear[:]), held.clear)
    np.testing.assert_array_equal(np.asarray(copied.area[:]), held.area)

KILLED = """
import sys, time
from stliif.render import run_render
from stliif.store import ArtifactStore
store = ArtifactStore.open(sys.argv[1])
def slow(done, total):
    print(done, total, flush=True)
    time.sleep(0.1)
run_render(store, "{aoi}", "median", date="2024-03-15", scale=4, tile=16, out_dir=sys.argv[2], on_progress=slow)
"""


def test_a_render_killed_halfway_resumes_from_its_finished_tiles(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED.format(aoi=AOI)), str(tmp_path / "store"), str(out)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    done = total = 0
    for line in proc.stdout:
        done, total = (int(v) for v in line.split())
        if done >= total // 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 0 < done < total
    assert store.version(f"render/{AOI}/median/2024-03-15-x4") is None  # nothing committed
    res = run_render(store, AOI, "median", date="2024-03-15", scale=4, tile=16, out_dir=out)
    assert done <= res["attrs"]["tiles_resumed"] < total == res["attrs"]["tiles"]
    cube, clear = _cube()
    ref = render("median", cube, "2024-03-15", scale=4, clear_fraction=clear)
    np.testing.assert_allclose(store.read(res["path"])["reflectance"].values, ref.values, atol=1e-5)


def test_tiles_spread_over_a_local_dask_cluster_with_the_model_sent_once_per_worker() -> None:
    from distributed import Client, LocalCluster

    cube, clear = _cube()
    ref = render("median", cube, "2024-03-15", scale=4, clear_fraction=clear)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        da = render(CountingBaseline(), cube, "2024-03-15", scale=4, clear_fraction=clear, tile=16, client=client)
        loads = client.run(lambda: __import__("stliif.testing").testing.CountingBaseline.loads)
    assert sorted(loads.values()) == [1, 1]  # each worker unpickled the predictor once, for 48 tiles
    assert float(np.nanmax(np.abs(da.values - ref.values))) <= 1e-5


def test_the_gap_fill_median_is_numpys_nanmedian() -> None:
    from stliif.render.tiles import _nanmedian0

    rng = np.random.default_rng(0)
    for t in (1, 2, 5):
        a = rng.random((t, 500, 3)).astype(np.float32)
        a[rng.random(a.shape) < 0.4] = np.nan
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            ref = np.nanmedian(a, axis=0)
        np.testing.assert_array_equal(_nanmedian0(a), np.where(np.isfinite(ref), ref, 0))


@pytest.mark.parametrize("side", [1000, 40, 7])
def test_pictures_are_decimated_tile_by_tile_like_a_strided_read(side: int) -> None:
    from stliif.render.run import decimated

    final = np.random.default_rng(0).random((2, 3, 93, 71)).astype(np.float32)
    tiles = plan_tiles((31, 24), (93, 71), 20, 2)
    step = -(-93 // side)
    np.testing.assert_array_equal(decimated(final, 1, tiles, side), final[1, :, ::step, ::step])


@pytest.mark.services
def test_stliif_render_killed_halfway_resumes_with_the_same_command(tmp_path: Path) -> None:
    """`stliif render` killed (SIGKILL) after some tiles: the same command resumes from them, says
    so, and writes a COG with overviews and NaN nodata."""
    import os
    import time

    from stliif.store import ArtifactStore

    store = ArtifactStore.open(str(tmp_path / "store"))
    store.commit({"raw/big": synthetic_cube("big", h=160, w=160, dates=CUBE["dates"], cloud=CUBE["cloud"])},
                 stage="import", params={})  # fmt: skip
    record = Path(__file__).resolve().parents[1] / "models" / "record"
    cmd = [str(Path(sys.executable).with_name("stliif")), "render", "--aoi", "big", "--model", str(record),
           "--date", "2024-03-15", "--scale", "4", "--tile", "128", "--store", str(tmp_path / "store"),
           "--out", str(tmp_path / "out")]  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, "PREFECT_HOME": str(tmp_path / "prefect")}
    done = tmp_path / "out" / "big" / "record" / ".2024-03-15-x4.partial" / "done"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while len(list(done.glob("*.json"))) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = len(list(done.glob("*.json")))
    assert 5 <= finished < 25  # 5 x 5 tiles
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"resumed {finished} of 25 tiles" in " ".join(res.stdout.split()), res.stdout
    with rasterio.open(tmp_path / "out" / "big" / "record" / "2024-03-15-x4.tif") as src:
        assert src.overviews(1) and np.isnan(src.nodata) and (src.height, src.width) == (640, 640)
