"""Protocol C on real ETL artifacts (3 AOIs), its scoring, baselines and the model registry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from stliif.errors import CheckpointError, InvalidInputError, NoDataError
from stliif.evaluation import (
    BAND_METRICS,
    CLEAN_METRICS,
    evaluate_protocol,
    load_clean_sample,
    score_clean,
)
from stliif.evaluation.consistency import CONSISTENCY_METRICS
from stliif.metrics import cpsnr, psnr, ssim
from stliif.models.baselines import (
    median_bicubic,
    temporal_linear,
)
from stliif.models.predictor import (
    BASELINE_NAMES,
    PROTOCOLS,
    get_predictor,
    model_name,
    reflectance_to_uint8,
    register_checkpoint_loader,
    uint8_adapter,
    uint8_scale,
)
from stliif.store import ArtifactStore

pytestmark = pytest.mark.integration

TEST_AOIS = ["Amnesty_POI-13-1-1", "Landcover-31746"]
TRAIN_AOIS = ["Landcover-14956"]


def build_eval_store(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A store with the clean ETL artifacts of 3 AOIs and a hand-made ``splits/paper`` manifest
    (2 test AOIs, 1 training AOI); built once per test session, read-only for the tests."""
    from stliif.stages import run_stage

    path = tmp_path_factory.getbasetemp() / "eval-store"
    if (path / "ready").exists():
        return path
    store = ArtifactStore.open(str(path))
    for aoi in TEST_AOIS + TRAIN_AOIS:
        for stage, params in (
            ("import", {}), ("mask", {}), ("pansharpen", {}),
            ("subset", {"mode": "clean", "k": 5}), ("histogram", {"mode": "clean"}),
        ):  # fmt: skip
            assert run_stage(store, stage, aoi, data=data, params=params).status == "committed"
    manifest = {"name": "paper", "train": TRAIN_AOIS, "val": [], "test": TEST_AOIS,
                "rule": "test fixture", "seed": 0}  # fmt: skip
    store.commit({"splits/paper": manifest}, stage="split", params={"fixture": True})
    (path / "ready").write_text("ok")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, worldstrat: Path) -> ArtifactStore:
    return ArtifactStore.open(str(build_eval_store(tmp_path_factory, worldstrat)), create=False)


@pytest.fixture(scope="module")
def sample(store: ArtifactStore):
    return load_clean_sample(store, "Landcover-31746")


@pytest.fixture(scope="module")
def evaluation(store: ArtifactStore):
    return evaluate_protocol(
        "clean", "median", store=store, scales={"x2": 314, "x4": 628}, ssim=False, n_boot=2000
    )


def test_inputs_and_target_are_sane(sample, store: ArtifactStore) -> None:
    f = sample.frames
    assert f.shape == (5, 159, 157, 3) and f.dtype == np.float32 and np.isfinite(f).all()
    assert np.all(np.diff(sample.dates.astype(np.int64)) >= 0) and sample.hr_date is not None
    t = sample.target
    assert t.shape == (1054, 1054, 3) and t.dtype == np.float32
    valid = np.isfinite(t).all(axis=-1)
    assert 0.95 < valid.mean() < 1.0  # the SPOT image has a thin no-data border
    assert np.isnan(t[~valid]).all()
    assert 0.0 <= np.nanmin(t) and np.nanmax(t) < 1.0
    # reflectance-like: the target's V distribution is the composite's
    comp_v = np.nanmax(sample.composite, axis=-1)
    t_v = t[valid].max(axis=-1)
    for q in (10, 50, 90):
        assert np.percentile(t_v, q) == pytest.approx(np.nanpercentile(comp_v, q), abs=0.01)
    # the uint8 scale is a function of the inputs alone
    assert sample.uint8_scale == pytest.approx(float(np.nanmax(sample.composite)))
    assert uint8_scale(sample.frames) == pytest.approx(sample.uint8_scale)
    small = sample.target_at(314)
    assert small.shape == (314, 314, 3) and 0.9 < np.isfinite(small).all(axis=-1).mean() < 1.0
    assert set(sample.versions) == {
        "matched/clean/Landcover-31746", "pansharpened/Landcover-31746", "subset/clean/Landcover-31746",
    }  # fmt: skip
    assert sample.versions["pansharpened/Landcover-31746"] == store.version("pansharpened/Landcover-31746")
    # four bands: the NIR frames and target, in reflectance, NIR's distribution the composite's
    assert sample.nir_frames is not None and sample.nir_frames.shape == f.shape[:3] and np.isfinite(sample.nir_frames).all()
    nt = sample.nir_target
    assert nt is not None and nt.shape == (1054, 1054) and np.array_equal(np.isfinite(nt), valid)
    nir_comp = np.median(sample.nir_frames, axis=0)
    assert np.percentile(nt[valid], 50) == pytest.approx(np.median(nir_comp), abs=0.01)
    assert sample.nir_target_at(314).shape == (314, 314)


