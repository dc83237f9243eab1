"""Consistency, synthesis and correctness of a super-resolved image (after opensr-test).

Definitions follow opensr-test (Aybar, Montero, Donike, Kalaitzis, Gómez-Chova, "A
Comprehensive Benchmark for Optical Remote Sensing Image Super-Resolution", IEEE GRSL 21,
2024, doi:10.1109/LGRS.2024.3401394; https://github.com/ESAOpenSR/opensr-test), reimplemented
here because the package cannot be installed beside the project's CPU torch (its resolver
pulls a CUDA torch 2.14) and needs model downloads at run time:

- **Consistency** (no HR image needed): the SR image degraded to the LR grid (:func:`degrade`)
  against the LR input: reflectance error (mean absolute error, and the signed bias per band),
  spectral angle (SAM, degrees) and spatial shift (phase correlation, LR pixels).
- **NDVI consistency** (this project's, for four-band outputs R, G, B, NIR): the block mean
  (:func:`degrade`) of the output's per-pixel NDVI against the NDVI of the LR input, mean
  absolute difference (:func:`ndvi_error`). The NDVI is averaged, not recomputed from the
  averaged bands, so that detail which distorts the red/NIR ratio within a block is seen.
- **Synthesis**: the high frequencies the SR adds: mean ``|SR - up(LR)|`` with ``up`` bilinear.
- **Correctness** (an HR image needed): per patch, the distance of the SR to the HR
  (improvement, ``d_im``) and to the upsampled LR (omission, ``d_om``), both divided by the
  distance of the upsampled LR to the HR; each patch is classed improvement, omission or
  hallucination by the smallest of opensr-test's three scores (:func:`correctness`); the shares
  of the three classes are reported.

Degradation (the project's choice, exact for any scale): each output pixel belongs to the LR
pixel that holds its centre (:func:`members`); the degraded image is the mean of each LR
pixel's members. At an integer scale that is the block mean over ``s x s`` blocks; at a
non-integer scale the blocks are ``floor(s)`` or ``ceil(s)`` pixels a side, a partition of the
output, so that adding a value to every member of a block adds it to the block's mean.

Array convention as :mod:`stliif.metrics`: ``(H, W, C)`` channels last, any real dtype.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from stliif.errors import InvalidInputError
from stliif.metrics import sam

__all__ = [
    "OPENSR_LAMBDA",
    "consistency",
    "correctness",
    "degrade",
    "members",
    "ndvi",
    "ndvi_error",
    "reflectance_error",
    "spatial_shift",
    "synthesis",
    "upsample",
]

OPENSR_LAMBDA = 0.8
"""The ``lambda`` of opensr-test's improvement / omission / hallucination scores (the value its
``main.py`` passed for omission and hallucination; the constants changed between its versions)."""


def members(n_out: int, n_lr: int) -> np.ndarray:
    """The LR pixel (0..n_lr-1) whose span holds the centre of each of ``n_out`` output pixels
    over the same extent: ``floor((i + 0.5) * n_lr / n_out)``."""
    if n_out < 1 or n_lr < 1:
        raise InvalidInputError(f"sizes must be positive, got {n_out} and {n_lr}")
    return np.minimum(((np.arange(n_out) + 0.5) * n_lr // n_out).astype(np.int64), n_lr - 1)


def degrade(image: np.ndarray, lr_hw: tuple[int, int]) -> np.ndarray:
    """``(h, w, C)`` float64: the mean of each LR pixel's member pixels (:func:`members`),
    ignoring NaN; NaN for an LR pixel with no finite member."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    h, w = lr_hw
    ry, rx = members(a.shape[0], h), members(a.shape[1], w)
    ok = np.isfinite(a)
    s = np.zeros((h, w, a.shape[2]))
    n = np.zeros((h, w, a.shape[2]))
    np.add.at(s, (ry[:, None], rx[None, :]), np.where(ok, a, 0.0))
    np.add.at(n, (ry[:, None], rx[None, :]), ok)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """``(nir - red) / (nir + red)`` as float64, NaN where either is not finite or the sum is not
    positive (no data, or no light)."""
    r, n = np.asarray(red, np.float64), np.asarray(nir, np.float64)
    total = n + r
    ok = np.isfinite(total) & (total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (n - r) / np.where(ok, total, 1.0), np.nan)


