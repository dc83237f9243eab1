"""Consistency, synthesis and correctness (opensr-test's definitions) on hand-computed cases,
and the product-mode constraint: degraded back to the LR grid, it is the LR target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stliif.consistency import (
    consistency,
    correctness,
    degrade,
    members,
    spatial_shift,
    synthesis,
    upsample,
)
from stliif.constraint import check_mode, constrain, constrain_window, window_rows
from stliif.errors import InvalidInputError


def test_members_at_integer_and_non_integer_scales() -> None:
    assert members(8, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # x2.5: output centres 0.2, 0.6, 1.0, 1.4, 1.8 LR px -> blocks of 2 and 3 pixels
    assert members(5, 2).tolist() == [0, 0, 1, 1, 1]
    assert members(2, 5).tolist() == [1, 3]  # x0.4: some LR pixels have no member


def test_degrade_is_the_block_mean() -> None:
    hr = np.arange(16, dtype=float).reshape(4, 4)
    # blocks [[0,1],[4,5]] -> 2.5, [[2,3],[6,7]] -> 4.5, [[8,9],[12,13]] -> 10.5, [[10,11],[14,15]] -> 12.5
    np.testing.assert_allclose(degrade(hr, (2, 2))[..., 0], [[2.5, 4.5], [10.5, 12.5]])
    nan = hr.copy()
    nan[0, 0] = np.nan
    assert degrade(nan, (2, 2))[0, 0, 0] == pytest.approx((1 + 4 + 5) / 3)
    # x2.5 on one row: pixels 0,1 -> LR 0 and 2,3,4 -> LR 1
    np.testing.assert_allclose(degrade(np.array([[1.0, 3.0, 2.0, 4.0, 6.0]]), (1, 2))[0, :, 0], [2.0, 4.0])


def test_consistency_of_a_biased_image() -> None:
    lr = np.full((4, 4, 3), 0.1)
    lr[..., 1] = 0.2
    sr = np.repeat(np.repeat(lr, 2, 0), 2, 1) + np.array([0.01, 0.0, -0.02])
    c = consistency(sr, lr)
    assert c["mae"] == pytest.approx((0.01 + 0 + 0.02) / 3)
    np.testing.assert_allclose(c["bias"], [0.01, 0.0, -0.02], atol=1e-12)
    np.testing.assert_allclose(c["mae_band"], [0.01, 0.0, 0.02], atol=1e-12)
    # every pixel: angle between (0.11, 0.2, 0.08) and (0.1, 0.2, 0.1)
    p, t = np.array([0.11, 0.2, 0.08]), np.array([0.1, 0.2, 0.1])
    assert c["sam"] == pytest.approx(math.degrees(math.acos(p @ t / np.linalg.norm(p) / np.linalg.norm(t))))


def test_spatial_shift_finds_a_displacement() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((32, 32))
    moved = np.roll(ref, (2, -3), axis=(0, 1))
    dy, dx = spatial_shift(moved, ref)
    assert (dy, dx) == pytest.approx((2.0, -3.0), abs=1e-6)
    assert consistency(np.repeat(np.repeat(ref[..., None], 2, 0), 2, 1), ref[..., None])["shift_px"] == pytest.approx(0, abs=1e-6)


def test_upsample_and_synthesis() -> None:
    lr = np.array([[0.0, 1.0]])
    # x2 on one row: centres at -0.25, 0.25, 0.75, 1.25 LR px -> clamped 0, 0.25, 0.75, 1
    np.testing.assert_allclose(upsample(lr, (1, 4))[0, :, 0], [0.0, 0.25, 0.75, 1.0])
    assert synthesis(upsample(lr, (1, 4)), lr) == 0.0
    assert synthesis(upsample(lr, (1, 4)) + np.array([[[0.1], [-0.1], [0.1], [-0.1]]]), lr) == pytest.approx(0.1)


def test_correctness_shares_by_hand() -> None:
    """Three patches of 2 x 2 px: SR equal to the HR (improvement), to the upsampled LR
    (omission), and far from both (hallucination)."""
    lr = np.zeros((1, 3, 1))
    up = upsample(lr, (2, 6))  # zeros
    hr = np.ones((2, 6, 1))  # d_ref = 1 everywhere
    sr = np.concatenate([hr[:, :2], up[:, 2:4], np.full((2, 2, 1), 4.0)], axis=1)
    c = correctness(sr, lr, hr, patch=2)
    # patch 1: d_im 0, d_om 1 -> scores (0, 1, 1): improvement; patch 2: (1, 0, 1): omission;
    # patch 3: d_im 3, d_om 4, H 6 -> improvement 3 + 4 (1 - e^-4.8) ~ 6.97, hallucination e^-9.6
    assert c == {"improvement": pytest.approx(1 / 3), "omission": pytest.approx(1 / 3),
                 "hallucination": pytest.approx(1 / 3), "patches": 3}  # fmt: skip
    assert correctness(hr, hr[:1, :3], hr, patch=2)["patches"] == 0  # the LR already is the HR


@pytest.mark.parametrize("out_hw", [(16, 12), (10, 7), (3, 2)], ids=["x4", "x2.5-ish", "x0.7"])
def test_the_constraint_puts_the_target_back_exactly(out_hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    target = rng.random((4, 3, 3))
    y = rng.random((*out_hw, 3)) * 2
    fixed = constrain(y, target)
    d = degrade(fixed, (4, 3))
    ok = np.isfinite(d)
    np.testing.assert_allclose(d[ok], target[ok], atol=1e-12)
    if out_hw == (16, 12):  # the high frequencies stay the model's
        hp = y - np.repeat(np.repeat(degrade(y, (4, 3)), 4, 0), 4, 1)
        hp_fixed = fixed - np.repeat(np.repeat(d, 4, 0), 4, 1)
        assert np.corrcoef(hp.ravel(), hp_fixed.ravel())[0, 1] > 0.8


def test_the_constraint_by_windows_equals_the_one_shot() -> None:
    rng = np.random.default_rng(2)
    target, y = rng.random((9, 7, 3)), rng.random((23, 18, 3))
    one = constrain(y, target)
    out = np.empty_like(one)
    for r0 in range(0, 23, 5):
        for c0 in range(0, 18, 4):
            r1, c1 = min(23, r0 + 5), min(18, c0 + 4)
            rows, cols = window_rows(r0, r1, 23, 9), window_rows(c0, c1, 18, 7)
            w = constrain_window(y[rows[0] : rows[1], cols[0] : cols[1]], target[rows[2] : rows[3], cols[2] : cols[3]],
                                 rows, cols, (23, 18), (9, 7))  # fmt: skip
            out[r0:r1, c0:c1] = w[r0 - rows[0] : r1 - rows[0], c0 - cols[0] : c1 - cols[0]]
    np.testing.assert_allclose(out, one, atol=1e-12)


def test_bad_modes_and_shapes_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="mode"):
        check_mode("fast")
    with pytest.raises(InvalidInputError):
        constrain(np.zeros((4, 4)), np.zeros((2, 2, 1)))


def test_ndvi_and_its_block_mean_error_by_hand() -> None:
    from stliif.consistency import ndvi, ndvi_error

    assert ndvi(np.array([0.1, 0.0, np.nan]), np.array([0.3, 0.0, 0.2])).tolist()[:1] == [pytest.approx(0.5)]
    assert np.isnan(ndvi(np.array([0.0, np.nan]), np.array([0.0, 0.2]))).all()  # no light, no data
    lr = np.zeros((1, 1, 4))
    lr[0, 0] = [0.1, 0.1, 0.1, 0.3]  # NDVI 0.5
    sr = np.zeros((2, 2, 4))
    sr[..., :3], sr[..., 3] = 0.1, 0.3
    assert ndvi_error(sr, lr) == 0.0
    sr[0, 0, 0] = 0.3  # that pixel's NDVI 0: block mean (0 + 3 * 0.5) / 4 = 0.375
    assert ndvi_error(sr, lr) == pytest.approx(0.125)
    assert np.isnan(ndvi_error(sr[..., :3], lr[..., :3]))  # no NIR
