"""Evaluation protocols P and C, the model registry, and committed evaluations.

**Protocol P** (``"paper"``) is :mod:`stliif.evaluate`: the study's own frames and targets, uint8
RGB, PSNR with a 255 peak, the 21 non-test AOIs for fitting.

**Protocol C** (``"clean"``) is built from this project's ETL artifacts only, with no human
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
* **Split.** The store's ``splits/paper`` manifest: its ``test`` AOIs are evaluated, the colour
  map baseline is fitted on its ``train`` AOIs only.

The four baselines of both protocols are registered by name (:data:`BASELINE_NAMES`);
:func:`get_predictor` resolves a name or a checkpoint path (checkpoint loaders are registered by
the model code with :func:`register_checkpoint_loader`). :func:`evaluate_protocol` runs a model
and every baseline and computes paired per-AOI deltas; :func:`run_evaluation` commits the result
to the store under ``metrics/<model>/<protocol>``, as a no-op when its inputs are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from scipy import ndimage

from stliif import code_version
from stliif.errors import DataAccessError, InvalidInputError, ModelError, NoDataError
from stliif.evaluate import (
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    PairedDelta,
    PaperResult,
    RecordViews,
    evaluate_paper,
    load_paper_sample,
    load_paper_samples,
    paired_deltas,
    paper_train_aois,
)
from stliif.models.baselines import ColourMap, Predictor, resize, to_uint8
from stliif.models.predictor import (
    _PEAK,
    BASELINE_NAMES,
    check_protocol,
    get_predictor,
    model_name,
    reflectance_to_uint8,
)
from stliif.names import validate_aoi, validate_name
from stliif.store import ArtifactStore, run_key

__all__ = [
    "CLEAN_CPSNR_SHIFT",
    "CLEAN_METRICS",
    "CLEAN_REFLECTANCE_RANGE",
    "DEFINITIONS",
    "DELTA_METRICS",
    "PAPER_METRICS",
    "ProtocolName",
    "CleanSample",
    "EvalResult",
    "Evaluation",
    "EvaluationRun",
    "PredictionEvent",
    "evaluate_clean",
    "evaluate_protocol",
    "evaluation_key",
    "evaluation_plan",
    "fit_colour_map_clean",
    "fit_colour_map_paper",
    "load_clean_sample",
    "match_target",
    "metrics_path",
    "run_evaluation",
    "save_prediction",
    "score_clean",
]

ProtocolName = Literal["paper", "clean"]
PAPER_METRICS: tuple[str, ...] = ("mse", "psnr", "ssim")
CLEAN_METRICS: tuple[str, ...] = (
    "mse", "psnr", "ssim", "mse_refl", "psnr_refl", "ssim_refl", "cpsnr_refl",
)  # fmt: skip
"""Metric keys of protocol C: uint8 level (``mse``, ``psnr``, ``ssim``) and reflectance level
(``*_refl``)."""
DELTA_METRICS: dict[str, tuple[str, ...]] = {
    "paper": ("psnr", "ssim"),
    "clean": ("psnr", "ssim", "ssim_refl", "cpsnr_refl"),
}
"""Metrics with paired deltas. C's ``psnr_refl`` is left out: with a fixed uint8 scale per AOI
its per-AOI deltas equal those of ``psnr`` up to uint8 rounding."""
CLEAN_REFLECTANCE_RANGE = 1.0
"""``data_range`` of the reflectance-level PSNR, SSIM and cPSNR of protocol C."""
CLEAN_CPSNR_SHIFT = 2
"""Largest integer shift (px of the output grid) searched by protocol C's cPSNR."""
_SSIM_PAD = 5

