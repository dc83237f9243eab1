"""Pansharpening of SPOT 6/7 multispectral images with their panchromatic band.

Both methods are component substitution (CS) schemes that share the same steps:

1. **Upsampling.** The multispectral (ms) image is resampled onto the pan grid with cubic
   B-spline interpolation (``scipy.ndimage.map_coordinates``, ``order=3``) evaluated at the pan
   pixel centres expressed in fractional ms pixel coordinates, so non-integer resolution ratios
   (WorldStrat: 1054 / 263 = 4.008) are handled exactly; outside the outermost ms pixel centres
   the edge values are extended. Nodata ms pixels are first filled with their nearest valid
   neighbour so that they do not ring into valid ones.
2. **Synthetic intensity.** ``I = sum_k w_k * ms_up_k + b``. By default ``w`` (non-negative) and
   ``b`` are fitted by least squares of the pan, box-averaged onto the ms grid, on the ms bands
   (the adaptive intensity of GSA, Aiazzi et al. 2007, IEEE TGRS 45(10)), so ``I`` has the
   spectral response and the radiometric scale of the pan. With explicit ``weights`` the
   intensity is their normalised weighted mean (``b = 0``).
3. **Pan matching.** The pan is mean/std matched to the intensity, using the statistics of the
   pan box-averaged to the ms grid (low-pass matching, so the pan detail is not damped by the
   variance it has only at high resolution): ``P' = (P - mean(P_low)) * std(I_low) /
   std(P_low) + mean(I_low)``.
4. **Detail injection.**

   * ``"brovey"`` (multiplicative): ``out_k = ms_up_k * P' / I``. Every pixel's spectrum is
     scaled by one factor, so band ratios (hue, spectral angle) of the upsampled ms are kept
     exactly; where ``I <= 0`` the factor is 1.
   * ``"gram-schmidt"`` (additive, the Gram-Schmidt fusion written as CS): ``out_k = ms_up_k +
     g_k * (P' - I)`` with ``g_k = cov(ms_k, I) / var(I)`` on the ms grid.

Default: ``"brovey"``, measured on six WorldStrat AOIs (Landcover-31746, UNHCR-NGAs036019,
Landcover-769356, Amnesty_POI-13-1-1, UNHCR-THAs001547, Landcover-770516). Both methods keep
the pan detail (correlation of the high-pass of the result's band mean with the high-pass of
the pan 0.991-0.999 Brovey, 0.997-1.000 Gram-Schmidt, against 0.15-0.28 for the cubic-upsampled
ms). Box-averaged back onto the ms grid, both stay close to the ms: relative L2 error 5.7-9.7 %
Brovey, 5.1-6.5 % Gram-Schmidt (22.7 / 18.9 % on Landcover-770516); this is the level at which
the inputs themselves disagree (the box-averaged pan differs from its best linear fit by the ms
bands by 6.5-10 %, 25 % on Landcover-770516: the ms is blurrier than a box average of the pan).
Brovey keeps the colours much better: mean spectral angle to the ms 0.09-0.13 degrees (0.37 on
Landcover-770516) against 0.30-0.72 (1.65) for Gram-Schmidt, whose additive detail does not
scale with each pixel's own band values and so shifts the hue of dark or bright pixels.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from scipy import ndimage, optimize, sparse

from stliif.errors import InvalidInputError
from stliif.preprocess.mask import fill_nearest

__all__ = ["PansharpenMethod", "pansharpen"]

PansharpenMethod = Literal["brovey", "gram-schmidt"]
_METHODS: tuple[str, ...] = ("brovey", "gram-schmidt")


def _grid(da: xr.DataArray, name: str) -> tuple[Affine, tuple[float, float, float, float], object]:
    try:
        x_dim, y_dim = da.rio.x_dim, da.rio.y_dim
        transform = da.rio.transform()
        bounds = da.rio.bounds()
    except Exception as err:  # rioxarray raises several types for a missing grid
        raise InvalidInputError(f"{name}: not a georeferenced raster ({err})") from err
    if da.dims[-2:] != (y_dim, x_dim):
        raise InvalidInputError(
            f"{name}: spatial dims must be the last two, in order (y, x); got {da.dims}"
        )
    if transform.b != 0 or transform.d != 0:
        raise InvalidInputError(f"{name}: rotated geotransforms are not supported ({tuple(transform)[:6]})")
    if da.sizes[y_dim] < 1 or da.sizes[x_dim] < 1:
        raise InvalidInputError(f"{name}: empty spatial dimensions {dict(da.sizes)}")
    return transform, bounds, da.rio.crs


def _check_inputs(pan: xr.DataArray, ms: xr.DataArray, method: str) -> tuple[Affine, Affine]:
    if not isinstance(pan, xr.DataArray) or not isinstance(ms, xr.DataArray):
        raise InvalidInputError("pan and ms must be xarray.DataArray objects")
    if method not in _METHODS:
        raise InvalidInputError(f"method: unknown {method!r}, expected one of {_METHODS}")
    if pan.ndim != 2:
        raise InvalidInputError(f"pan: expected 2 dims (y, x), got {pan.ndim} {pan.dims}")
    if ms.ndim != 3:
        raise InvalidInputError(f"ms: expected 3 dims (band, y, x), got {ms.ndim} {ms.dims}")
    for name, da in (("pan", pan), ("ms", ms)):
        if not (np.issubdtype(da.dtype, np.number) and not np.issubdtype(da.dtype, np.complexfloating)):
            raise InvalidInputError(f"{name}: expected a real numeric dtype, got {da.dtype}")
    pan_t, pan_b, pan_crs = _grid(pan, "pan")
    ms_t, ms_b, ms_crs = _grid(ms, "ms")
    if (pan_crs is None) != (ms_crs is None) or (pan_crs is not None and pan_crs != ms_crs):
        raise InvalidInputError(f"pan and ms have different CRS: {pan_crs} vs {ms_crs}")
    if abs(pan_t.a) >= abs(ms_t.a) or abs(pan_t.e) >= abs(ms_t.e):
        raise InvalidInputError(
            f"pan pixel size {(abs(pan_t.a), abs(pan_t.e))} must be finer than the ms pixel size "
            f"{(abs(ms_t.a), abs(ms_t.e))}"
        )
    tol_x, tol_y = 0.5 * abs(ms_t.a), 0.5 * abs(ms_t.e)
    diffs = [abs(p - m) for p, m in zip(pan_b, ms_b, strict=True)]
    if max(diffs[0], diffs[2]) > tol_x or max(diffs[1], diffs[3]) > tol_y:
        raise InvalidInputError(
            f"pan and ms do not cover the same bounds (tolerance half an ms pixel): "
            f"pan {tuple(round(v, 9) for v in pan_b)} vs ms {tuple(round(v, 9) for v in ms_b)}"
        )
    return pan_t, ms_t


def _centres(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel-centre coordinates of a north-up grid."""
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    return y, x


