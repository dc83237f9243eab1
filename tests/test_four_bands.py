"""Four-band models (R, G, B, NIR = B04, B03, B02, B08): the uint8 view with NIR on its own
scale, calibration that leaves NIR alone, train specs that set the model's channels, and renders
whose NIR is the model's (``nir_source`` ``"model"``), in product and paper mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from stliif.checkpoint import save_checkpoint
from stliif.consistency import degrade
from stliif.errors import InvalidInputError
from stliif.models.calibration import Calibration, match_v_mean
from stliif.models.predictor import (
    band_scales,
    predictor_bands,
    reflectance_to_uint8,
    uint8_adapter,
    uint8_scale,
)
from stliif.models.registry import make_model
from stliif.render import render, run_render
from stliif.render.request import NIR_SOURCE, RGBN_BANDS, nir_text
from stliif.train import TrainSpec
from tests.test_render_product import DATE, _target
from tests.test_render_tiles import AOI, TEMPORAL, _cube, _model, _store

FOUR = {"name": TEMPORAL["name"], "args": {**TEMPORAL["args"], "in_channels": 4, "out_channels": 4}}


def _reflectance(seed: int = 0) -> np.ndarray:
    """(T, H, W, 4) reflectance whose NIR is brighter than R, G, B (vegetation)."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.02, 0.12, size=(5, 9, 8, 4)).astype(np.float32)
    f[..., 3] += 0.3
    return f


def test_nir_has_its_own_uint8_scale_and_rgb_keeps_theirs() -> None:
    f = _reflectance()
    scales = band_scales(f)
    assert scales[0] == scales[1] == scales[2] == uint8_scale(f[..., :3]) and scales[3] == uint8_scale(f[..., 3:])
    u = reflectance_to_uint8(f, scales)
    np.testing.assert_array_equal(u[..., :3], reflectance_to_uint8(f[..., :3], scales[0]))
    assert np.median(u[..., 3], axis=0).max() == 255  # NIR at its own scale: used, not clipped
    assert (reflectance_to_uint8(f, scales[0])[..., 3] == 255).mean() > 0.9  # at R, G, B's it would clip
    with pytest.raises(InvalidInputError, match="positive"):
        reflectance_to_uint8(f, np.array([0.1, 0.1, 0.0, 0.4]))


def test_the_uint8_adapter_gives_a_four_band_model_per_band_scales() -> None:
    f = _reflectance()
    seen = {}

    def model(frames, *, size, dates=None, target_date=None):
        seen["frames"] = frames
        return np.full((size, size, frames.shape[-1]), 255, np.uint8)  # the brightest of each band

    model.bands = 4  # type: ignore[attr-defined]
    adapted = uint8_adapter(model)
    assert predictor_bands(adapted) == 4 and predictor_bands(lambda *a, **k: None) == 3
    out = adapted(f, size=6)
    np.testing.assert_array_equal(seen["frames"], reflectance_to_uint8(f, band_scales(f)))
    np.testing.assert_allclose(out[0, 0], band_scales(f).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("mode", ["add", "mul"])
def test_v_mean_and_the_blend_act_on_rgb_and_leave_nir(mode: str) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(40, 200, size=(5, 12, 10, 4), dtype=np.uint8)
    img = rng.uniform(20, 120, size=(30, 25, 4))
    out = match_v_mean(img, frames, mode)  # type: ignore[arg-type]
    assert out[..., :3].max(axis=-1).mean() == pytest.approx(frames[..., :3].max(axis=-1).mean(), rel=1e-12)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])
    np.testing.assert_array_equal(out[..., :3], match_v_mean(img[..., :3], frames[..., :3], mode))  # type: ignore[arg-type]
    from stliif.models.baselines import ColourMap

    cmap = ColourMap(np.hstack([np.eye(3), np.full((3, 1), 5.0)]))
    blended = Calibration(weight=0.5, colour_map=cmap).apply(img, frames)
    np.testing.assert_array_equal(blended[..., 3], img[..., 3])
    np.testing.assert_allclose(blended[..., :3], Calibration(weight=0.5, colour_map=cmap).apply(img[..., :3], frames[..., :3]))


