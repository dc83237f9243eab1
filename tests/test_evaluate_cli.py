"""``stliif evaluate``: tables, JSON, saved predictions that re-score identically, reports, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stliif.evaluation import (
    BAND_METRICS,
    load_clean_sample,
    load_paper_sample,
    score_clean,
    score_image,
)
from stliif.evaluation.consistency import CONSISTENCY_METRICS
from stliif.store import ArtifactStore
from stliif_cli.main import app
from tests.test_evaluate_clean import build_eval_store

pytestmark = pytest.mark.integration


runner = CliRunner()
P_AOIS = ["Landcover-31746", "UNHCR-7977"]


def _run(*args: str):
    return runner.invoke(app, ["evaluate", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, worldstrat: Path) -> Path:
    return build_eval_store(tmp_path_factory, worldstrat)


def test_paper_bicubic_json_predictions_and_report(worldstrat: Path, tmp_path: Path) -> None:
    preds, js, rep = tmp_path / "preds", tmp_path / "m.json", tmp_path / "report"
    args = ["--protocol", "paper", "--model", "bicubic", "--data", str(worldstrat), "--no-ssim",
            "--scale", "x2", "--scale", "x4",
            "--save-predictions", str(preds), "--json", str(js), "--report", str(rep)]  # fmt: skip
    for a in P_AOIS:
        args += ["--aoi", a]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert "mean" in res.output and "paired per-AOI deltas" in res.output
    doc = json.loads(js.read_text())
    assert doc["protocol"] == "paper" and doc["model"] == "bicubic" and doc["aois"] == P_AOIS
    assert doc["scales"] == {"x2": 314, "x4": 628}
    assert set(doc["metrics"]) == set(P_AOIS)
    for a in P_AOIS:
        for s in ("x2", "x4"):
            rec = doc["metrics"][a][s]
            assert set(rec) == {"mse", "psnr", "ssim", *CONSISTENCY_METRICS} and rec["ssim"] is None
            assert 0 < rec["cons_mae"] < 0.1 and rec["improvement"] + rec["omission"] + rec["hallucination"] == pytest.approx(1)
    assert set(doc["means"]) == {"x2", "x4"}
    assert set(doc["baselines"]) == {"bicubic", "median", "median-colour", "linear"}
    assert set(doc["deltas"]) == {"median", "median-colour", "linear"}
    d = doc["deltas"]["median"]["x2"]["psnr"]
    assert {"mean", "ci_low", "ci_high", "n", "per_aoi"} <= set(d) and d["n"] == 2
    # the regression anchor: the study's per-frame bicubic rows
    assert doc["metrics"]["Landcover-31746"]["x2"]["psnr"] == pytest.approx(24.97, abs=0.005)
    assert doc["metrics"]["UNHCR-7977"]["x4"]["psnr"] == pytest.approx(21.46, abs=0.005)
    # per-frame bicubic saves its 5 scored frames; re-scored they give the reported numbers
    for a in P_AOIS:
        sample = load_paper_sample(worldstrat, a)
        for s, size in doc["scales"].items():
            files = sorted(preds.glob(f"{a}_{s}_frame*.png"))
            assert len(files) == 5
            stack = np.stack([np.asarray(Image.open(f)) for f in files])
            again = score_image(stack, sample.target_at(size), ssim=False)
            assert again["psnr"] == pytest.approx(doc["metrics"][a][s]["psnr"], abs=1e-9)
            assert again["mse"] == pytest.approx(doc["metrics"][a][s]["mse"], abs=1e-9)
    text = (rep / "report.md").read_text()
    assert "stliif evaluate --protocol paper --model bicubic" in text
    assert "psnr_per_aoi.png" in text and "crops_UNHCR-7977.png" in text
    for f in ("psnr_per_aoi.png", "crops_Landcover-31746.png", "crops_UNHCR-7977.png"):
        with Image.open(rep / f) as im:
            assert im.size[0] > 300
    assert "Definitions" in text and "10 log10(255^2 / MSE)" in text
    assert "hallucination (opensr-test)" in text and "opensr-test's definitions" in text


def test_paper_model_png_rescores(worldstrat: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    res = _run("--protocol", "paper", "--model", "median-colour", "--data", str(worldstrat),
               "--aoi", "Landcover-31746", "--scale", "x4", "--save-predictions", str(preds),
               "--json", str(tmp_path / "m.json"))  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "m.json").read_text())
    assert list(doc["scales"]) == ["x4"] and 0 < doc["metrics"]["Landcover-31746"]["x4"]["ssim"] < 1
    img = np.asarray(Image.open(preds / "Landcover-31746_x4.png"))
    assert img.shape == (628, 628, 3) and img.dtype == np.uint8
    again = score_image(img, load_paper_sample(worldstrat, "Landcover-31746").target_at(628))
    for m in ("psnr", "ssim", "mse"):
        assert again[m] == pytest.approx(doc["metrics"]["Landcover-31746"]["x4"][m], abs=1e-9)
    assert doc["notes"] == []


def test_clean_geotiffs_rescore(store_path: Path, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    preds, js = tmp_path / "preds", tmp_path / "c.json"
    res = _run("--protocol", "clean", "--model", "median", "--store", str(store_path),
               "--scale", "x2", "--no-ssim", "--save-predictions", str(preds), "--json", str(js))  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(js.read_text())
    assert doc["aois"] == ["Amnesty_POI-13-1-1", "Landcover-31746"]
    assert doc["train_aois"] == ["Landcover-14956"]
    rec = doc["metrics"]["Landcover-31746"]["x2"]
    assert set(rec) == {"mse", "psnr", "ssim", "mse_refl", "psnr_refl", "ssim_refl", "cpsnr_refl", *CONSISTENCY_METRICS,
                        *BAND_METRICS}  # fmt: skip
    assert 0 <= rec["hallucination"] <= 1 and rec["cons_mae"] >= 0
    assert rec["psnr_refl_nir"] > 15 and 0 <= rec["ndvi_mae"] < 0.1  # four bands: NIR scored, NDVI consistency
    store = ArtifactStore.open(str(store_path), create=False)
    sample = load_clean_sample(store, "Landcover-31746")
    with rasterio.open(preds / "Landcover-31746_x2.tif") as src:
        assert src.count == 3 and src.dtypes[0] == "float32" and (src.width, src.height) == (314, 314)
        assert src.crs.to_epsg() == 4326
        assert src.transform.almost_equals(from_bounds(*sample.bounds, 314, 314))
        img = np.moveaxis(src.read(), 0, -1)
        scale = float(src.tags()["uint8_scale"])
    assert scale == sample.uint8_scale
    again = score_clean(img, sample.target_at(314), uint8_scale=scale, ssim=False)
    for m in ("psnr", "mse", "psnr_refl", "mse_refl", "cpsnr_refl"):
        assert again[m] == pytest.approx(rec[m], rel=1e-12, abs=1e-12), m


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "edsr"], "no such model 'edsr'"),
        (["--protocol", "nope"], "Invalid value for '--protocol'"),
        (["--scale", "x3"], "unknown scales ['x3']"),
        (["--protocol", "clean", "--store", "/nonexistent/store"], "no store at '/nonexistent/store'"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], message: str, worldstrat: Path) -> None:
    res = runner.invoke(app, ["evaluate", "--data", str(worldstrat), *args])
    assert res.exit_code == 2
    assert message in " ".join((res.output).split())
    assert "Traceback" not in res.output


def test_corrupted_checkpoint_is_one_clear_error(tmp_path: Path, worldstrat: Path) -> None:
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    res = runner.invoke(app, ["evaluate", "--data", str(worldstrat), "--model", str(ckpt), "--aoi", "Landcover-31746"])
    assert res.exit_code == 2 and "not a readable checkpoint" in " ".join(res.output.split())
    assert "Traceback" not in res.output


@pytest.mark.services  # the CLI starts its Prefect server
def test_commit_runs_the_evaluate_flow(worldstrat: Path, tmp_path: Path) -> None:
    """``--commit`` goes through the evaluate flow: metrics in the store, a rerun commits nothing."""
    import os
    import subprocess
    import sys

    store = tmp_path / "store"
    args = [str(Path(sys.executable).with_name("stliif")), "evaluate", "--protocol", "paper",
            "--model", "median", "--data", str(worldstrat), "--store", str(store), "--no-ssim",
            "--scale", "x2", "--aoi", P_AOIS[0], "--aoi", P_AOIS[1], "--commit"]  # fmt: skip
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    bad = subprocess.run([*args, "--report", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "drop --ref, --save-predictions and --report" in bad.stderr
    assert not store.exists()  # refused before anything was created
    first = subprocess.run([*args, "--json", str(tmp_path / "m.json")], capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "committed metrics/median/paper" in " ".join(first.stdout.split())
    st = ArtifactStore.open(str(store), create=False)
    n_commits = len(st.log())
    doc = st.read_json("metrics/median/paper")
    assert doc["evaluation"]["aois"] == P_AOIS and "median" in doc["report"]
    assert json.loads((tmp_path / "m.json").read_text())["means"] == doc["evaluation"]["means"]
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "unchanged metrics/median/paper" in " ".join(again.stdout.split())
    assert len(ArtifactStore.open(str(store), create=False).log()) == n_commits
