"""Image-quality metrics: MSE, PSNR, SSIM, cPSNR (WorldStrat/PROBA-V style) and SAM.

Array convention: every function takes ``pred`` and ``target`` of the same shape, either
``(H, W, C)`` (channels last, as PIL/uint8 RGB images) or ``(H, W)`` (one channel). Any real
dtype is accepted; values are converted to float64 before computing, so uint8 inputs never
overflow. ``data_range`` is the peak value of the scale (255 for uint8, 1.0 for reflectance);
it is always explicit, never inferred from the dtype.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from stliif.errors import InvalidInputError

__all__ = [
    "SSIM_SETTINGS",
    "SsimTarget",
    "cpsnr",
    "masked_cpsnr",
    "mse",
    "psnr",
    "sam",
    "ssim",
]

SSIM_SETTINGS: dict[str, float | int | str] = {
    "window": "gaussian",
    "win_size": 11,
    "sigma": 1.5,
    "K1": 0.01,
    "K2": 0.03,
    "covariance": "population",
    "border": "reflect padding, 5 px cropped before averaging",
    "channels": "mean of per-channel SSIM",
}
"""Settings of :func:`ssim`, identical to ``skimage.metrics.structural_similarity(...,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)``."""

_TRUNCATE = 3.5  # Gaussian truncation in sigmas; radius int(3.5 * 1.5 + 0.5) = 5 -> 11 px window
_SSIM_PAD = 5  # the SSIM map's border cropped before averaging


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/target pair and return them as float64 ``(H, W, C)`` arrays."""
    p = np.asarray(pred)
    t = np.asarray(target)
    if p.shape != t.shape:
        raise InvalidInputError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    if p.ndim not in (2, 3):
        raise InvalidInputError(f"expected (H, W) or (H, W, C) arrays, got shape {p.shape}")
    if p.size == 0:
        raise InvalidInputError("empty arrays")
    for name, a in (("pred", p), ("target", t)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise InvalidInputError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if p.ndim == 2:
        p, t = p[..., None], t[..., None]
    return p.astype(np.float64, copy=False), t.astype(np.float64, copy=False)


def _check_range(data_range: float) -> float:
    r = float(data_range)
    if not math.isfinite(r) or r <= 0:
        raise InvalidInputError(f"data_range must be a positive finite number, got {data_range!r}")
    return r


def _psnr_from_mse(err: float, data_range: float) -> float:
    if err == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / err)


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over all pixels and channels.

    Args:
        pred: Prediction, ``(H, W, C)`` or ``(H, W)``, any real dtype.
        target: Reference of the same shape.

    Returns:
        ``mean((pred - target) ** 2)`` in float64, in squared units of the inputs.
    """
    p, t = _pair(pred, target)
    d = p - t
    return float(np.mean(d * d))


def psnr(pred: np.ndarray, target: np.ndarray, *, data_range: float) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in dB.

    MSE is taken over the whole image and all channels at once (no border shave), as
    ``skimage.metrics.peak_signal_noise_ratio`` does. Identical images give ``inf``.

    Args:
        pred: Prediction, ``(H, W, C)`` or ``(H, W)``.
        target: Reference of the same shape.
        data_range: Peak value (255 for uint8).
    """
    r = _check_range(data_range)
    return _psnr_from_mse(mse(pred, target), r)