def test_a_four_band_spec_sets_the_models_channels_and_needs_the_store() -> None:
    spec = TrainSpec(source="store", bands=4)
    assert spec.model["args"]["in_channels"] == spec.model["args"]["out_channels"] == 4
    assert "in_channels" not in TrainSpec(source="store").model["args"]  # RGB: the model's default
    with pytest.raises(ValueError, match="need source"):  # pydantic wraps the InvalidInputError
        TrainSpec(bands=4)
    with pytest.raises(ValueError, match="in_channels 4"):
        TrainSpec(source="store", bands=4, model={"name": "temporal-liif", "args": {"in_channels": 3}})
    with pytest.raises(ValueError, match="RGB fits"):
        TrainSpec(source="store", bands=4, init_colour=True)
    with pytest.raises(ValueError, match="Input should be 3 or 4"):
        TrainSpec(bands=5)  # refused as a value, not as "four bands without the store"


def test_a_four_band_model_renders_its_own_nir_in_both_modes() -> None:
    cube, clear = _cube()
    pred = _model(FOUR)
    assert predictor_bands(pred) == 4
    out = render(pred, cube, DATE, scale=4, clear_fraction=clear)
    paper = render(pred, cube, DATE, scale=4, clear_fraction=clear, mode="paper")
    rgb = render(_model(TEMPORAL), cube, DATE, scale=4, clear_fraction=clear)
    for da in (out, paper):
        assert da["band"].values.tolist() == list(RGBN_BANDS) and da.attrs["nir_source"] == "model"
    assert rgb.attrs["nir_source"] == NIR_SOURCE
    assert "model's own" in nir_text(out.attrs["nir_source"]) and nir_text(NIR_SOURCE) == NIR_SOURCE  # what the CLI and card say
    # product mode: every band, NIR included, averages back to the inputs interpolated in time
    target = _target(cube, out.attrs)
    deg = degrade(out.values.transpose(1, 2, 0), target.shape[:2])
    whole = degrade(np.isfinite(out.values[0]).astype(float), target.shape[:2])[..., 0] == 1  # every member inside the polygon
    ok = whole & np.isfinite(target).all(axis=2)
    assert np.abs(deg[ok] - target[ok]).max() <= 1e-5 and out.attrs["consistency_mae"] <= 1e-6
    # the NIR has detail of the model's (an RGB model's NIR is the inputs' low frequencies only)
    def detail(nir: np.ndarray) -> np.ndarray:
        low = np.repeat(np.repeat(degrade(nir[..., None], target.shape[:2])[..., 0], 4, 0), 4, 1)
        return nir - low

    mine, rule = detail(out.values[3]), detail(rgb.values[3])
    both = np.isfinite(mine) & np.isfinite(rule)
    assert np.abs(mine[both] - rule[both]).mean() > 1e-3
    hp_paper = detail(paper.values[3])
    ok = both & np.isfinite(hp_paper)
    assert np.corrcoef(mine[ok], hp_paper[ok])[0, 1] > 0.7  # product keeps the model's NIR detail


def test_a_four_band_checkpoint_renders_through_the_store_into_a_four_band_cog(tmp_path: Path) -> None:
    store = _store(tmp_path)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "four.pt", make_model(FOUR))
    res = run_render(store, AOI, tmp_path / "four.pt", date=DATE, scale=4, tile=64, out_dir=tmp_path / "out")
    with rasterio.open(res["files"][0]) as src:
        assert src.count == 4 and src.descriptions == RGBN_BANDS
        assert src.tags()["nir_source"] == "model" and src.tags(4)["source"] == "model"
        nir = src.read(4)
    cube, clear = _cube()
    one = render(tmp_path / "four.pt", cube, DATE, scale=4, clear_fraction=clear)
    np.testing.assert_allclose(nir, one.values[3], atol=1e-5, equal_nan=True)  # tiled, streamed: the same
    no_nir = cube.sel(band=["B04", "B03", "B02"])
    with pytest.raises(InvalidInputError, match="no B08"):
        render(tmp_path / "four.pt", no_nir, DATE, scale=4)


def test_protocol_p_refuses_a_four_band_model_in_one_line(tmp_path: Path) -> None:
    from stliif.evaluation.paper import evaluate_paper

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "four.pt", make_model(FOUR))
    from stliif.models.predictor import get_predictor

    with pytest.raises(InvalidInputError, match="protocol P's files are RGB"):
        evaluate_paper(get_predictor(tmp_path / "four.pt"), tmp_path / "no-data-needed", aois=["Landcover-31746"])