def test_clean_protocol_on_two_aois(evaluation) -> None:
    ev = evaluation
    assert ev.protocol == "clean" and ev.model == "median"
    assert ev.aois == TEST_AOIS and ev.scales == ["x2", "x4"]
    assert ev.train_aois == TRAIN_AOIS and ev.notes == []
    assert set(ev.baselines) == set(BASELINE_NAMES)
    assert {"splits/paper", "matched/clean/Landcover-14956", "pansharpened/Amnesty_POI-13-1-1"} <= set(ev.inputs)
    for name, res in ev.baselines.items():
        assert len(res.records) == 4, name
        for r in res.records:
            for m in ("mse", "psnr", "mse_refl", "psnr_refl", "cpsnr_refl"):
                assert math.isfinite(r[m]), (name, r)
            assert math.isnan(r["ssim"]) and math.isnan(r["ssim_refl"])
            assert 15 < r["psnr"] < 35 and 22 < r["psnr_refl"] < 45, (name, r)
            # the bias-corrected, shift-searched PSNR is at least about the plain one
            assert r["cpsnr_refl"] > r["psnr_refl"] - 0.1, (name, r)
            assert 0.95 < r["valid_fraction"] < 1.0
            assert 0 <= r["cons_mae"] < 0.05 and r["improvement"] + r["omission"] + r["hallucination"] == pytest.approx(1)
            assert all(15 < r[f"psnr_refl_{b}"] < 45 for b in ("r", "g", "b", "nir")), (name, r)
            assert 0 <= r["ndvi_mae"] < 0.1 and 0 < r["ndvi_mae_hr"] < 0.5, (name, r)
    # NIR: the colour map predicts R, G, B only: its NIR is the inputs' low frequencies, whose
    # block means are the inputs' (an NDVI consistency limited by its red alone)
    for s in ev.scales:
        assert ev.baselines["median-colour"].values("psnr_refl_nir", s) != ev.result.values("psnr_refl_nir", s)    # the temporal median beats single frames on both AOIs at every scale
    d = ev.deltas["bicubic"]
    for s in ev.scales:
        assert d[s]["psnr"].n == 2 and d[s]["psnr"].mean > 0
        assert d[s]["psnr"].ci_low <= d[s]["psnr"].mean <= d[s]["psnr"].ci_high
        med, bic = ev.result.values("psnr", s), ev.baselines["bicubic"].values("psnr", s)
        assert d[s]["psnr"].deltas == pytest.approx({a: med[a] - bic[a] for a in TEST_AOIS})
    assert "median" not in ev.deltas and set(ev.deltas) == {"bicubic", "median-colour", "linear"}
    doc = ev.to_dict()
    assert doc["metrics"]["Landcover-31746"]["x4"]["ssim"] is None
    assert set(doc["metrics"]["Landcover-31746"]["x4"]) == {*CLEAN_METRICS, *CONSISTENCY_METRICS, *BAND_METRICS}


