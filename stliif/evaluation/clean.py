"""Protocol C (``"clean"``): built from this project's ETL artifacts only, with no human
choice. For an AOI (store artifacts ``matched/clean/<aoi>``, ``pansharpened/<aoi>``,
``subset/clean/<aoi>``):

* **Inputs.** The clean-selected revisits as ``(T, H, W, 3)`` float32 surface reflectance (R, G,
  B = B04, B03, B02), each V-matched to the clear median composite of the selection (the
  ``histogram`` stage), in chronological order, with their dates and the HR date. Invalid
  (cloudy or no-data) pixels are gap-filled: the **composite** is the per-pixel, per-band median
  over the frames valid at that pixel; an invalid frame pixel takes the composite's value, and a
  pixel invalid in every frame takes the value of its nearest valid composite pixel (Euclidean
  distance transform).
* **Target.** The Brovey-pansharpened SPOT R, G, B (12-bit DN, 1054 x 1054 on the pan grid) made
  reflectance-like by V-channel CDF matching: the composite (gap-filled) is upsampled to the pan
  grid with Pillow bicubic (float), its validity with nearest neighbour; on pixels valid in both,
  the CDF of the target's V = max(R, G, B) is matched to the CDF of the upsampled composite's V
  (the arithmetic of ``skimage.exposure.match_histograms``); the resulting monotone map of V is
  applied to every valid HR pixel (piecewise-linear between the fitted values, clamped at the
  ends) and each pixel's RGB is scaled by ``V' / V`` (hue and saturation kept). Pixels without
  HR data stay NaN and are left out of every metric. The x4 and x2 targets are Pillow bicubic
  (float) resizes of it to 628 and 314 px; a resized pixel is valid when its whole resampling
  support is.
* **Scoring.** Reflectance level: MSE, PSNR and SSIM with ``data_range = 1.0`` and cPSNR
  (:func:`stliif.metrics.cpsnr`'s variant: 2-px target border crop, per-channel bias removed,
  best of the integer shifts ``|dy|, |dx| <= 2`` px of the output grid, ``data_range = 1.0``).
  uint8 level: prediction and target are converted with the same per-AOI scale ``R`` = the
  maximum of the composite over its valid pixels and the three bands (a function of the inputs
  alone, the analogue of the study's divide-by-maximum), ``u8 = round_half_even(clip(255 * x /
  R, 0, 255))``; MSE, PSNR (peak 255) and SSIM (data_range 255). All metrics use the valid target
  pixels only (SSIM: the SSIM map, computed with each invalid target pixel set to its nearest
  valid target pixel's value, is averaged over the valid pixels after the 5-px border crop). A ``(K, S, S, 3)``
  stack (per-frame bicubic) is scored per image and averaged, as in P.
* **NIR and NDVI** (four bands, where ``matched/clean/<aoi>`` carries ``nir``): the NIR frames
  are gap-filled as R, G, B are; the NIR target is the pansharpened SPOT NIR CDF-matched, band
  by band, to the upsampled NIR composite (the rule of :func:`match_target` on one band, not
  in V). Each method's NIR: the band-agnostic baselines (``bicubic``, ``median``, ``linear``)
  run on the NIR frames; a method that predicts R, G, B only (the colour map, a checkpoint, its
  product mode) gets the inputs' low frequencies, the constraint of a zero output
  (:func:`stliif.constraint.constrain`), as its renders do; a four-band checkpoint
  (:func:`~stliif.models.predictor.predictor_bands` 4) gets R, G, B, NIR frames and its own NIR
  output is scored (its R, G, B as every method's). Scored (:data:`BAND_METRICS`):
  reflectance PSNR per band (``psnr_refl_r/g/b/nir``, data_range 1.0, valid target pixels),
  ``ndvi_mae`` (the block-mean NDVI of the output against the NDVI of the inputs interpolated
  in time at the HR date, :func:`stliif.consistency.ndvi_error`) and ``ndvi_mae_hr`` (mean
  ``|NDVI(output) - NDVI(target)|`` over valid target pixels). The RGB metrics above are
  unchanged. Without ``nir`` in the store (matched before four bands) these are NaN.
* **Split.** The store's ``splits/paper`` manifest: its ``test`` AOIs are evaluated, the colour
  map baseline is fitted on its ``train`` AOIs only.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from stliif.errors import DataAccessError, InvalidInputError, ModelError, NoDataError
from stliif.evaluation.consistency import CONSISTENCY_METRICS, lr_hr_scores
from stliif.evaluation.paper import PAPER_SCALES, TargetSizes
from stliif.evaluation.results import (
    CLEAN_CPSNR_SHIFT,
    CLEAN_METRICS,
    CLEAN_REFLECTANCE_RANGE,
    EvalResult,
    OnPrediction,
    PredictionEvent,
    check_scales,
)
from stliif.metrics import SsimTarget, masked_cpsnr
from stliif.models.baselines import ColourMap, Predictor, resize
from stliif.models.predictor import UINT8_PEAK, predictor_bands, reflectance_to_uint8
from stliif.names import aoi_cube_path, validate_aoi
from stliif.preprocess.mask import fill_nearest
from stliif.store import ArtifactStore

__all__ = [
    "BAND_METRICS",
    "CleanSample",
    "clean_paths",
    "evaluate_clean",
    "fit_colour_map_clean",
    "load_clean_sample",
    "match_band_target",
    "match_target",
    "require_hr",
    "score_clean",
]


BAND_METRICS: tuple[str, ...] = ("psnr_refl_r", "psnr_refl_g", "psnr_refl_b", "psnr_refl_nir", "ndvi_mae", "ndvi_mae_hr")
"""Per-band reflectance PSNR (R, G, B, NIR) and NDVI errors of protocol C (module docstring)."""
NIR_BASELINES = ("bicubic", "median", "linear")
"""Methods that run on any band count: their NIR is their own."""


@dataclass(frozen=True)
class CleanSample(TargetSizes):
    """One AOI of protocol C.

    Attributes:
        aoi: AOI name.
        frames: ``(T, H, W, 3)`` float32 reflectance (R, G, B), chronological, gap-filled.
        valid: ``(T, H, W)`` bool: pixel valid before gap filling.
        composite: ``(H, W, 3)`` float32 clear median composite, NaN where no frame is valid.
        dates: ``(T,)`` ``datetime64[D]`` revisit dates.
        hr_date: ``datetime64[D]`` date of the HR image.
        target: ``(S0, S0, 3)`` float32 reflectance target on the pan grid (S0 = 1054), NaN where
            the HR image has no data.
        uint8_scale: Reflectance mapped to 255 at the uint8 level (max of the valid composite).
        crs: CRS of the HR grid (WKT).
        bounds: ``(minx, miny, maxx, maxy)`` of the HR grid.
        versions: Versions of the store artifacts read, ``{path: version}``.
        nir_frames: ``(T, H, W)`` float32 NIR (B08) frames, gap-filled, or None (no NIR matched).
        nir_target: ``(S0, S0)`` float32 NIR target, NaN where not scored, or None.
    """

    aoi: str
    frames: np.ndarray
    valid: np.ndarray
    composite: np.ndarray
    dates: np.ndarray
    hr_date: np.datetime64
    target: np.ndarray
    uint8_scale: float
    crs: str
    bounds: tuple[float, float, float, float]
    versions: dict[str, str]
    nir_frames: np.ndarray | None = None
    nir_target: np.ndarray | None = None
    _cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _nir_cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _rgbn: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def rgbn_frames(self) -> np.ndarray:
        """``(T, H, W, 4)`` R, G, B, NIR frames (built once).

        Raises:
            NoDataError: No NIR (the store was matched before four bands).
        """
        return self._four("frames")

    def rgbn_target(self) -> np.ndarray:
        """``(S0, S0, 4)`` R, G, B, NIR target (built once); raises as :meth:`rgbn_frames`."""
        return self._four("target")

    def _four(self, what: str) -> np.ndarray:
        if what not in self._rgbn:
            if self.nir_frames is None or self.nir_target is None:
                raise NoDataError(f"{self.aoi}: no NIR in matched/clean (matched before four bands): "
                                  "rerun `stliif etl --stage histogram`")  # fmt: skip
            rgb, nir = (self.frames, self.nir_frames) if what == "frames" else (self.target, self.nir_target)
            self._rgbn[what] = np.concatenate([rgb, nir[..., None]], axis=-1)
        return self._rgbn[what]

    def nir_target_at(self, size: int) -> np.ndarray | None:
        """The NIR target at ``size`` px (Pillow bicubic float resize), or None."""
        if self.nir_target is None or size == self.nir_target.shape[0]:
            return self.nir_target
        if size not in self._nir_cache:
            self._nir_cache[size] = resize(self.nir_target[..., None], size)[..., 0]
        return self._nir_cache[size]



def clean_paths(aoi: str) -> tuple[str, str, str]:
    """Store artifacts protocol C reads for ``aoi``: matched, pansharpened, subset."""
    return f"matched/clean/{aoi}", f"pansharpened/{aoi}", f"subset/clean/{aoi}"


def match_target(hr_rgb: np.ndarray, composite: np.ndarray, composite_valid: np.ndarray) -> np.ndarray:
    """Protocol C's radiometric rule: HR RGB V-CDF-matched to the upsampled composite.

    Args:
        hr_rgb: ``(S, S, 3)`` pansharpened R, G, B (any linear unit, e.g. 12-bit DN), NaN where
            there is no data.
        composite: ``(H, W, 3)`` reflectance composite, gap-filled (finite).
        composite_valid: ``(H, W)`` bool: composite pixels that come from valid observations.

    Returns:
        ``(S, S, 3)`` float32 reflectance-like target, NaN where ``hr_rgb`` is not finite.

    Raises:
        NoDataError: No pixel valid in both.
    """
    s_h, s_w = hr_rgb.shape[:2]
    up = resize(composite.astype(np.float32), (s_h, s_w))
    up_valid = np.asarray(
        Image.fromarray(composite_valid.astype(np.uint8)).resize((s_w, s_h), Image.Resampling.NEAREST)
    ).astype(bool)
    hr = np.asarray(hr_rgb, dtype=np.float32)
    hr_valid = np.isfinite(hr).all(axis=-1)
    fit = hr_valid & up_valid
    if not fit.any():
        raise NoDataError("no pixel where both the HR image and the composite are valid")
    v = np.where(hr_valid, hr.max(axis=-1), np.float32(0.0))
    # match_cdf's arithmetic, keeping the map (source value -> matched value) to apply it to
    # the HR pixels outside the fitting mask too
    s_values, s_index, s_counts = np.unique(v[fit], return_inverse=True, return_counts=True)
    t_values, t_counts = np.unique(up.max(axis=-1)[fit], return_counts=True)
    mapped = np.interp(
        np.cumsum(s_counts) / s_index.size, np.cumsum(t_counts) / t_counts.sum(), t_values
    )
    v_new = np.zeros(v.shape, dtype=np.float64)
    v_new[fit] = mapped[s_index.ravel()]
    rest = hr_valid & ~fit
    v_new[rest] = np.interp(v[rest], s_values, mapped)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = (v_new / v).astype(np.float32)
        out = np.where((v > 0)[..., None], hr * gain[..., None], v_new.astype(np.float32)[..., None])
    out[~hr_valid] = np.nan
    return out


def match_band_target(hr_band: np.ndarray, composite_band: np.ndarray, composite_valid: np.ndarray) -> np.ndarray:
    """One band (the NIR) of protocol C's target: ``hr_band`` ``(S, S)`` CDF-matched to the
    composite band ``(H, W)`` upsampled with Pillow bicubic, fitted on pixels valid in both,
    the monotone map applied to every finite HR pixel (:func:`match_target`'s arithmetic, the
    band in place of V). Returns ``(S, S)`` float32, NaN where ``hr_band`` is not finite."""
    hr = np.asarray(hr_band, np.float32)
    comp = np.asarray(composite_band, np.float32)
    out = match_target(np.repeat(hr[..., None], 3, axis=-1), np.repeat(comp[..., None], 3, axis=-1), composite_valid)
    return np.asarray(out[..., 0], np.float32)  # V of three equal bands is the band: the same map


def require_hr(store: ArtifactStore, aoi: str, ref: str | None) -> None:
    """Protocol C scores a store AOI only where an HR image exists (``hr/<aoi>/rgbn``): an AOI
    whose cube is in the store without one is refused with that reason (one not in the store at
    all is left to the missing-artifact message, which says what to run)."""
    if (
        store.version(aoi_cube_path(aoi), ref=ref) is not None
        and store.version(f"pansharpened/{aoi}", ref=ref) is None
        and store.version(f"hr/{aoi}/rgbn", ref=ref) is None
    ):
        raise NoDataError(
            f"{aoi} has no HR image in the store (hr/{aoi}/rgbn): protocol C scores AOIs with one "
            "(WorldStrat imports); an acquired area or a crop can be masked, subset, matched and rendered"
        )


def load_clean_sample(store: ArtifactStore, aoi: str, *, ref: str | None = None) -> CleanSample:
    """Read an AOI's protocol C inputs and build its target (see the module docstring).

    Args:
        store: Store holding the ETL artifacts.
        aoi: AOI name (a store AOI: see :func:`stliif.names.validate_aoi`).
        ref: Branch, tag or snapshot id (default: the store's branch).

    Raises:
        NoDataError: The AOI has no HR image, an artifact is missing (run the ETL for this
            AOI) or nothing is valid.
    """
    import rioxarray  # noqa: F401  (registers .rio)

    require_hr(store, validate_aoi(aoi), ref)
    m_path, p_path, s_path = clean_paths(aoi)
    versions = {}
    for p in (m_path, p_path, s_path):
        v = store.version(p, ref=ref)
        if v is None:
            raise NoDataError(
                f"artifact {p!r} is missing from the store: run `stliif etl --aoi {aoi}` "
                "(stages import, mask, pansharpen, subset, histogram) first"
            )
        versions[p] = v
    matched = store.read(m_path, ref=ref, load=True)
    sharp = store.read(p_path, ref=ref, load=True)
    subset = store.read_json(s_path, ref=ref)
    rgb = matched["rgb"].sel(band=["red", "green", "blue"]).transpose("time", "y", "x", "band")
    raw = rgb.values.astype(np.float32)
    order = np.argsort(rgb["time"].values, kind="stable")
    raw = raw[order]
    dates = rgb["time"].values[order].astype("datetime64[D]")
    valid = np.asarray(np.isfinite(raw).all(axis=-1))
    if not valid.any():
        raise NoDataError(f"{aoi}: no valid pixel in the clean revisits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        composite = np.nanmedian(np.where(valid[..., None], raw, np.nan), axis=0).astype(np.float32)
    comp_valid = np.asarray(np.isfinite(composite).all(axis=-1))
    filled_comp = fill_nearest(composite, comp_valid)
    frames = np.where(valid[..., None], raw, filled_comp[None]).astype(np.float32)
    scale = float(composite[comp_valid].max())
    if not scale > 0:
        raise NoDataError(f"{aoi}: the composite has no positive reflectance")
    hr = sharp["rgbn"].sel(band=["red", "green", "blue"]).transpose("y", "x", "band")
    target = match_target(hr.values, filled_comp, comp_valid)
    nir_frames = nir_target = None
    if "nir" in matched and "nir" in sharp["rgbn"]["band"].values:  # four bands (histogram stage since f65a30f)
        nir = matched["nir"].transpose("time", "y", "x").values.astype(np.float32)[order]
        nir_valid = valid & np.isfinite(nir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            nir_comp = np.nanmedian(np.where(nir_valid, nir, np.nan), axis=0).astype(np.float32)
        nir_comp_valid = np.isfinite(nir_comp)
        if nir_comp_valid.any():
            nir_filled = fill_nearest(nir_comp[..., None], nir_comp_valid)[..., 0]
            nir_frames = np.where(nir_valid, nir, nir_filled[None]).astype(np.float32)
            nir_target = match_band_target(sharp["rgbn"].sel(band="nir").transpose("y", "x").values, nir_filled, nir_comp_valid)
    try:
        crs = sharp.rio.crs
        bounds = tuple(float(b) for b in sharp.rio.bounds())
    except Exception as err:  # rioxarray raises several types for a missing grid
        raise DataAccessError(f"{p_path}: not georeferenced ({err})") from err
    return CleanSample(
        aoi=aoi, frames=frames, valid=valid, composite=composite, dates=dates,
        hr_date=np.datetime64(subset["hr_date"], "D"), target=target, uint8_scale=scale,
        crs=crs.to_wkt() if crs is not None else "EPSG:4326", bounds=bounds,  # type: ignore[arg-type]
        versions=versions, nir_frames=nir_frames, nir_target=nir_target,
    )  # fmt: skip


def fit_colour_map_clean(samples: Iterable[CleanSample]) -> ColourMap:
    """Least-squares affine map from the temporal median of the frames to the target (C).

    As :meth:`ColourMap.fit`, in reflectance: for each sample the target is resized (Pillow
    bicubic, float) to the frames' ``(H, W)`` grid and the per-pixel median of the gap-filled
    frames is regressed onto it, pooling every pixel where the target is valid and the composite
    comes from valid observations. Use training AOIs only.
    """
    xtx = np.zeros((4, 4))
    xty = np.zeros((4, 3))
    n = 0
    for s in samples:
        h, w = s.frames.shape[1:3]
        med = np.median(s.frames, axis=0).reshape(-1, 3).astype(np.float64)
        down = resize(s.target, (h, w)).reshape(-1, 3).astype(np.float64)
        keep = np.isfinite(down).all(axis=1) & np.isfinite(s.composite).all(axis=-1).ravel()
        x = np.hstack([med[keep], np.ones((int(keep.sum()), 1))])
        xtx += x.T @ x
        xty += x.T @ down[keep]
        n += int(keep.sum())
    if n == 0:
        raise NoDataError("no training pixels to fit the colour map on")
    coef, *_ = np.linalg.lstsq(xtx, xty, rcond=None)
    return ColourMap(coef.T, n_pixels=n)


class _CleanTarget:
    """A protocol C target at one scale, with everything scoring needs precomputed."""

    def __init__(self, target: np.ndarray, uint8_scale: float) -> None:
        t = np.asarray(target, dtype=np.float32)
        if t.ndim != 3 or t.shape[-1] != 3:
            raise InvalidInputError(f"target must be (S, S, 3), got {t.shape}")
        self.shape = t.shape
        self.valid = np.asarray(np.isfinite(t).all(axis=-1))
        if not self.valid.any():
            raise NoDataError("the target has no valid pixel")
        self.scale = float(uint8_scale)
        self.vf = self.valid[..., None]
        self.n = float(self.valid.sum() * t.shape[-1])
        self.t8 = reflectance_to_uint8(t, self.scale)
        self.t8f = self.t8.astype(np.float64)
        self.t_zero = np.where(self.vf, t, np.float32(0.0)).astype(np.float64)
        self._ssim: dict[str, SsimTarget] = {}

    def ssim(self, level: str) -> SsimTarget:
        """SSIM against this target at ``"uint8"`` or ``"refl"`` level (built on first use).

        Invalid target pixels take their nearest valid pixel's value (so the SSIM windows that
        straddle them are defined); the map is averaged over valid pixels only.
        """
        if level not in self._ssim:
            base = self.t8f if level == "uint8" else self.t_zero
            filled = fill_nearest(base, self.valid)
            rng = UINT8_PEAK if level == "uint8" else CLEAN_REFLECTANCE_RANGE
            self._ssim[level] = SsimTarget(filled, data_range=rng, valid=self.valid)
        return self._ssim[level]


def _score_one(img: np.ndarray, tg: _CleanTarget, *, ssim: bool, cpsnr: bool) -> list[float]:
    i8 = reflectance_to_uint8(img, tg.scale)
    d8 = i8.astype(np.float64) - tg.t8f
    d8 *= tg.vf
    mse8 = float(np.dot(d8.ravel(), d8.ravel())) / tg.n  # integer squares: exact in float64
    dr = img.astype(np.float64) - tg.t_zero
    dr *= tg.vf
    mser = float(np.dot(dr.ravel(), dr.ravel())) / tg.n
    rec = {
        "mse": mse8,
        "psnr": math.inf if mse8 == 0 else 10 * math.log10(UINT8_PEAK * UINT8_PEAK / mse8),
        "ssim": math.nan,
        "mse_refl": mser,
        "psnr_refl": math.inf if mser == 0 else 10 * math.log10(CLEAN_REFLECTANCE_RANGE**2 / mser),
        "ssim_refl": math.nan,
        "cpsnr_refl": math.nan,
    }
    if ssim:
        rec["ssim"] = tg.ssim("uint8")(i8)
        rec["ssim_refl"] = tg.ssim("refl")(img)
    if cpsnr:
        rec["cpsnr_refl"] = masked_cpsnr(
            img, tg.t_zero, tg.valid, data_range=CLEAN_REFLECTANCE_RANGE, max_shift=CLEAN_CPSNR_SHIFT
        )
    return [rec[m] for m in CLEAN_METRICS]


def _score(pred: np.ndarray, tg: _CleanTarget, *, ssim: bool, cpsnr: bool) -> dict[str, float]:
    p = np.asarray(pred)
    if p.ndim == 3:
        p = p[None]
    if p.ndim != 4 or p.shape[1:] != tg.shape or p.shape[0] < 1:
        raise ModelError(f"prediction shape {np.shape(pred)} does not match target {tg.shape}")
    if not np.issubdtype(p.dtype, np.number) or not np.all(np.isfinite(p)):
        raise ModelError(f"prediction must be finite numbers, got dtype {p.dtype}")
    p = p.astype(np.float32)
    rows = [_score_one(img, tg, ssim=ssim, cpsnr=cpsnr) for img in p]
    mean = np.mean(np.array(rows, dtype=np.float64), axis=0)
    out = {m: float(v) for m, v in zip(CLEAN_METRICS, mean, strict=True)}
    out["valid_fraction"] = float(tg.valid.mean())
    return out


def score_clean(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    uint8_scale: float,
    ssim: bool = True,
    cpsnr: bool = True,
) -> dict[str, float]:
    """Score a protocol C prediction (or a stack) against a reflectance target.

    Args:
        pred: ``(S, S, 3)`` or ``(K, S, S, 3)`` reflectance (cast to float32 first: the saved
            GeoTIFFs hold exactly the scored values).
        target: ``(S, S, 3)`` float32 reflectance, NaN where not scored.
        uint8_scale: Reflectance mapped to 255 for the uint8 metrics.
        ssim: Compute both SSIMs (``nan`` otherwise).
        cpsnr: Compute cPSNR (``nan`` otherwise).

    Returns:
        ``{metric: value}`` for :data:`CLEAN_METRICS` plus ``valid_fraction``; for a stack the
        mean over its K images.
    """
    return _score(pred, _CleanTarget(target, uint8_scale), ssim=ssim, cpsnr=cpsnr)


def evaluate_clean(
    predictors: Mapping[str, Predictor],
    samples: Mapping[str, CleanSample],
    *,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
    cpsnr: bool = True,
    on_prediction: OnPrediction | None = None,
) -> dict[str, EvalResult]:
    """Run reflectance predictors on protocol C samples and score them per AOI and scale.

    Each predictor is called as ``predictor(frames, size=S, dates=dates, target_date=hr_date)``
    with the AOI's gap-filled ``(T, H, W, 3)`` float32 reflectance frames and must return
    ``(S, S, 3)`` reflectance (or a ``(K, S, S, 3)`` stack, scored per image and averaged).

    Every record also carries the consistency and hallucination scores of
    :mod:`stliif.evaluation.consistency` (reflectance, ``peak`` 1).

    Returns:
        ``{name: EvalResult}`` with ``len(samples) * len(scales)`` records each.
    """
    check_scales(scales)
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in predictors}
    seconds = dict.fromkeys(predictors, 0.0)
    for aoi, sample in samples.items():
        for scale, size in scales.items():
            target = sample.target_at(int(size))
            scoring = _CleanTarget(target, sample.uint8_scale)
            for name, predictor in predictors.items():
                start = time.perf_counter()
                four = predictor_bands(predictor) == 4
                frames = sample.rgbn_frames() if four else sample.frames
                pred = np.asarray(predictor(frames, size=int(size), dates=sample.dates, target_date=sample.hr_date))
                if np.issubdtype(pred.dtype, np.number):
                    pred = pred.astype(np.float32)
                nir = None
                if four:  # the model's own NIR
                    if pred.ndim < 3 or pred.shape[-1] != 4:
                        raise ModelError(f"{name} takes four bands but returned shape {pred.shape}")
                    pred, nir = pred[..., :3], pred[..., 3].astype(np.float64)
                if on_prediction is not None:
                    on_prediction(
                        PredictionEvent("clean", name, aoi, scale, pred, target, sample.frames,
                                        sample.uint8_scale, sample.crs, sample.bounds)
                    )  # fmt: skip
                scores = _score(pred, scoring, ssim=ssim, cpsnr=cpsnr)
                scores.update(lr_hr_scores(pred, sample.frames, sample.dates, sample.hr_date, target, peak=1.0))
                scores.update(band_scores(name, predictor, pred, sample, int(size), target, nir=nir))
                records[name].append({"aoi": aoi, "scale": scale, "size": int(size), **scores})
                seconds[name] += time.perf_counter() - start
    return {
        k: EvalResult(k, "clean", records[k], (*CLEAN_METRICS, *CONSISTENCY_METRICS, *BAND_METRICS), seconds[k])
        for k in predictors
    }


def nir_prediction(name: str, predictor: Predictor, sample: CleanSample, size: int) -> np.ndarray:
    """``(S, S)`` or ``(K, S, S)`` NIR of a method (module docstring): its own for the
    band-agnostic baselines (:data:`NIR_BASELINES`), else the inputs' low frequencies."""
    from stliif.constraint import constrain, lr_target

    assert sample.nir_frames is not None
    f = sample.nir_frames[..., None]
    if name in NIR_BASELINES:
        return np.asarray(predictor(f, size=size, dates=sample.dates, target_date=sample.hr_date), np.float64)[..., 0]
    low = lr_target(f, sample.dates, sample.hr_date)
    return np.maximum(constrain(np.zeros((size, size, 1)), low), 0.0)[..., 0]