DEFINITIONS: dict[str, str] = {
    "paper": (
        "Protocol P: inputs reference/temporal_subset/<AOI>/1..5.png (uint8 RGB), target "
        "reference/hr_adapted/<AOI>_adapted_x6.png (1054 px; x4, x2 = Pillow BICUBIC resizes to "
        "628, 314 px). Predictions rounded half to even and clipped to uint8. MSE over all pixels "
        "and channels; PSNR = 10 log10(255^2 / MSE), whole image, no border shave; SSIM: Gaussian "
        "window 11 px, sigma 1.5, K1 0.01, K2 0.03, population covariance, data_range 255, mean "
        "of per-channel SSIM after a 5-px border crop. Per-frame bicubic is scored per frame and "
        "averaged. Means are unweighted over AOIs. Test AOIs: the study's 10; colour map fitted "
        "on the other 21."
    ),
    "clean": (
        "Protocol C: inputs matched/clean/<AOI> (clean-selected revisits, float32 reflectance, "
        "V-matched to their clear median composite; invalid pixels gap-filled from the composite, "
        "then nearest valid composite pixel). Target: Brovey-pansharpened SPOT RGB on the 1054-px "
        "pan grid, its V = max(R,G,B) CDF-matched (valid pixels only) to the V of the composite "
        "upsampled with Pillow bicubic, RGB scaled by V'/V; x4, x2 = Pillow bicubic (float) "
        "resizes; pixels without HR data excluded from every metric. Reflectance level: MSE, "
        "PSNR and SSIM with data_range 1.0; cPSNR = max over integer shifts |dy|,|dx| <= 2 px of "
        "10 log10(1 / cMSE), cMSE the MSE after removing the per-channel mean difference over "
        "the target cropped by 2 px. uint8 level: u8 = round_half_even(clip(255 x / R, 0, 255)) "
        "with R = max of the composite over valid pixels and bands (per AOI, from the inputs), "
        "same R for prediction and target; MSE, PSNR (peak 255), SSIM (data_range 255). SSIM "
        "settings as in P; invalid target pixels take their nearest valid pixel's value and the "
        "SSIM map is averaged over valid pixels only. Per-frame bicubic is scored per frame and "
        "averaged. Test AOIs: splits/paper test; colour map fitted on splits/paper train only."
    ),
    "deltas": (
        "Paired per-AOI deltas model - baseline; mean over AOIs with a 95 % percentile-bootstrap "
        "CI (10000 resamples of the AOIs, numpy default_rng(0))."
    ),
}
"""Exact metric and protocol definitions, as printed in reports."""


# ------------------------------------------------------------------------------------- results