def _gauss(a: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(a, 1.5, truncate=_TRUNCATE, mode="reflect")


class SsimTarget:
    """SSIM against one target, its side (Gaussian means and second moments) computed once.

    ``SsimTarget(target, data_range=R)(pred)`` equals :func:`ssim`; with ``valid``, the SSIM map
    is averaged over the valid target pixels only (after the 5-px border crop). Invalid target
    pixels must hold finite values (e.g. their nearest valid pixel's) so that the windows that
    straddle them are defined.

    Args:
        target: ``(H, W, C)`` reference, both sides at least 11 px.
        data_range: Peak value; sets C1 = (K1 R)^2, C2 = (K2 R)^2.
        valid: ``(H, W)`` bool mask of the pixels to average over (default: all).
    """

    def __init__(self, target: np.ndarray, *, data_range: float, valid: np.ndarray | None = None) -> None:
        r = _check_range(data_range)
        if min(target.shape[:2]) < 11:
            raise InvalidInputError(f"ssim needs images of at least 11x11 px, got {target.shape[:2]}")
        self.c1, self.c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
        self.keep = None if valid is None else valid[_SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD]
        self.y = [np.ascontiguousarray(target[..., c], dtype=np.float64) for c in range(target.shape[2])]
        self.uy = [_gauss(y) for y in self.y]
        self.yy = [_gauss(y * y) for y in self.y]

    def __call__(self, pred: np.ndarray) -> float:
        """SSIM of ``pred`` (same shape as the target), mean over pixels then channels."""
        if self.keep is not None and not self.keep.any():
            return math.nan
        values = []
        for c, (y, uy, yy) in enumerate(zip(self.y, self.uy, self.yy, strict=True)):
            x = np.ascontiguousarray(pred[..., c], dtype=np.float64)
            ux = _gauss(x)
            vx = _gauss(x * x) - ux * ux
            vy = yy - uy * uy
            vxy = _gauss(x * y) - ux * uy
            num = (2 * ux * uy + self.c1) * (2 * vxy + self.c2)
            s = num / ((ux * ux + uy * uy + self.c1) * (vx + vy + self.c2))
            s = s[_SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD]
            values.append((s if self.keep is None else s[self.keep]).mean(dtype=np.float64))
        return float(np.mean(values))


def ssim(pred: np.ndarray, target: np.ndarray, *, data_range: float) -> float:
    """Structural similarity (Wang et al. 2004), mean over pixels and then over channels.

    Own float64 implementation, numerically identical (to ~1e-12) to
    ``skimage.metrics.structural_similarity(pred, target, data_range=data_range,
    channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``:
    Gaussian window 11 px (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03,
    population (co)variances, reflect padding, the 5-px border of the SSIM map cropped before
    averaging; the channel SSIMs are averaged. See :data:`SSIM_SETTINGS`.

    Args:
        pred: Prediction, ``(H, W, C)`` or ``(H, W)``, both sides at least 11 px.
        target: Reference of the same shape.
        data_range: Peak value (255 for uint8); sets C1 = (K1 R)^2, C2 = (K2 R)^2.
    """
    r = _check_range(data_range)
    p, t = _pair(pred, target)
    return SsimTarget(t, data_range=r)(p)


def cpsnr(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float,
    max_shift: int = 2,
    return_shift: bool = False,
) -> float | tuple[float, tuple[int, int]]:
    """Clear/corrected PSNR, WorldStrat (PROBA-V Kelvins) style, over integer shifts.

    Variant: the target is cropped by ``max_shift`` px on every side (a fixed central window);
    for every integer shift ``(dy, dx)`` with ``|dy|, |dx| <= max_shift`` the prediction window of
    the same size offset by ``(dy, dx)`` is compared with it after removing the per-channel
    brightness bias ``b_c = mean(target_c - pred_c)`` over the window; cMSE is the mean squared
    residual over the window and all channels, and the result is
    ``max over shifts of 10 log10(data_range**2 / cMSE)``. Integer shifts only (no sub-pixel
    interpolation); no cloud mask (all pixels count). With ``max_shift=0`` it is the PSNR of the
    bias-corrected prediction.

    Args:
        pred: Prediction, ``(H, W, C)`` or ``(H, W)``, sides larger than ``2 * max_shift``.
        target: Reference of the same shape.
        data_range: Peak value (255 for uint8).
        max_shift: Largest absolute shift in px along each axis.
        return_shift: Also return the best ``(dy, dx)`` (positive: prediction content sits
            further down/right than the target's).

    Returns:
        cPSNR in dB, or ``(cpsnr, (dy, dx))`` when ``return_shift``.
    """
    r = _check_range(data_range)
    p, t = _pair(pred, target)
    if isinstance(max_shift, bool) or not isinstance(max_shift, int | np.integer) or max_shift < 0:
        raise InvalidInputError(f"max_shift must be a non-negative int, got {max_shift!r}")
    m = int(max_shift)
    h, w = p.shape[:2]
    if h <= 2 * m or w <= 2 * m:
        raise InvalidInputError(f"image {h}x{w} too small for max_shift={m}")
    tc = t[m : h - m, m : w - m]
    best, best_shift = math.inf, (0, 0)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            pc = p[m + dy : h - m + dy, m + dx : w - m + dx]
            d = tc - pc
            d = d - d.mean(axis=(0, 1), keepdims=True)
            err = float(np.mean(d * d))
            if err < best:
                best, best_shift = err, (dy, dx)
    value = _psnr_from_mse(best, r)
    return (value, best_shift) if return_shift else value


def masked_cpsnr(
    pred: np.ndarray, target: np.ndarray, valid: np.ndarray, *, data_range: float, max_shift: int = 2
) -> float:
    """:func:`cpsnr` (same variant) over the valid target pixels only.

    Bias and cMSE are taken over the pixels of the cropped target window where ``valid`` holds.
    Differences are taken in float32 (channels first, for speed); sums of squares by BLAS
    float32 dot products, means in float64: within 1e-4 dB of the float64 reference.

    Args:
        pred: ``(H, W, C)`` prediction.
        target: ``(H, W, C)`` reference; its invalid pixels may hold anything finite or not.
        valid: ``(H, W)`` bool mask of the target pixels that count.
        data_range: Peak value.
        max_shift: Largest absolute shift in px along each axis.

    Returns:
        cPSNR in dB; ``nan`` when no valid pixel is left in the window.
    """
    m = int(max_shift)
    h, w = pred.shape[:2]
    mk = valid[m : h - m, m : w - m]
    n = int(mk.sum())
    if n == 0:
        return math.nan
    mf = mk.astype(np.float32)
    pc = np.ascontiguousarray(np.moveaxis(pred, -1, 0), dtype=np.float32)
    tc = np.ascontiguousarray(np.moveaxis(target[m : h - m, m : w - m], -1, 0), dtype=np.float32)
    tc = np.where(mf > 0, tc, np.float32(0.0))
    d = np.empty_like(tc)
    best = math.inf
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            np.subtract(tc, pc[:, m + dy : h - m + dy, m + dx : w - m + dx], out=d)
            d *= mf
            err = 0.0
            for c in range(d.shape[0]):
                dc = d[c].ravel()
                mean = float(dc.sum(dtype=np.float64)) / n
                err += float(np.dot(dc, dc)) / n - mean * mean
            best = min(best, err / d.shape[0])
    return _psnr_from_mse(max(best, 0.0), _check_range(data_range))


def sam(pred: np.ndarray, target: np.ndarray, *, eps: float = 1e-12) -> float:
    """Spectral angle mapper: mean per-pixel angle between spectra, in degrees.

    ``angle = arccos(<p, t> / (|p| |t|))`` per pixel over the channel axis, averaged over the
    pixels where both spectra have a norm above ``eps`` (all-zero pixels are skipped; ``nan`` if
    none is left). Meant for multispectral predictions (more than 3 bands) but valid for C >= 2.
    Invariant to a per-pixel positive scaling of either input.

    Args:
        pred: Prediction, ``(H, W, C)`` with C >= 2.
        target: Reference of the same shape.
        eps: Norm below which a pixel is skipped.
    """
    p, t = _pair(pred, target)
    if np.asarray(pred).ndim != 3 or p.shape[2] < 2:
        raise InvalidInputError(f"sam needs (H, W, C) arrays with C >= 2, got {np.shape(pred)}")
    dot = np.einsum("hwc,hwc->hw", p, t)
    np_ = np.sqrt(np.einsum("hwc,hwc->hw", p, p))
    nt = np.sqrt(np.einsum("hwc,hwc->hw", t, t))
    valid = (np_ > eps) & (nt > eps)
    if not valid.any():
        return math.nan
    cos = np.clip(dot[valid] / (np_[valid] * nt[valid]), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())