def test_score_clean_equals_the_metrics_module_when_everything_is_valid() -> None:
    rng = np.random.default_rng(3)
    t = (0.05 + 0.3 * rng.random((40, 36, 3))).astype(np.float32)
    p = (t + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    r = score_clean(p, t, uint8_scale=0.4)
    assert r["psnr_refl"] == pytest.approx(psnr(p, t, data_range=1.0), abs=1e-9)
    assert r["ssim_refl"] == pytest.approx(ssim(p, t, data_range=1.0), abs=1e-9)
    assert r["cpsnr_refl"] == pytest.approx(cpsnr(p, t, data_range=1.0), abs=1e-4)
    p8, t8 = reflectance_to_uint8(p, 0.4), reflectance_to_uint8(t, 0.4)
    assert r["psnr"] == pytest.approx(psnr(p8, t8, data_range=255), abs=1e-9)
    assert r["ssim"] == pytest.approx(ssim(p8, t8, data_range=255), abs=1e-9)
    assert r["valid_fraction"] == 1.0
    # invalid target pixels are left out: a huge error there changes nothing
    t2 = t.copy()
    t2[:, :3] = np.nan
    p2 = p.copy()
    p2[:, :3] = 5.0
    masked = score_clean(p2, t2, uint8_scale=0.4, ssim=False)
    d = (p[:, 3:].astype(np.float64) - t[:, 3:]) ** 2
    assert masked["mse_refl"] == pytest.approx(d.mean())
    # a stack is scored per image and averaged
    stack = score_clean(np.stack([p, t]), t, uint8_scale=0.4, ssim=False, cpsnr=False)
    assert stack["mse_refl"] == pytest.approx(r["mse_refl"] / 2)
    assert reflectance_to_uint8(np.array([0.2, 0.4, 0.5, np.nan]), 0.4).tolist() == [128, 255, 255, 0]
    with pytest.raises(NoDataError):
        score_clean(p, np.full_like(t, np.nan), uint8_scale=0.4)


def test_reflectance_baselines_follow_the_uint8_ones() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, 20, 18, 3), dtype=np.uint8)
    dates = ["2020-01-01", "2020-01-11", "2020-01-21", "2020-02-10"]
    ref = temporal_linear(frames, size=50, dates=dates, target_date="2020-01-14")
    got = temporal_linear(frames.astype(np.float32), size=50, dates=dates, target_date="2020-01-14")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.clip(np.rint(got), 0, 255).astype(np.uint8), ref)
    odd = frames[:3]
    med = median_bicubic(odd.astype(np.float32), size=40)
    ref8 = median_bicubic(odd, size=40).astype(np.float32)
    diff = np.abs(np.clip(med, 0, 255) - ref8)  # Pillow float vs 8-bit (clips between passes)
    assert diff.mean() < 0.5 and diff.max() < 8
    adapted = uint8_adapter(median_bicubic)
    refl = (odd.astype(np.float32) / 500).astype(np.float32)
    out = adapted(refl, size=40)
    assert out.dtype == np.float32 and out.shape == (40, 40, 3)
    top = uint8_scale(refl)
    direct = np.clip(median_bicubic(refl, size=40), 0, top)
    diff = np.abs(out - direct) / (top / 255)  # in uint8 steps
    assert diff.mean() < 1.0 and diff.max() < 16
    with pytest.raises(InvalidInputError, match="dates"):
        temporal_linear(refl, size=10)
    with pytest.raises(InvalidInputError, match="finite"):
        median_bicubic(np.full((2, 12, 12, 3), np.nan, np.float32), size=10)
    with pytest.raises(InvalidInputError, match="uint8 or float"):
        median_bicubic(odd.astype(np.int16), size=10)
    with pytest.raises(InvalidInputError, match="float reflectance"):
        uint8_scale(odd)


def test_model_registry(tmp_path: Path) -> None:
    assert PROTOCOLS == ("paper", "clean")
    assert [model_name(n) for n in ("bicubic", "median_bicubic", "Median-Colour", "temporal_linear")] == [
        "bicubic", "median", "median-colour", "linear",
    ]  # fmt: skip
    with pytest.raises(InvalidInputError, match="no such model 'edsr'"):
        get_predictor("edsr")
    ckpt = tmp_path / "tiny-liif.pt"
    ckpt.write_bytes(b"not yet")
    assert model_name(ckpt) == "tiny-liif"
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        get_predictor(ckpt, protocol="clean")
    with pytest.raises(InvalidInputError, match="colour map"):
        get_predictor("median-colour")
    with pytest.raises(InvalidInputError, match="unknown protocol"):
        get_predictor("median", protocol="nope")

    def loader(path: Path, protocol: str):
        return median_bicubic if path.suffix == ".pt" else None

    from stliif.models import predictor

    register_checkpoint_loader(loader)
    try:
        assert get_predictor(ckpt, protocol="paper") is median_bicubic
    finally:
        predictor._CHECKPOINT_LOADERS.remove(loader)


def test_missing_manifest_and_artifacts_say_what_to_run(tmp_path: Path, store: ArtifactStore) -> None:
    empty = ArtifactStore.open(str(tmp_path / "empty"))
    with pytest.raises(NoDataError, match="splits/paper"):
        evaluate_protocol("clean", "median", store=empty)
    with pytest.raises(NoDataError, match="stliif etl --aoi Landcover-769356"):
        evaluate_protocol("clean", "median", store=store, aois=["Landcover-769356"])
    with pytest.raises(InvalidInputError, match="store"):
        evaluate_protocol("clean", "median")


def test_a_band_target_is_cdf_matched_to_the_composite_band() -> None:
    """match_band_target: the HR band takes the upsampled composite band's distribution, its
    ordering kept, NaN kept."""
    from stliif.evaluation.clean import match_band_target

    rng = np.random.default_rng(0)
    comp = rng.uniform(0.2, 0.4, (8, 8)).astype(np.float32)
    hr = rng.uniform(100, 3000, (32, 32)).astype(np.float32)
    hr[0, :3] = np.nan
    out = match_band_target(hr, comp, np.ones((8, 8), bool))
    ok = np.isfinite(hr)
    assert np.array_equal(np.isfinite(out), ok) and 0.15 < np.nanmin(out) and np.nanmax(out) < 0.45
    order = np.argsort(hr[ok])
    assert np.all(np.diff(out[ok][order]) >= -1e-7)
    assert np.median(out[ok]) == pytest.approx(np.median(comp), abs=0.02)
