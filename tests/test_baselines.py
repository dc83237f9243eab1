"""Interpolation baselines: Pillow-exact resampling, median, colour map, temporal interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stliif.errors import InvalidInputError
from stliif.models.baselines import (
    BASELINES,
    ColourMap,
    median_bicubic,
    median_colour_bicubic,
    per_frame_bicubic,
    resize,
    temporal_linear,
    temporal_median,
)


@pytest.fixture
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(20, 200, (5, 13, 11, 3), dtype=np.uint8)


def test_resize_is_pillow_bicubic_and_size_order(frames):
    out = resize(frames[0], (17, 23))
    assert out.shape == (17, 23, 3) and out.dtype == np.uint8
    ref = np.asarray(Image.fromarray(frames[0]).resize((23, 17), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out, ref)
    f = resize(frames[0].astype(np.float64), 20)
    assert f.shape == (20, 20, 3) and f.dtype == np.float32
    # float path and 8-bit path agree up to Pillow's 8-bit rounding
    assert np.abs(f - resize(frames[0], 20).astype(np.float32)).max() <= 1.0
    with pytest.raises(InvalidInputError):
        resize(frames[0], 0)
    with pytest.raises(InvalidInputError):
        resize(frames[0], 8, resample="cubic")  # type: ignore[arg-type]


def test_per_frame_bicubic_upsamples_each_frame_alone(frames):
    out = per_frame_bicubic(frames, size=31)
    assert out.shape == (5, 31, 31, 3) and out.dtype == np.uint8
    for i, frame in enumerate(frames):
        ref = Image.fromarray(frame).resize((31, 31), Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(out[i], np.asarray(ref))


def test_temporal_median_rejects_outlier_frame(frames):
    stack = np.repeat(frames[:1], 5, axis=0)
    stack[2] = 255  # one fully clouded revisit
    np.testing.assert_array_equal(temporal_median(stack), frames[0])
    np.testing.assert_array_equal(median_bicubic(stack, size=29), resize(frames[0], 29))
    # even T: mean of the two middle values, resampled in float
    even = np.stack([frames[0], frames[0] + 1, frames[0] + 3, frames[0] + 10])
    np.testing.assert_array_equal(temporal_median(even), frames[0] + 2.0)
    out = median_bicubic(even, size=(9, 7))
    assert out.shape == (9, 7, 3) and out.dtype == np.uint8


def test_frames_validation(frames):
    with pytest.raises(InvalidInputError, match="uint8 or float"):
        median_bicubic(frames.astype(np.int32), size=20)
    with pytest.raises(InvalidInputError, match="finite"):
        median_bicubic(np.where(frames > 100, np.nan, frames).astype(np.float32), size=20)
    with pytest.raises(InvalidInputError):
        per_frame_bicubic(frames[0], size=20)


def test_one_family_by_dtype(frames):
    """uint8 frames give uint8 outputs; float frames give float32 outputs of the same rule, unrounded."""
    f32 = frames.astype(np.float32)
    dates = [f"2020-01-{1 + 3 * i:02d}" for i in range(len(frames))]
    for fn in (per_frame_bicubic, median_bicubic, temporal_linear):
        u8 = fn(frames, size=33, dates=dates, target_date="2020-01-05")
        fl = fn(f32, size=33, dates=dates, target_date="2020-01-05")
        assert u8.dtype == np.uint8 and fl.dtype == np.float32 and u8.shape == fl.shape
        assert not np.array_equal(fl, np.rint(fl))  # float outputs are not rounded
        # the same rule: within Pillow's 8-bit vs float resampling differences
        assert np.abs(np.clip(fl, 0, 255) - u8).mean() < 1.0


def test_colour_map_fit_recovers_known_affine(frames):
    a = np.array([[0.9, 0.1, 0.0, 5.0], [0.0, 0.8, 0.1, 10.0], [0.05, 0.0, 0.7, 20.0]])
    rng = np.random.default_rng(5)
    samples = []
    for _ in range(3):
        f = rng.integers(20, 200, (3, 40, 30, 3), dtype=np.uint8)
        med = np.median(f, axis=0)
        target = np.clip(np.rint(med @ a[:, :3].T + a[:, 3]), 0, 255).astype(np.uint8)
        samples.append((f, target))  # target already on the LR grid: downsampling is identity
    cmap = ColourMap.fit(samples)
    assert cmap.matrix.shape == (3, 4)
    np.testing.assert_allclose(cmap.matrix[:, :3], a[:, :3], atol=0.005)
    np.testing.assert_allclose(cmap.matrix[:, 3], a[:, 3], atol=0.1)
    assert cmap.n_pixels == 3 * 40 * 30
    # the bound predictor is median -> map -> bicubic
    out = cmap.predictor()(frames, size=26)
    ref = median_colour_bicubic(frames, size=26, colour_map=cmap)
    np.testing.assert_array_equal(out, ref)
    assert out.shape == (26, 26, 3) and out.dtype == np.uint8


def test_colour_map_apply_identity_and_serialisation(frames):
    cmap = ColourMap(np.array([[2.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, -3]]))
    np.testing.assert_allclose(cmap.apply(np.array([10.0, 20.0, 30.0])), [21.0, 20.0, -3.0])
    assert ColourMap.from_dict(cmap.to_dict()) == cmap
    ident = ColourMap.identity()
    diff = median_colour_bicubic(frames, size=30, colour_map=ident).astype(int) - median_bicubic(
        frames, size=30
    )
    assert np.abs(diff).max() <= 1  # same pipeline up to 8-bit vs float rounding
    with pytest.raises(InvalidInputError):
        ColourMap(np.eye(3))
    with pytest.raises(InvalidInputError):
        ColourMap.fit([])
    with pytest.raises(InvalidInputError):
        ident.apply(np.zeros((2, 2, 4)))


def test_temporal_linear_interpolates_between_bracketing_dates():
    f = np.zeros((3, 12, 12, 3), np.uint8)
    f[1] = 100
    f[2] = 200
    dates = ["2020-01-01", "2020-01-11", "2020-01-31"]
    out = temporal_linear(f, size=24, dates=dates, target_date="2020-01-04")
    assert out.shape == (24, 24, 3)
    np.testing.assert_array_equal(out, 30)  # 0.7 * 0 + 0.3 * 100
    np.testing.assert_array_equal(
        temporal_linear(f, size=24, dates=dates, target_date=np.datetime64("2020-01-16")), 125
    )
    np.testing.assert_array_equal(temporal_linear(f, size=24, dates=dates, target_date="2020-01-11"), 100)
    # constant extrapolation outside the date range, dates in any order
    np.testing.assert_array_equal(
        temporal_linear(f[::-1], size=24, dates=dates[::-1], target_date="2019-06-01"), 0
    )
    np.testing.assert_array_equal(temporal_linear(f, size=24, dates=dates, target_date="2021-01-01"), 200)
    # frames sharing a date are averaged; bilinear is accepted
    dup = np.stack([f[0], f[1], f[2]])
    out = temporal_linear(
        dup, size=(6, 8), dates=["2020-01-01", "2020-01-01", "2020-01-03"], target_date="2020-01-02",
        resample="bilinear",
    )  # fmt: skip
    np.testing.assert_array_equal(out, 125)  # mean(0, 100) = 50 blended halfway with 200
    assert out.shape == (6, 8, 3)


def test_temporal_linear_argument_errors(frames):
    with pytest.raises(InvalidInputError):
        temporal_linear(frames, size=20)
    with pytest.raises(InvalidInputError):
        temporal_linear(frames, size=20, dates=["2020-01-01"] * 4, target_date="2020-01-01")
    with pytest.raises(InvalidInputError):
        temporal_linear(frames, size=20, dates=["2020-01-01"] * 5, target_date="not a date")


def test_baselines_share_the_predictor_call_shape(frames):
    dates = [np.datetime64("2020-01-01") + np.timedelta64(5 * i, "D") for i in range(5)]
    for name, predict in BASELINES.items():
        out = predict(frames, size=33, dates=dates, target_date=np.datetime64("2020-01-08"))
        assert out.dtype == np.uint8, name
        assert out.shape[-3:] == (33, 33, 3), name
