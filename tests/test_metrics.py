"""Metrics: hand-computed values on tiny arrays and agreement with scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stliif.errors import InvalidInputError
from stliif.metrics import cpsnr, mse, psnr, sam, ssim


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 256, (40, 37, 3), dtype=np.uint8)
    noise = rng.normal(0, 12, target.shape)
    pred = np.clip(target + noise, 0, 255).astype(np.uint8)
    return pred, target


def test_mse_hand_value():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert mse(a, np.zeros_like(a)) == pytest.approx(3.5)
    assert mse(a, a) == 0.0


def test_psnr_hand_values_and_no_uint8_overflow():
    zero = np.zeros((4, 4, 3), np.uint8)
    full = np.full((4, 4, 3), 255, np.uint8)
    assert psnr(zero, full, data_range=255) == pytest.approx(0.0, abs=1e-12)
    one = np.ones((4, 4, 3), np.uint8)
    assert psnr(one, zero, data_range=255) == pytest.approx(20 * math.log10(255))  # 48.1308 dB
    assert mse(zero, full) == 255.0**2  # would be 1 with uint8 wrap-around
    assert psnr(full, full, data_range=255) == math.inf
    # one channel off by 3 in one pixel of a 2x2x3 image: MSE = 9 / 12
    b = zero[:2, :2].copy()
    b[0, 0, 1] = 3
    assert psnr(b, zero[:2, :2], data_range=255) == pytest.approx(10 * math.log10(255**2 / 0.75))


def test_psnr_matches_skimage(pair):
    pred, target = pair
    ref = peak_signal_noise_ratio(target, pred, data_range=255)
    assert psnr(pred, target, data_range=255) == pytest.approx(ref, abs=1e-10)
    f = pred.astype(np.float32) / 255
    g = target.astype(np.float32) / 255
    assert psnr(f, g, data_range=1.0) == pytest.approx(ref, abs=1e-4)


def test_psnr_argument_errors(pair):
    pred, target = pair
    with pytest.raises(TypeError):
        psnr(pred, target)  # type: ignore[call-arg]  # data_range is mandatory
    with pytest.raises(InvalidInputError):
        psnr(pred, target, data_range=0)
    with pytest.raises(InvalidInputError):
        psnr(pred, target[:-1], data_range=255)
    with pytest.raises(InvalidInputError):
        mse(pred[None], target[None])  # 4-D


def test_ssim_constant_images_hand_value():
    # Variances and covariance vanish: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 255)^2
    a, b = 100.0, 50.0
    c1 = (0.01 * 255) ** 2
    x = np.full((16, 16), a)
    y = np.full((16, 16), b)
    assert ssim(x, y, data_range=255) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)
    assert ssim(x, x, data_range=255) == pytest.approx(1.0)


def test_ssim_matches_skimage_gaussian_settings(pair):
    pred, target = pair
    ref = structural_similarity(
        pred, target, data_range=255, channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, K1=0.01, K2=0.03,
    )  # fmt: skip
    ours = ssim(pred, target, data_range=255)
    assert ours == pytest.approx(ref, abs=1e-10)
    gray = structural_similarity(
        pred[..., 0], target[..., 0], data_range=255,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )  # fmt: skip
    assert ssim(pred[..., 0], target[..., 0], data_range=255) == pytest.approx(gray, abs=1e-10)
    with pytest.raises(InvalidInputError):
        ssim(pred[:10, :10], target[:10, :10], data_range=255)


def test_cpsnr_removes_per_channel_bias(pair):
    _, target = pair
    t = target.astype(np.float64)
    biased = t + np.array([10.0, -5.0, 3.0])
    assert psnr(biased, t, data_range=255) < 35
    assert cpsnr(biased, t, data_range=255) == math.inf
    assert cpsnr(biased, t, data_range=255, max_shift=0) == math.inf


def test_cpsnr_finds_integer_shift(pair):
    _, target = pair
    t = target.astype(np.float64)
    shifted = np.roll(t, (1, -2), axis=(0, 1))  # content moved 1 px down, 2 px left
    value, shift = cpsnr(shifted, t, data_range=255, return_shift=True)
    assert value == math.inf and shift == (1, -2)
    assert cpsnr(shifted, t, data_range=255, max_shift=1) < 20  # |dx| = 2 not reachable


def test_cpsnr_hand_value_no_shift():
    # Target 0; prediction a +-1 checkerboard plus a bias of 7: bias removed, residual MSE 1.
    y, x = np.mgrid[0:8, 0:8]
    pred = np.where((y + x) % 2 == 0, 1.0, -1.0) + 7.0
    assert cpsnr(pred, np.zeros((8, 8)), data_range=255, max_shift=0) == pytest.approx(
        20 * math.log10(255)
    )
    # max_shift=0 on a generic pair: PSNR of the bias-corrected prediction
    rng = np.random.default_rng(3)
    p = rng.normal(100, 20, (9, 9, 2))
    t = rng.normal(100, 20, (9, 9, 2))
    d = t - p
    corr = p + d.mean(axis=(0, 1))
    assert cpsnr(p, t, data_range=255, max_shift=0) == pytest.approx(psnr(corr, t, data_range=255))
    with pytest.raises(InvalidInputError):
        cpsnr(p, t, data_range=255, max_shift=-1)
    with pytest.raises(InvalidInputError):
        cpsnr(p[:4, :4], t[:4, :4], data_range=255, max_shift=2)


def test_sam_hand_values():
    pred = np.array([[[1.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, 0]]])  # (1, 3, 4)
    target = np.array([[[0, 1.0, 0, 0], [1.0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0]]])
    # 90 and 45 degrees; the all-zero predicted pixel is skipped
    assert sam(pred, target) == pytest.approx(67.5)
    assert sam(target * 3.0, target) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(sam(np.zeros((2, 2, 4)), np.ones((2, 2, 4))))
    with pytest.raises(InvalidInputError):
        sam(np.ones((2, 2)), np.ones((2, 2)))