@dataclass
class EvalResult(RecordViews):
    """Per-AOI, per-scale scores of one predictor on one protocol.

    Attributes:
        name: Model name (registry key or checkpoint stem).
        protocol: ``"paper"`` or ``"clean"``.
        records: One dict per (AOI, scale): ``aoi``, ``scale``, ``size`` and the metrics
            (``nan`` when not computed).
        metrics: Metric keys of the records, in display order.
        seconds: Wall time of prediction and scoring.
    """

    name: str
    protocol: str
    records: list[dict[str, Any]]
    metrics: tuple[str, ...]
    seconds: float = 0.0

    @classmethod
    def from_paper(cls, result: PaperResult) -> EvalResult:
        """Wrap a :class:`stliif.evaluate.PaperResult`."""
        return cls(result.name, "paper", result.records, PAPER_METRICS, result.seconds)

    def values(self, metric: str, scale: str) -> dict[str, float]:
        """``{aoi: value}`` of ``metric`` at ``scale``."""
        if metric not in self.metrics:
            raise InvalidInputError(f"unknown metric {metric!r}; have {list(self.metrics)}")
        out = {r["aoi"]: float(r[metric]) for r in self.records if r["scale"] == scale}
        if not out:
            raise InvalidInputError(f"no records at scale {scale!r} (have {self.scales})")
        return out

    @property
    def means(self) -> dict[str, dict[str, float]]:
        """``{scale: {metric: mean over AOIs}}`` (``nan`` for metrics not computed)."""
        return {
            s: {m: float(np.mean(list(self.values(m, s).values()))) for m in self.metrics}
            for s in self.scales
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``{"metrics": {aoi: {scale: {metric: v}}}, "means": ..., ...}``."""
        per: dict[str, dict[str, dict[str, float | None]]] = {}
        for r in self.records:
            per.setdefault(r["aoi"], {})[r["scale"]] = {m: _num(r[m]) for m in self.metrics}
        return {
            "name": self.name,
            "protocol": self.protocol,
            "metric_names": list(self.metrics),
            "sizes": {r["scale"]: int(r["size"]) for r in self.records},
            "metrics": per,
            "means": {s: {m: _num(v) for m, v in d.items()} for s, d in self.means.items()},
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> EvalResult:
        """Inverse of :meth:`to_dict`."""
        try:
            metrics = tuple(doc["metric_names"])
            records = [
                {"aoi": aoi, "scale": s, "size": int(doc["sizes"][s]),
                 **{m: math.nan if v is None else float(v) for m, v in vals.items()}}
                for aoi, per in doc["metrics"].items() for s, vals in per.items()
            ]  # fmt: skip
            return cls(doc["name"], doc["protocol"], records, metrics, float(doc["seconds"]))
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(f"not an evaluation result: {err}") from err


def _num(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass
class Evaluation:
    """A model and every baseline on one protocol, with paired deltas.

    Attributes:
        protocol: ``"paper"`` or ``"clean"``.
        model: Name of the evaluated model.
        result: The model's scores.
        baselines: Scores of the four baselines by name (the model's own entry included when it
            is a baseline).
        deltas: ``{baseline: {scale: {metric: PairedDelta}}}``, model minus baseline.
        train_aois: AOIs the colour map was fitted on.
        notes: Caveats (e.g. evaluated AOIs that are not test AOIs).
        inputs: Versions (store) or fingerprints (files) of what was read.
        seconds: Total wall time.
    """

    protocol: str
    model: str
    result: EvalResult
    baselines: dict[str, EvalResult]
    deltas: dict[str, dict[str, dict[str, PairedDelta]]]
    train_aois: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def aois(self) -> list[str]:
        """Evaluated AOIs."""
        return self.result.aois

    @property
    def scales(self) -> list[str]:
        """Evaluated scales."""
        return self.result.scales

    def methods(self) -> dict[str, EvalResult]:
        """Baselines then the model (once), by name."""
        out = dict(self.baselines)
        out.setdefault(self.model, self.result)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what ``--json`` writes and the flow commits)."""
        res = self.result.to_dict()
        return {
            "protocol": self.protocol,
            "model": self.model,
            "aois": self.aois,
            "scales": res["sizes"],
            "metric_names": res["metric_names"],
            "metrics": res["metrics"],
            "means": res["means"],
            "baselines": {k: v.to_dict() for k, v in self.baselines.items()},
            "deltas": {
                b: {s: {m: {k: v for k, v in asdict(d).items() if k != "deltas"}
                        | {"per_aoi": d.deltas} for m, d in per.items()} for s, per in ds.items()}
                for b, ds in self.deltas.items()
            },  # fmt: skip
            "definitions": {"protocol": DEFINITIONS[self.protocol], "deltas": DEFINITIONS["deltas"]},
            "train_aois": self.train_aois,
            "notes": self.notes,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 3),
            "code_version": code_version(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Evaluation:
        """Inverse of :meth:`to_dict`."""
        try:
            result = EvalResult.from_dict(
                {"name": doc["model"], "protocol": doc["protocol"], "metric_names": doc["metric_names"],
                 "sizes": doc["scales"], "metrics": doc["metrics"],
                 "seconds": doc["baselines"].get(doc["model"], {}).get("seconds", 0.0)}
            )  # fmt: skip
            deltas = {
                b: {s: {m: PairedDelta(d["mean"], d["ci_low"], d["ci_high"], d["n"], d["per_aoi"],
                                       d["confidence"], d["n_boot"]) for m, d in per.items()}
                    for s, per in ds.items()}
                for b, ds in doc["deltas"].items()
            }  # fmt: skip
            return cls(
                doc["protocol"], doc["model"], result,
                {k: EvalResult.from_dict(v) for k, v in doc["baselines"].items()}, deltas,
                list(doc.get("train_aois", [])), list(doc.get("notes", [])),
                dict(doc.get("inputs", {})), float(doc.get("seconds", 0.0)),
            )  # fmt: skip
        except (KeyError, TypeError) as err:
            raise InvalidInputError(f"not an evaluation document: {err}") from err


@dataclass(frozen=True)
class PredictionEvent:
    """One prediction, right before it is scored (see ``on_prediction``).

    Attributes:
        protocol: ``"paper"`` or ``"clean"``.
        model: Name of the predictor.
        aoi: AOI.
        scale: Scale name (``"x2"``...).
        prediction: The scored image(s): P uint8 ``(S, S, 3)`` or ``(K, S, S, 3)``; C float32
            reflectance of the same shapes.
        target: The target at this scale (P uint8; C float32 reflectance, NaN = not scored).
        frames: The inputs (P uint8 ``(T, H, W, 3)``; C float32 reflectance, gap-filled).
        uint8_scale: C's per-AOI reflectance that maps to 255 (``None`` for P).
        crs: C: CRS of the HR grid (WKT or EPSG string); ``None`` for P.
        bounds: C: ``(minx, miny, maxx, maxy)`` of the HR grid; ``None`` for P.
    """

    protocol: str
    model: str
    aoi: str
    scale: str
    prediction: np.ndarray
    target: np.ndarray
    frames: np.ndarray
    uint8_scale: float | None = None
    crs: str | None = None
    bounds: tuple[float, float, float, float] | None = None

    def display(self, image: np.ndarray) -> np.ndarray:
        """An image of this event as uint8 RGB (C: with :attr:`uint8_scale`; NaN -> 0)."""
        if self.uint8_scale is None:
            return to_uint8(image)
        return reflectance_to_uint8(image, self.uint8_scale)


OnPrediction = Callable[[PredictionEvent], None]


# ------------------------------------------------------------------------------ protocol C data


@dataclass(frozen=True)
class CleanSample:
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
    _cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def target_at(self, size: int) -> np.ndarray:
        """Target at ``size`` px: the native one, or its Pillow bicubic float resize (NaN spreads)."""
        if size == self.target.shape[0]:
            return self.target
        if size not in self._cache:
            self._cache[size] = resize(self.target, size)
        return self._cache[size]


def _fill_nearest(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid pixels of ``(H, W, C)`` take the value of their nearest valid pixel."""
    if valid.all():
        return image
    _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return image[iy, ix]


def _clean_paths(aoi: str) -> tuple[str, str, str]:
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


def _require_hr(store: ArtifactStore, aoi: str, ref: str | None) -> None:
    """Protocol C scores a store AOI only where an HR image exists (``hr/<aoi>/rgbn``): an AOI
    whose cube is in the store without one is refused with that reason (one not in the store at
    all is left to the missing-artifact message, which says what to run)."""
    from stliif.names import aoi_cube_path

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

    _require_hr(store, validate_aoi(aoi), ref)
    m_path, p_path, s_path = _clean_paths(aoi)
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
    valid = np.isfinite(raw).all(axis=-1)
    if not valid.any():
        raise NoDataError(f"{aoi}: no valid pixel in the clean revisits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        composite = np.nanmedian(np.where(valid[..., None], raw, np.nan), axis=0).astype(np.float32)
    comp_valid = np.isfinite(composite).all(axis=-1)
    filled_comp = _fill_nearest(composite, comp_valid)
    frames = np.where(valid[..., None], raw, filled_comp[None]).astype(np.float32)
    scale = float(composite[comp_valid].max())
    if not scale > 0:
        raise NoDataError(f"{aoi}: the composite has no positive reflectance")
    hr = sharp["rgbn"].sel(band=["red", "green", "blue"]).transpose("y", "x", "band")
    target = match_target(hr.values, filled_comp, comp_valid)
    try:
        crs = sharp.rio.crs
        bounds = tuple(float(b) for b in sharp.rio.bounds())
    except Exception as err:  # rioxarray raises several types for a missing grid
        raise DataAccessError(f"{p_path}: not georeferenced ({err})") from err
    return CleanSample(
        aoi=aoi, frames=frames, valid=valid, composite=composite, dates=dates,
        hr_date=np.datetime64(subset["hr_date"], "D"), target=target, uint8_scale=scale,
        crs=crs.to_wkt() if crs is not None else "EPSG:4326", bounds=bounds,  # type: ignore[arg-type]
        versions=versions,
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


def fit_colour_map_paper(root: str | Path, aois: Sequence[str] | None = None) -> ColourMap:
    """The P colour map: :meth:`ColourMap.fit` on the given (default: the 21 training) AOIs."""
    aois = list(aois) if aois is not None else paper_train_aois(root)
    return ColourMap.fit((s.frames, s.target) for s in (load_paper_sample(root, a) for a in aois))


# ---------------------------------------------------------------------------- protocol C scores


def _gauss(a: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(a, 1.5, truncate=3.5, mode="reflect")


class _SsimTarget:
    """Target-side statistics of SSIM (Gaussian means and second moments), computed once."""

    def __init__(self, target: np.ndarray, valid: np.ndarray, data_range: float) -> None:
        self.c1, self.c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        self.keep = valid[_SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD]
        self.y = [np.ascontiguousarray(target[..., c], dtype=np.float64) for c in range(target.shape[2])]
        self.uy = [_gauss(y) for y in self.y]
        self.yy = [_gauss(y * y) for y in self.y]

    def __call__(self, pred: np.ndarray) -> float:
        """SSIM as :func:`stliif.metrics.ssim`, the map averaged over the valid pixels only."""
        if not self.keep.any():
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
            values.append(s[_SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD][self.keep].mean(dtype=np.float64))
        return float(np.mean(values))


def _cpsnr_masked(
    p: np.ndarray, t: np.ndarray, valid: np.ndarray, *, data_range: float, max_shift: int
) -> float:
    """:func:`stliif.metrics.cpsnr` (same variant) over the valid target pixels only.

    Differences are taken in float32 (channels first, for speed); sums of squares by BLAS
    float32 dot products, means in float64: within 1e-4 dB of the float64 reference.
    """
    m = int(max_shift)
    h, w = p.shape[:2]
    mk = valid[m : h - m, m : w - m]
    n = int(mk.sum())
    if n == 0:
        return math.nan
    mf = mk.astype(np.float32)
    pc = np.ascontiguousarray(np.moveaxis(p, -1, 0), dtype=np.float32)
    tc = np.ascontiguousarray(np.moveaxis(t[m : h - m, m : w - m], -1, 0), dtype=np.float32)
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
    best = max(best, 0.0)
    return math.inf if best == 0 else 10.0 * math.log10(data_range * data_range / best)


class _CleanTarget:
    """A protocol C target at one scale, with everything scoring needs precomputed."""

    def __init__(self, target: np.ndarray, uint8_scale: float) -> None:
        t = np.asarray(target, dtype=np.float32)
        if t.ndim != 3 or t.shape[-1] != 3:
            raise InvalidInputError(f"target must be (S, S, 3), got {t.shape}")
        self.shape = t.shape
        self.valid = np.isfinite(t).all(axis=-1)
        if not self.valid.any():
            raise NoDataError("the target has no valid pixel")
        self.scale = float(uint8_scale)
        self.vf = self.valid[..., None]
        self.n = float(self.valid.sum() * t.shape[-1])
        self.t8 = reflectance_to_uint8(t, self.scale)
        self.t8f = self.t8.astype(np.float64)
        self.t_zero = np.where(self.vf, t, np.float32(0.0)).astype(np.float64)
        self._ssim: dict[str, _SsimTarget] = {}

    def ssim(self, level: str) -> _SsimTarget:
        """SSIM against this target at ``"uint8"`` or ``"refl"`` level (built on first use).

        Invalid target pixels take their nearest valid pixel's value (so the SSIM windows that
        straddle them are defined); the map is averaged over valid pixels only.
        """
        if level not in self._ssim:
            base = self.t8f if level == "uint8" else self.t_zero
            filled = _fill_nearest(base, self.valid)
            rng = _PEAK if level == "uint8" else CLEAN_REFLECTANCE_RANGE
            self._ssim[level] = _SsimTarget(filled, self.valid, rng)
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
        "psnr": math.inf if mse8 == 0 else 10 * math.log10(_PEAK * _PEAK / mse8),
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
        rec["cpsnr_refl"] = _cpsnr_masked(
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

    Returns:
        ``{name: EvalResult}`` with ``len(samples) * len(scales)`` records each.
    """
    _check_scales(scales)
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in predictors}
    seconds = dict.fromkeys(predictors, 0.0)
    for aoi, sample in samples.items():
        for scale, size in scales.items():
            target = sample.target_at(int(size))
            scoring = _CleanTarget(target, sample.uint8_scale)
            for name, predictor in predictors.items():
                start = time.perf_counter()
                pred = predictor(
                    sample.frames, size=int(size), dates=sample.dates, target_date=sample.hr_date
                )
                pred = np.asarray(pred)
                if np.issubdtype(pred.dtype, np.number):
                    pred = pred.astype(np.float32)
                if on_prediction is not None:
                    on_prediction(
                        PredictionEvent("clean", name, aoi, scale, pred, target, sample.frames,
                                        sample.uint8_scale, sample.crs, sample.bounds)
                    )  # fmt: skip
                scores = _score(pred, scoring, ssim=ssim, cpsnr=cpsnr)
                records[name].append({"aoi": aoi, "scale": scale, "size": int(size), **scores})
                seconds[name] += time.perf_counter() - start
    return {
        k: EvalResult(k, "clean", records[k], CLEAN_METRICS, seconds[k]) for k in predictors
    }


def _check_scales(scales: Mapping[str, int]) -> None:
    if not scales:
        raise InvalidInputError("no scales to evaluate")
    for s, size in scales.items():
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 11:
            raise InvalidInputError(f"scale {s!r}: size must be an int >= 11, got {size!r}")


# ------------------------------------------------------------------------------- both protocols


def _fingerprint(paths: Iterable[Path]) -> str:
    """Names, sizes and modification times of files (cheap content key), like the import stage."""
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = p.stat()
        except OSError as err:
            raise DataAccessError(f"{p}: file missing ({err})") from err
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


@dataclass(frozen=True)
class _Plan:
    protocol: str
    model: str
    aois: list[str]
    train: list[str]
    inputs: dict[str, str]
    notes: list[str]
    ref: str | None


def _paper_reference_files(root: Path, aois: Iterable[str]) -> list[Path]:
    ref = root / "reference"
    files = [ref / "study_temporal_selection.csv"]
    for a in aois:
        files += sorted((ref / "temporal_subset" / a).glob("*.png"))
        files.append(ref / "hr_adapted" / f"{a}_adapted_x6.png")
        files += sorted((root / "lr_dataset" / a / "L2A").glob("*.metadata"))
    return files


def evaluation_plan(
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    store: ArtifactStore | None = None,
    ref: str | None = None,
    aois: Sequence[str] | None = None,
) -> _Plan:
    """Which AOIs are evaluated and fitted on, and the versions of everything read.

    Cheap (no pixels are read): it decides whether a committed evaluation is up to date.
    """
    check_protocol(protocol)
    name = model_name(model)
    if aois is not None and (isinstance(aois, str) or not aois):
        raise InvalidInputError(f"aois must be a non-empty list of names, got {aois!r}")
    notes: list[str] = []
    inputs: dict[str, str] = {}
    if protocol == "paper":
        if data is None:
            raise InvalidInputError("protocol paper needs the WorldStrat data root (--data)")
        root = Path(data).expanduser()
        train = paper_train_aois(root)
        evaluated = [validate_name(a, what="AOI") for a in (aois or PAPER_TEST_AOIS)]
        inputs["reference"] = _fingerprint(_paper_reference_files(root, [*evaluated, *train]))
        split_test = list(PAPER_TEST_AOIS)
    else:
        if store is None:
            raise InvalidInputError("protocol clean needs the artifact store (--store)")
        ref = ref or store.snapshot_id()
        version = store.version("splits/paper", ref=ref)
        if version is None:
            raise NoDataError(
                "the store has no splits/paper manifest: run `stliif etl` over all AOIs "
                "(the paper split needs the study's 10 test AOIs)"
            )
        manifest = store.read_json("splits/paper", ref=ref)
        inputs["splits/paper"] = version
        train = list(manifest["train"])
        split_test = list(manifest["test"])
        evaluated = [validate_aoi(a) for a in (aois or split_test)]
        for a in [*evaluated, *train]:
            _require_hr(store, a, ref)
            for p in _clean_paths(a):
                v = store.version(p, ref=ref)
                if v is None:
                    raise NoDataError(
                        f"artifact {p!r} is missing from the store: run `stliif etl --aoi {a}` first"
                    )
                inputs[p] = v
    if len(set(evaluated)) != len(evaluated):
        raise InvalidInputError(f"duplicate AOIs in {evaluated}")
    leaked = [a for a in evaluated if a in train]
    if leaked:
        notes.append(
            f"AOIs {leaked} are training AOIs of the split: the median-colour baseline was "
            "fitted on them"
        )
    other = [a for a in evaluated if a not in split_test and a not in train]
    if other:
        notes.append(f"AOIs {other} are not test AOIs of the split")
    path = Path(str(model)).expanduser()
    if path.is_dir():
        path = path / "best.pt"  # a run folder: its best checkpoint
    if name not in BASELINE_NAMES and path.is_file():
        inputs["checkpoint"] = _file_digest(path)
    return _Plan(protocol, name, evaluated, train, inputs, notes, ref)


def evaluate_protocol(
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    store: ArtifactStore | None = None,
    ref: str | None = None,
    aois: Sequence[str] | None = None,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
    on_prediction: OnPrediction | None = None,
    n_boot: int = 10000,
) -> Evaluation:
    """Evaluate a model and the four baselines on protocol P or C, with paired deltas.

    Args:
        protocol: ``"paper"`` (needs ``data``) or ``"clean"`` (needs ``store``).
        model: Baseline name or checkpoint path (see :func:`get_predictor`).
        data: WorldStrat root with ``reference/`` (P).
        store: Artifact store with the ETL's clean artifacts and ``splits/paper`` (C).
        ref: Branch, tag or snapshot to read (C; default: the branch head, pinned at the start).
        aois: AOIs to evaluate (default: the split's test AOIs).
        scales: ``{name: side}`` (default x2/x4/x6 = 314/628/1054).
        ssim: Compute SSIM (the slow part).
        on_prediction: Called with a :class:`PredictionEvent` for every prediction of every
            method before it is scored (to save predictions or keep crops).
        n_boot: Bootstrap resamples of the paired deltas.

    Returns:
        An :class:`Evaluation`.
    """
    start = time.perf_counter()
    _check_scales(scales)
    plan = evaluation_plan(protocol, model, data=data, store=store, ref=ref, aois=aois)
    name = plan.model
    if name not in BASELINE_NAMES:
        get_predictor(model, protocol=protocol)  # fails early when it cannot be loaded
    if protocol == "paper":
        assert data is not None
        root = Path(data).expanduser()
        cmap = fit_colour_map_paper(root, plan.train)
        samples = load_paper_samples(root, plan.aois, with_dates=True)
        predictors: dict[str, Predictor] = {
            b: get_predictor(b, protocol="paper", colour_map=cmap) for b in BASELINE_NAMES
        }
        if name not in predictors:
            predictors[name] = get_predictor(model, protocol="paper")
        results = {}
        for key, pred in predictors.items():
            hook = None
            if on_prediction is not None:
                hook = _paper_hook(on_prediction, key, samples)
            res = evaluate_paper(
                pred, root, aois=plan.aois, scales=scales, ssim=ssim, samples=samples,
                name=key, on_prediction=hook,
            )  # fmt: skip
            results[key] = EvalResult.from_paper(res)
    else:
        assert store is not None
        train = [load_clean_sample(store, a, ref=plan.ref) for a in plan.train]
        cmap = fit_colour_map_clean(train)
        del train
        csamples = {a: load_clean_sample(store, a, ref=plan.ref) for a in plan.aois}
        predictors = {b: get_predictor(b, protocol="clean", colour_map=cmap) for b in BASELINE_NAMES}
        if name not in predictors:
            predictors[name] = get_predictor(model, protocol="clean")
        results = evaluate_clean(
            predictors, csamples, scales=scales, ssim=ssim, on_prediction=on_prediction
        )
    result = results[name]
    baselines = {b: results[b] for b in BASELINE_NAMES}
    deltas: dict[str, dict[str, dict[str, PairedDelta]]] = {}
    for b, base in baselines.items():
        if b == name:
            continue
        for s in result.scales:
            for m in DELTA_METRICS[protocol]:
                a_vals, b_vals = result.values(m, s), base.values(m, s)
                if all(math.isfinite(v) for v in [*a_vals.values(), *b_vals.values()]):
                    deltas.setdefault(b, {}).setdefault(s, {})[m] = paired_deltas(
                        a_vals, b_vals, n_boot=n_boot
                    )
    return Evaluation(
        protocol, name, result, baselines, deltas, train_aois=plan.train, notes=plan.notes,
        inputs=plan.inputs, seconds=time.perf_counter() - start,
    )  # fmt: skip


def _paper_hook(on_prediction: OnPrediction, name: str, samples: Mapping[str, Any]) -> Callable[[str, str, np.ndarray], None]:
    def hook(aoi: str, scale: str, pred: np.ndarray) -> None:
        s = samples[aoi]
        p = np.asarray(pred)
        size = p.shape[-2]
        on_prediction(
            PredictionEvent("paper", name, aoi, scale, to_uint8(p), s.target_at(int(size)), s.frames)
        )

    return hook


# ----------------------------------------------------------------------------- saved predictions


def save_prediction(event: PredictionEvent, out_dir: str | Path) -> list[Path]:
    """Write the exact scored image(s) of ``event``.

    P: PNG ``<AOI>_<scale>.png`` (uint8 RGB). C: GeoTIFF ``<AOI>_<scale>.tif``, 3 float32
    bands (R, G, B reflectance) on the HR footprint (CRS of the HR grid, transform =
    ``from_bounds(HR bounds, S, S)``), tags ``uint8_scale``, ``model``, ``protocol``. A stack
    (per-frame bicubic) gives one file per image, ``..._frame<k>`` (k = 1..K).

    Returns:
        The written paths.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    pred = np.asarray(event.prediction)
    images = pred[None] if pred.ndim == 3 else pred
    stems = (
        [f"{event.aoi}_{event.scale}"]
        if pred.ndim == 3
        else [f"{event.aoi}_{event.scale}_frame{k + 1}" for k in range(len(images))]
    )
    paths = []
    for stem, img in zip(stems, images, strict=True):
        if event.protocol == "paper":
            path = out / f"{stem}.png"
            Image.fromarray(to_uint8(img)).save(path)
        else:
            path = out / f"{stem}.tif"
            _write_geotiff(path, img.astype(np.float32), event)
        paths.append(path)
    return paths


def _write_geotiff(path: Path, img: np.ndarray, event: PredictionEvent) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    assert event.bounds is not None
    h, w = img.shape[:2]
    try:
        with rasterio.open(
            path, "w", driver="GTiff", height=h, width=w, count=img.shape[2], dtype="float32",
            crs=event.crs, transform=from_bounds(*event.bounds, w, h), compress="deflate",
        ) as dst:  # fmt: skip
            dst.write(np.moveaxis(img, -1, 0))
            dst.update_tags(
                protocol=event.protocol, model=event.model, aoi=event.aoi, scale=event.scale,
                uint8_scale=repr(float(event.uint8_scale or 0.0)), units="surface reflectance",
            )  # fmt: skip
            for i, band in enumerate(("red", "green", "blue"), start=1):
                dst.set_band_description(i, band)
    except rasterio.errors.RasterioError as err:
        raise DataAccessError(f"{path}: cannot write GeoTIFF ({err})") from err


# ---------------------------------------------------------------------------- committed results


def metrics_path(model: str | Path, protocol: str) -> str:
    """Store path of a committed evaluation: ``metrics/<model>/<protocol>``."""
    return f"metrics/{model_name(model)}/{check_protocol(protocol)}"


@dataclass(frozen=True)
class EvaluationRun:
    """A reference to what :func:`run_evaluation` did (small: passed between Prefect tasks)."""

    status: str  # "committed" or "unchanged"
    path: str
    run_key: str
    snapshot_id: str
    means: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


def evaluation_key(
    store: ArtifactStore,
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    aois: Sequence[str] | None = None,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
) -> tuple[str, dict[str, Any], dict[str, str], _Plan]:
    """Run key of an evaluation now: ``(key, params, inputs, plan)`` (no pixels read)."""
    plan = evaluation_plan(protocol, model, data=data, store=store, aois=aois)
    params = {
        "protocol": protocol, "model": plan.model, "aois": plan.aois,
        "scales": {k: int(v) for k, v in scales.items()}, "ssim": bool(ssim),
    }  # fmt: skip
    return run_key("evaluate", params, plan.inputs), params, plan.inputs, plan


def run_evaluation(
    store: ArtifactStore,
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    aois: Sequence[str] | None = None,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
    run_id: str | None = None,
    report: Callable[[Evaluation], str] | None = None,
) -> EvaluationRun:
    """Evaluate and commit ``{"evaluation": ..., "report": markdown}`` at ``metrics/<model>/<protocol>``.

    The run key covers the parameters, the versions of every input artifact (C) or the
    fingerprint of the reference files (P), and the code version: when the committed document
    already carries it, nothing is computed or committed (``status="unchanged"``).

    Args:
        store: The artifact store (inputs of C are read from it; results are committed to it).
        protocol: ``"paper"`` or ``"clean"``.
        model: Baseline name or checkpoint path.
        data: WorldStrat root (P).
        aois: AOIs to evaluate (default: the split's test AOIs).
        scales: ``{name: side}``.
        ssim: Compute SSIM.
        run_id: Recorded in the commit metadata (e.g. the Prefect flow run id).
        report: Builds the markdown report text (default: :func:`stliif.report_eval.markdown_report`).
    """
    key, params, inputs, plan = evaluation_key(
        store, protocol, model, data=data, aois=aois, scales=scales, ssim=ssim
    )
    path = f"metrics/{plan.model}/{protocol}"
    if store.version(path) == key:
        doc = store.read_json(path)
        return EvaluationRun("unchanged", path, key, store.snapshot_id(), doc["evaluation"]["means"])
    ev = evaluate_protocol(
        protocol, model, data=data, store=store if protocol == "clean" else None, ref=plan.ref,
        aois=plan.aois, scales=scales, ssim=ssim,
    )  # fmt: skip
    if report is None:
        from stliif.report_eval import markdown_report

        report = markdown_report
    doc = {"evaluation": ev.to_dict(), "report": report(ev)}
    doc = json.loads(json.dumps(doc, default=str))
    res = store.commit(
        {path: doc}, stage="evaluate", params=params, inputs=inputs, run_id=run_id,
        message=f"evaluate {plan.model} {protocol}",
    )  # fmt: skip
    return EvaluationRun(
        "committed" if res.created else "unchanged", path, res.run_key, res.snapshot_id,
        doc["evaluation"]["means"],
    )  # fmt: skip