def band_scores(name: str, predictor: Predictor, pred: np.ndarray, sample: CleanSample, size: int,
                target: np.ndarray, nir: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
    """:data:`BAND_METRICS` of a prediction ``(S, S, 3)`` or ``(K, S, S, 3)`` (mean over K): NaN
    without NIR in the sample. ``nir``: a four-band model's own NIR (else :func:`nir_prediction`)."""
    from stliif.consistency import ndvi, ndvi_error
    from stliif.constraint import lr_target

    out = dict.fromkeys(BAND_METRICS, math.nan)
    p = np.asarray(pred, np.float64)
    p = p[None] if p.ndim == 3 else p
    valid = np.isfinite(target).all(axis=-1)
    for i, key in enumerate(("psnr_refl_r", "psnr_refl_g", "psnr_refl_b")):
        mse = float(np.mean([np.mean((img[..., i][valid] - target[..., i][valid]) ** 2) for img in p]))
        out[key] = math.inf if mse == 0 else 10 * math.log10(CLEAN_REFLECTANCE_RANGE**2 / mse)
    nir_t = sample.nir_target_at(size)
    if sample.nir_frames is None or nir_t is None:
        return out
    nir = nir_prediction(name, predictor, sample, size) if nir is None else nir
    nir = np.broadcast_to(nir if nir.ndim == 3 else nir[None], p.shape[:3])
    ok = valid & np.isfinite(nir_t)
    mse = float(np.mean([np.mean((n[ok] - nir_t[ok]) ** 2) for n in nir]))
    out["psnr_refl_nir"] = math.inf if mse == 0 else 10 * math.log10(CLEAN_REFLECTANCE_RANGE**2 / mse)
    four = np.concatenate([p, nir[..., None]], axis=-1)
    lr = lr_target(sample.rgbn_frames(), sample.dates, sample.hr_date)
    out["ndvi_mae"] = float(np.mean([ndvi_error(img, lr) for img in four]))
    nd_t = ndvi(target[..., 0], nir_t)
    out["ndvi_mae_hr"] = float(np.mean([np.nanmean(np.abs(ndvi(img[..., 0], img[..., 3]) - nd_t)[ok]) for img in four]))
    return out