_SPLINE_PAD = 12
"""Rows of edge padding before the spline prefilter: what ``map_coordinates(mode="nearest")`` pads."""


def _spline_taps(coords: np.ndarray, n: int) -> sparse.csr_matrix:
    """(len(coords), n + 24) sparse matrix evaluating a cubic B-spline at fractional positions
    ``coords`` of ``n`` samples from its coefficients (the samples edge-padded by 12 and
    prefiltered): each row weights the 4 nearest coefficients."""
    x = np.asarray(coords, dtype=np.float64) + _SPLINE_PAD
    i = np.floor(x).astype(np.int64)
    t = x - i
    weights = (
        (1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3,
    )  # fmt: skip
    size = n + 2 * _SPLINE_PAD
    cols = np.stack([np.clip(i - 1 + k, 0, size - 1) for k in range(4)], axis=1)
    vals = np.stack([w / 6.0 for w in weights], axis=1)
    rows = np.repeat(np.arange(len(x)), 4)
    return sparse.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=(len(x), size))


def _spline_coefficients(values: np.ndarray, axis: int) -> np.ndarray:
    """Cubic B-spline coefficients of ``values`` along ``axis``, edge-padded by 12 first."""
    pad = [(0, 0)] * values.ndim
    pad[axis] = (_SPLINE_PAD, _SPLINE_PAD)
    return ndimage.spline_filter1d(np.pad(values, pad, mode="edge"), order=3, axis=axis, mode="nearest")