def ndvi_error(sr: np.ndarray, lr: np.ndarray, *, red: int = 0, nir: int = 3) -> float:
    """Mean absolute difference between the block-mean NDVI of ``sr`` (``(H, W, C)``, its
    per-pixel NDVI averaged over each LR pixel's members, :func:`degrade`) and the NDVI of
    ``lr`` (``(h, w, C)``), over the LR pixels where both are defined; NaN where none is, or
    when there is no NIR band."""
    s, t = np.asarray(sr, np.float64), np.asarray(lr, np.float64)
    if s.ndim != 3 or t.ndim != 3:
        raise InvalidInputError(f"need (H, W, C) and (h, w, C) arrays, got {s.shape} and {t.shape}")
    if min(s.shape[2], t.shape[2]) <= max(red, nir):
        return math.nan
    d = degrade(ndvi(s[..., red], s[..., nir]), t.shape[:2])[..., 0]
    err = np.abs(d - ndvi(t[..., red], t[..., nir]))
    ok = np.isfinite(err)
    return float(err[ok].mean()) if ok.any() else math.nan


def upsample(lr: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` float64: bilinear interpolation of ``lr`` at the output pixel centres
    (pixel-centre aligned, edges clamped)."""
    a = np.asarray(lr, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]

    def axis(n_out: int, n_lr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.clip((np.arange(n_out) + 0.5) * n_lr / n_out - 0.5, 0, n_lr - 1)
        i0 = np.floor(u).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_lr - 1)
        return i0, i1, u - i0

    y0, y1, fy = axis(out_hw[0], a.shape[0])
    x0, x1, fx = axis(out_hw[1], a.shape[1])
    top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
    bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


def reflectance_error(degraded: np.ndarray, lr: np.ndarray) -> dict[str, Any]:
    """Mean absolute error and bias (``degraded - lr``, per band) over the pixels finite in both,
    and Pearson's correlation of all values."""
    d, t = np.asarray(degraded, np.float64), np.asarray(lr, np.float64)
    if d.shape != t.shape or d.ndim != 3:
        raise InvalidInputError(f"need two (h, w, C) arrays of one shape, got {d.shape} and {t.shape}")
    ok = np.isfinite(d).all(axis=2) & np.isfinite(t).all(axis=2)
    if not ok.any():
        return {"mae": math.nan, "bias": [math.nan] * d.shape[2], "mae_band": [math.nan] * d.shape[2], "corr": math.nan}
    diff = d[ok] - t[ok]
    corr = float(np.corrcoef(d[ok].ravel(), t[ok].ravel())[0, 1]) if d[ok].std() > 0 and t[ok].std() > 0 else math.nan
    return {"mae": float(np.abs(diff).mean()), "mae_band": [float(v) for v in np.abs(diff).mean(axis=0)],
            "bias": [float(v) for v in diff.mean(axis=0)], "corr": corr}  # fmt: skip


def spatial_shift(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(dy, dx)`` in pixels by which ``image`` is displaced from ``reference`` (phase correlation
    of the band means, NaN filled with the mean; sub-pixel by a parabola through the peak)."""
    a, b = (np.asarray(x, np.float64) for x in (image, reference))
    a, b = (x.mean(axis=2) if x.ndim == 3 else x for x in (a, b))
    if a.shape != b.shape:
        raise InvalidInputError(f"shapes differ: {a.shape} and {b.shape}")
    a, b = (np.where(np.isfinite(x), x, np.nanmean(x) if np.isfinite(x).any() else 0.0) for x in (a, b))
    a, b = a - a.mean(), b - b.mean()
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    r = fa * np.conj(fb)
    r /= np.maximum(np.abs(r), 1e-15)
    c = np.fft.ifft2(r).real
    py, px = np.unravel_index(int(np.argmax(c)), c.shape)

    def refine(p: int, n: int, line: np.ndarray) -> float:
        lo, mid, hi = line[(p - 1) % n], line[p], line[(p + 1) % n]
        den = lo - 2 * mid + hi
        frac = 0.5 * (lo - hi) / den if n > 2 and den < 0 else 0.0
        v = p + float(np.clip(frac, -0.5, 0.5))
        return v - n if v > n / 2 else v

    return refine(int(py), c.shape[0], c[:, px]), refine(int(px), c.shape[1], c[py, :])


def consistency(sr: np.ndarray, lr: np.ndarray) -> dict[str, Any]:
    """opensr-test's consistency of ``sr`` (``(H, W, C)``) with its LR input (``(h, w, C)``):
    ``mae``, ``mae_band``, ``bias`` (per band), ``corr`` (:func:`reflectance_error`), ``sam``
    (degrees, :func:`stliif.metrics.sam`) and ``shift_px`` (LR pixels, :func:`spatial_shift`),
    all after :func:`degrade`."""
    t = np.asarray(lr, np.float64)
    if t.ndim != 3:
        raise InvalidInputError(f"lr must be (h, w, C), got {t.shape}")
    d = degrade(sr, t.shape[:2])
    out = reflectance_error(d, t)
    ok = np.isfinite(d).all(axis=2) & np.isfinite(t).all(axis=2)
    out["sam"] = sam(np.where(ok[..., None], d, 0.0), np.where(ok[..., None], t, 0.0)) if t.shape[2] >= 2 else math.nan
    dy, dx = spatial_shift(d, t)
    out["shift_px"] = float(math.hypot(dy, dx))
    return out


def synthesis(sr: np.ndarray, lr: np.ndarray) -> float:
    """opensr-test's synthesis: mean ``|sr - upsample(lr)|`` (the high frequencies added)."""
    s = np.asarray(sr, np.float64)
    s = s[..., None] if s.ndim == 2 else s
    diff = np.abs(s - upsample(lr, s.shape[:2]))
    return float(np.nanmean(diff)) if np.isfinite(diff).any() else math.nan


def _patch_means(a: np.ndarray, patch: int) -> np.ndarray:
    h, w = a.shape[0] // patch, a.shape[1] // patch
    if h < 1 or w < 1:
        raise InvalidInputError(f"the image ({a.shape[0]} x {a.shape[1]}) is smaller than one patch of {patch} px")
    a = a[: h * patch, : w * patch].reshape(h, patch, w, patch, -1)
    with warnings.catch_warnings():  # a patch without data is NaN, skipped by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=(1, 3, 4))


def correctness(
    sr: np.ndarray, lr: np.ndarray, hr: np.ndarray, *, patch: int = 8, lam: float = OPENSR_LAMBDA, eps: float = 1e-9
) -> dict[str, float]:
    """opensr-test's correctness: shares of ``improvement``, ``omission`` and ``hallucination``.

    Per patch of ``patch`` x ``patch`` output pixels, with ``up = upsample(lr)`` and L1 distances
    (mean absolute difference): ``d_ref = |up - hr|``, ``d_im = |sr - hr| / d_ref``,
    ``d_om = |sr - up| / d_ref``. With ``H = d_im + d_om - 1``, the scores are
    ``improvement = d_im + d_om (1 - exp(-H lam))``, ``omission = d_om + d_im (1 - exp(-H lam))``
    and ``hallucination = exp(-d_im d_om lam)``; a patch takes the class of the smallest score.
    Patches with ``d_ref <= eps`` (the LR already equals the HR) are skipped. Shares are of the
    patches scored; ``patches`` says how many.
    """
    s, h = (np.asarray(x, np.float64) for x in (sr, hr))
    s, h = (x[..., None] if x.ndim == 2 else x for x in (s, h))
    if s.shape != h.shape:
        raise InvalidInputError(f"sr {s.shape} and hr {h.shape} differ")
    up = upsample(lr, s.shape[:2])
    d_ref = _patch_means(np.abs(up - h), patch)
    ok = np.isfinite(d_ref) & (d_ref > eps)
    if not ok.any():
        return {"improvement": math.nan, "omission": math.nan, "hallucination": math.nan, "patches": 0}
    d_im = _patch_means(np.abs(s - h), patch)[ok] / d_ref[ok]
    d_om = _patch_means(np.abs(s - up), patch)[ok] / d_ref[ok]
    big_h = d_im + d_om - 1
    scores = np.stack([d_im + d_om * (1 - np.exp(-big_h * lam)), d_om + d_im * (1 - np.exp(-big_h * lam)),
                       np.exp(-d_im * d_om * lam)])  # fmt: skip
    cls = np.argmin(scores, axis=0)
    n = cls.size
    return {"improvement": float((cls == 0).sum() / n), "omission": float((cls == 1).sum() / n),
            "hallucination": float((cls == 2).sum() / n), "patches": int(n)}  # fmt: skip
