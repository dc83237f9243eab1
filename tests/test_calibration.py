"""Output calibration: the V-mean match, the blend with median + colour map, and its storage in
checkpoints (kept by the predictor, never fitted on test AOIs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from stliif.checkpoint import load_checkpoint, save_checkpoint
from stliif.errors import CheckpointError, InvalidInputError
from stliif.evaluation import PAPER_TEST_AOIS, load_paper_samples
from stliif.models.baselines import ColourMap, resize, temporal_median
from stliif.models.calibration import Calibration, fit_offset, match_v_mean
from stliif.models.inference import ModelPredictor
from stliif.models.registry import make_model
from stliif.train import calibrate

TINY = {"name": "temporal-liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}},
    "hidden": [16], "fusion_blocks": 0}}  # fmt: skip
TRAIN_AOIS = ["Landcover-14956", "UNHCR-CODs026828"]


def _frames(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, size=(5, 12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["add", "mul"])
def test_v_mean_match_reaches_the_inputs_mean_of_v(mode: str) -> None:
    frames = _frames()
    img = np.random.default_rng(1).uniform(20, 120, size=(30, 25, 3))
    out = match_v_mean(img, frames, mode)  # type: ignore[arg-type]
    assert out.max(axis=-1).mean() == pytest.approx(frames.max(axis=-1).mean(), rel=1e-12)
    if mode == "mul":  # one gain: hue and saturation kept (channel ratios unchanged)
        np.testing.assert_allclose(out[..., 0] / out[..., 1], img[..., 0] / img[..., 1])
    else:  # one offset for every channel
        np.testing.assert_allclose(out - img, np.full_like(img, (out - img)[0, 0, 0]))
    np.testing.assert_array_equal(match_v_mean(img, frames, "none"), img)
    with pytest.raises(InvalidInputError):
        match_v_mean(img, frames, "cdf")  # type: ignore[arg-type]


def test_blend_weights_the_model_against_median_colour() -> None:
    frames = _frames()
    cmap = ColourMap(np.array([[0.9, 0.1, 0, 5], [0, 1.1, 0, -3], [0, 0, 0.8, 10]]))
    img = np.random.default_rng(2).uniform(0, 255, size=(24, 20, 3))
    base = resize(cmap.apply(temporal_median(frames)), (24, 20))
    np.testing.assert_allclose(Calibration().apply(img, frames), img)
    np.testing.assert_allclose(Calibration(weight=0.0, colour_map=cmap).apply(img, frames), base)
    mix = Calibration(weight=0.3, colour_map=cmap).apply(img, frames)
    np.testing.assert_allclose(mix, 0.3 * img + 0.7 * base)
    both = Calibration(weight=0.3, colour_map=cmap, v_mean="add")
    np.testing.assert_allclose(both.apply(img, frames), match_v_mean(mix, frames, "add"))
    assert Calibration.from_dict(both.to_dict()) == both
    with pytest.raises(InvalidInputError, match="colour map"):
        Calibration(weight=0.5)
    with pytest.raises(InvalidInputError, match="weight"):
        Calibration(weight=1.5, colour_map=cmap)


def test_calibration_is_stored_in_the_checkpoint_and_applied_by_the_predictor(worldstrat, tmp_path) -> None:
    torch.manual_seed(0)
    model = make_model(TINY)
    path = tmp_path / "best.pt"
    opt = torch.optim.Adam(model.parameters())
    data = {"root": str(worldstrat), "train_aois": TRAIN_AOIS}
    save_checkpoint(path, model, train_spec={"lr": 1e-3}, data=data, optimizer=opt, step=3, extra={"a": 1})
    raw = ModelPredictor.from_checkpoint(path)
    assert raw.calibration is None
    cal = calibrate(path, weight=0.4, v_mean="add")
    ck = load_checkpoint(path)  # the rest of the checkpoint is kept
    assert ck.step == 3 and ck.extra["a"] == 1 and ck.optimizer is not None and ck.data == data
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ck.state_dict[k], v)
    samples = load_paper_samples(worldstrat, TRAIN_AOIS)
    assert cal.colour_map == ColourMap.fit((s.frames, s.target) for s in samples.values())
    sample = next(iter(load_paper_samples(worldstrat, ["Landcover-8732"]).values()))
    pred = ModelPredictor.from_checkpoint(path)
    assert pred.calibration == cal
    got = pred(sample.frames, size=48).astype(np.float64)
    want = cal.apply(raw(sample.frames, size=48).astype(np.float64), sample.frames)
    assert np.abs(got - want).max() <= 1.0  # raw output rounded before its calibration here
    assert abs(got.max(axis=-1).mean() - sample.frames.max(axis=-1).mean()) < 1.0


def test_calibration_refuses_test_aois_and_runs_without_training_aois(worldstrat, tmp_path) -> None:
    model = make_model(TINY)
    for name, data in (("test.pt", {"train_aois": [PAPER_TEST_AOIS[0]]}), ("none.pt", {})):
        save_checkpoint(tmp_path / name, model, data=data)
    with pytest.raises(InvalidInputError, match="test AOIs"):
        calibrate(tmp_path / "test.pt", weight=0.5, v_mean="add", data=worldstrat)
    with pytest.raises(CheckpointError, match="training AOIs"):
        calibrate(tmp_path / "none.pt", weight=0.5, v_mean="add", data=worldstrat)
    assert "calibration" not in load_checkpoint(tmp_path / "test.pt").extra


def test_renders_keep_the_v_mean_match_but_not_the_blend(tmp_path) -> None:
    from stliif.checkpoint import update_extra
    from stliif.models.predictor import get_predictor
    from stliif.render import load_predictor

    path = save_checkpoint(tmp_path / "m.pt", make_model(TINY))
    cal = Calibration(weight=0.4, colour_map=ColourMap.identity(), v_mean="add")
    update_extra(path, calibration=cal.to_dict())
    assert get_predictor(path).calibration == cal  # evaluation: the whole calibration
    assert load_predictor(path).calibration == Calibration(weight=1.0, colour_map=cal.colour_map, v_mean="add")
    update_extra(path, calibration=dataclasses.replace(cal, offset=(0.4, 0.3)).to_dict())
    assert get_predictor(path).calibration.offset == (0.4, 0.3)  # P: the study's target grid
    assert load_predictor(path).calibration.offset == (0.0, 0.0)  # renders: the inputs' grid
    assert get_predictor(path, protocol="clean").__wrapped__.calibration.offset == (0.0, 0.0)


def test_resize_offset_moves_the_sampling_grid() -> None:
    img = np.random.default_rng(3).uniform(0, 255, size=(20, 16, 3)).astype(np.float32)
    plain = resize(img, (60, 48))
    np.testing.assert_array_equal(resize(img, (60, 48), offset=(0.0, 0.0)), plain)
    moved = resize(img, (60, 48), offset=(1.0, -2.0))  # 1 input px = 3 output px
    np.testing.assert_allclose(moved[10:50, 12:40], plain[13:53, 6:34], atol=1e-3)
    assert resize(img.astype(np.uint8), 40, offset=(0.5, 0.5)).dtype == np.uint8


def test_fit_offset_recovers_a_known_grid_offset() -> None:
    rng = np.random.default_rng(4)
    pairs = []
    for _ in range(3):
        lr = resize(rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8), 24)  # smooth LR scene
        target = resize(lr.astype(np.float32), 72, offset=(0.5, -0.3))
        pairs.append((np.repeat(lr[None], 3, axis=0), target))
    assert fit_offset(pairs, size=72, span=1.0) == pytest.approx((0.5, -0.3), abs=1e-6)
    with pytest.raises(InvalidInputError):
        fit_offset([])


def test_predictor_queries_the_model_at_the_offset(tmp_path) -> None:
    torch.manual_seed(0)
    frames = _frames()  # (5, 12, 10, 3)
    model = make_model(TINY)
    plain = ModelPredictor(model)(frames, size=(24, 20)).astype(int)
    moved = ModelPredictor(model, calibration=Calibration(offset=(1.0, 0.0)))(frames, size=(24, 20)).astype(int)
    assert np.abs(moved[2:20] - plain[4:22]).max() <= 1  # 1 input row = 2 output rows
    assert np.abs(moved - plain).max() > 1
    cal = Calibration(weight=0.4, colour_map=ColourMap.identity(), v_mean="add", offset=(0.3, -0.2))
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert Calibration.from_dict({"weight": 1.0}).offset == (0.0, 0.0)  # stored before offsets


def test_calibrate_fits_the_offset_on_training_aois_or_keeps_the_trained_one(worldstrat, tmp_path) -> None:
    model = make_model(TINY)
    data = {"root": str(worldstrat), "train_aois": TRAIN_AOIS[:1]}
    path = save_checkpoint(tmp_path / "a.pt", model, data=data)
    cal = calibrate(path, weight=1.0, v_mean="add", offset=True)
    sample = load_paper_samples(worldstrat, TRAIN_AOIS[:1])[TRAIN_AOIS[0]]
    cmap = ColourMap.fit([(sample.frames, sample.target)])
    assert cal.offset == fit_offset([(sample.frames, sample.target)], cmap) != (0.0, 0.0)
    assert ModelPredictor.from_checkpoint(path).calibration.offset == cal.offset
    trained = save_checkpoint(tmp_path / "b.pt", model, data=data, extra={"target_offset": [0.25, -0.1]})
    assert calibrate(trained, weight=1.0, v_mean="add").offset == (0.25, -0.1)  # trained registration kept