def _upsample(bands: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(k, len(rows), len(cols)) float64: each of the (k, h, w) ``bands`` interpolated with a
    cubic B-spline (``mode="nearest"``) at fractional row positions ``rows`` and column positions
    ``cols``, the arithmetic of ``scipy.ndimage.map_coordinates(order=3, mode="nearest")`` on the
    grid they span (equal to round-off, 1e-12; tests/test_pansharpen.py).

    Separable: the coefficients are prefiltered along each axis on the small grid, then each output
    pixel weights its 4 x 4 nearest with two sparse products (~4x faster than dense 1-D operators,
    ~80x faster than ``map_coordinates``)."""
    _, h, w = bands.shape
    coef = _spline_coefficients(_spline_coefficients(bands.astype(np.float64), 1), 2)
    taps_r, taps_c = _spline_taps(rows, h), _spline_taps(cols, w)
    out = np.empty((len(bands), len(rows), len(cols)))
    for k, c in enumerate(coef):  # columns first, on the small grid: no transposed copy of the large one
        out[k] = taps_r @ np.ascontiguousarray((taps_c @ c.T).T)
    return out


def _intensity_weights(
    pan_low: np.ndarray, ms: np.ndarray, sel: np.ndarray, weights: Sequence[float] | None
) -> tuple[np.ndarray, float]:
    nb = ms.shape[0]
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (nb,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InvalidInputError(
                f"weights: expected {nb} finite non-negative values with a positive sum, got {weights!r}"
            )
        return w / w.sum(), 0.0
    x = ms[:, sel].T  # (n, bands)
    y = pan_low[sel]
    if x.shape[0] <= nb:
        raise InvalidInputError(
            f"pan/ms: only {x.shape[0]} valid pixels on the ms grid, need more than {nb} to fit the "
            "intensity weights (pass weights= explicitly)"
        )
    xm, ym = x.mean(0), y.mean()
    xc, yc = x - xm, y - ym
    # min ||xc w - yc|| (w >= 0) on the Cholesky factor of the Gram matrix: the same objective up
    # to a constant, (bands x bands) instead of (pixels x bands).
    gram = xc.T @ xc + 1e-12 * np.trace(xc.T @ xc) * np.eye(nb)
    chol = np.linalg.cholesky(gram)
    w, _ = optimize.nnls(chol.T, np.linalg.solve(chol, xc.T @ yc))
    if not np.any(w > 0):  # degenerate (e.g. constant images): equal weights on the pan scale
        w = np.full(nb, ym / max(float(xm.sum()), 1e-12) if xm.sum() > 0 else 1.0 / nb)
    return w, float(ym - w @ xm)


def pansharpen(
    pan: xr.DataArray,
    ms: xr.DataArray,
    *,
    method: PansharpenMethod = "brovey",
    weights: Sequence[float] | None = None,
    nodata: float | None = 0,
) -> xr.DataArray:
    """Fuse a panchromatic image with a co-located multispectral image.

    See the module docstring for the exact algorithm (cubic B-spline upsampling, adaptive
    intensity, low-pass pan matching, Brovey or Gram-Schmidt detail injection).

    Args:
        pan: Panchromatic image, dims (y, x), georeferenced with rioxarray (CRS + transform),
            any real dtype (SPOT: uint16 DN).
        ms: Multispectral image, dims (band, y, x), any number of bands, on a coarser grid in
            the same CRS covering the same bounds as ``pan`` (within half an ms pixel); the
            resolution ratio need not be an integer.
        method: ``"brovey"`` (default, keeps band ratios: best colour fidelity on SPOT) or
            ``"gram-schmidt"`` (additive injection with covariance gains).
        weights: Optional per-band weights of the synthetic intensity; by default they are
            fitted to the pan (non-negative least squares with an intercept).
        nodata: Value marking missing pixels in ``pan`` and ``ms`` (NaN always does);
            ``None`` for none.

    Returns:
        (band, y, x) float32 on the pan grid (pan's y/x coords, CRS and transform; ms's band
        coordinate), in the units of ``ms``, clipped at 0. NaN where the pan pixel or the ms
        pixel containing it is nodata. Attributes record the method, weights and intercept.

    Raises:
        InvalidInputError: wrong dims or dtype, different CRS or bounds, pan not finer than ms,
            unknown method, bad weights, too few valid pixels.
    """
    pan_t, ms_t = _check_inputs(pan, ms, method)
    nb, mh, mw = ms.shape
    ph, pw = pan.shape

    p = pan.values.astype(np.float64)
    m = ms.values.astype(np.float64)
    pan_valid = np.isfinite(p)
    ms_valid = np.asarray(np.isfinite(m).all(axis=0))
    if nodata is not None:
        pan_valid &= p != nodata
        ms_valid &= (m != nodata).all(axis=0)
    if not pan_valid.any() or not ms_valid.any():
        which = "pan" if not pan_valid.any() else "ms"
        raise InvalidInputError(f"{which}: no valid pixel (all nodata/NaN)")

    # Pan pixel centres -> ms pixel indices (containing pixel) and fractional centre coords.
    fy, fx = _centres(pan_t, ph, pw)
    col_f = (fx - ms_t.c) / ms_t.a
    row_f = (fy - ms_t.f) / ms_t.e
    col_i = np.clip(np.floor(col_f).astype(np.int64), 0, mw - 1)
    row_i = np.clip(np.floor(row_f).astype(np.int64), 0, mh - 1)

    # Pan box-averaged onto the ms grid (mean of the valid pan pixels whose centre falls inside).
    flat = (row_i[:, None] * mw + col_i[None, :])[pan_valid]
    count = np.bincount(flat, minlength=mh * mw).reshape(mh, mw)
    total = np.bincount(flat, weights=p[pan_valid], minlength=mh * mw).reshape(mh, mw)
    pan_low = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    sel = ms_valid & (count > 0)
    if not sel.any():
        raise InvalidInputError("pan/ms: no pixel is valid in both images")

    w, b = _intensity_weights(pan_low, m, sel, weights)
    i_low = np.tensordot(w, m, axes=1) + b
    mu_i, sd_i = float(i_low[sel].mean()), float(i_low[sel].std())
    mu_p, sd_p = float(pan_low[sel].mean()), float(pan_low[sel].std())
    gain = sd_i / sd_p if sd_p > 0 else 1.0
    p_matched = (p - mu_p) * gain + mu_i

    m_filled = fill_nearest(m, ms_valid, channels="first")
    up = _upsample(m_filled, row_f - 0.5, col_f - 0.5)
    intensity = np.tensordot(w, up, axes=1) + b

    if method == "brovey":
        ok = intensity > 0
        ratio = np.divide(p_matched, intensity, out=np.ones_like(intensity), where=ok)
        out = np.multiply(up, ratio[None], out=up)  # up is not used again: no 4-band temporary
    else:
        var_i = float(i_low[sel].var())
        centred = i_low[sel] - mu_i
        g = np.array(
            [float(((m[k][sel] - m[k][sel].mean()) * centred).mean()) / var_i if var_i > 0 else 1.0
             for k in range(nb)]
        )  # fmt: skip
        out = up + g[:, None, None] * (p_matched - intensity)[None]

    np.maximum(out, 0, out=out)
    invalid = ~pan_valid | ~ms_valid[row_i[:, None], col_i[None, :]]
    out[:, invalid] = np.nan

    band_dim = ms.dims[0]
    y_dim, x_dim = pan.rio.y_dim, pan.rio.x_dim
    coords: dict[Hashable, object] = {y_dim: pan[y_dim].values, x_dim: pan[x_dim].values}
    if band_dim in ms.coords:
        coords[band_dim] = ms[band_dim].values
    result = xr.DataArray(
        out.astype(np.float32), dims=(band_dim, y_dim, x_dim), coords=coords, name=ms.name
    )
    result.attrs.update(
        {k: v for k, v in ms.attrs.items() if k in ("units", "long_name", "scale_factor")}
    )
    result.attrs.update(
        {
            "pansharpening": method,
            "pansharpening_weights": [float(v) for v in w],
            "pansharpening_intercept": float(b),
            "nodata": "NaN",
        }
    )
    if pan.rio.crs is not None:  # in place: result is new, and a copy is a deep one
        result.rio.write_crs(pan.rio.crs, inplace=True)
    return result.rio.write_transform(pan_t, inplace=True)
