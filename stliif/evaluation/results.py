"""Evaluation results: per-AOI scores, a model against every baseline, paired deltas, definitions.

The types every protocol returns (:class:`EvalResult`, :class:`Evaluation`,
:class:`PredictionEvent`) and the exact metric and protocol definitions printed in reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from stliif import code_version
from stliif.errors import InvalidInputError
from stliif.models.baselines import to_uint8
from stliif.models.predictor import reflectance_to_uint8

__all__ = [
    "CLEAN_CPSNR_SHIFT",
    "CLEAN_METRICS",
    "CLEAN_REFLECTANCE_RANGE",
    "DEFINITIONS",
    "DELTA_METRICS",
    "PAPER_METRICS",
    "EvalResult",
    "Evaluation",
    "OnPrediction",
    "PairedDelta",
    "PredictionEvent",
    "ProtocolName",
    "check_scales",
    "paired_deltas",
]

ProtocolName = Literal["paper", "clean"]
_CONSISTENCY = ("cons_mae", "cons_sam", "cons_shift", "synthesis", "improvement", "omission", "hallucination")
PAPER_METRICS: tuple[str, ...] = ("mse", "psnr", "ssim", *_CONSISTENCY)
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

DEFINITIONS: dict[str, str] = {
    "paper": (
        "Protocol P: inputs reference/temporal_subset/<AOI>/1..5.png (uint8 RGB), target "
        "reference/hr_adapted/<AOI>_adapted_x6.png (1054 px; x4, x2 = Pillow BICUBIC resizes to "
        "628, 314 px). Predictions rounded half to even and clipped to uint8. MSE over all pixels "
        "and channels; PSNR = 10 log10(255^2 / MSE), whole image, no border shave; SSIM: Gaussian "
        "window 11 px, sigma 1.5, K1 0.01, K2 0.03, population covariance, data_range 255, mean "
        "of per-channel SSIM after a 5-px border crop. Per-frame bicubic is scored per frame and "
        "averaged. Means are unweighted over AOIs. Test AOIs: the study's 10; colour map fitted "
        "on the other 21. Consistency (opensr-test's definitions, stliif.consistency): the "
        "prediction (uint8 / 255) averaged over the output pixels whose centres fall in each LR "
        "pixel, against the input frames interpolated linearly in time at the HR date: mean "
        "absolute error, spectral angle (degrees), phase-correlation shift (LR px); synthesis = "
        "mean |SR - bilinear(LR)|; improvement / omission / hallucination = shares of 8-px "
        "patches by opensr-test's scores (lambda 0.8) against the HR target."
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
        "averaged. Test AOIs: splits/paper test; colour map fitted on splits/paper train only. "
        "Four bands (where matched/clean holds NIR): NIR frames gap-filled as RGB; NIR target = "
        "pansharpened SPOT NIR CDF-matched (per band) to the upsampled NIR composite; NIR of "
        "bicubic/median/linear their own, of RGB-only methods (colour map, checkpoints) the "
        "inputs' low frequencies (product constraint of a zero output); PSNR ρ per band "
        "(data_range 1); NDVI LR MAE = mean |block-mean NDVI(output) - NDVI(inputs interpolated "
        "in time)|; NDVI HR MAE = mean |NDVI(output) - NDVI(target)| over valid target pixels."
    ),
    "deltas": (
        "Paired per-AOI deltas model - baseline; mean over AOIs with a 95 % percentile-bootstrap "
        "CI (10000 resamples of the AOIs, numpy default_rng(0))."
    ),
}
"""Exact metric and protocol definitions, as printed in reports."""



def check_scales(scales: Mapping[str, int]) -> None:
    """Refuse an empty ``{name: side}`` mapping or a side that is not an int >= 11."""
    if not scales:
        raise InvalidInputError("no scales to evaluate")
    for s, size in scales.items():
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 11:
            raise InvalidInputError(f"scale {s!r}: size must be an int >= 11, got {size!r}")


@dataclass
class EvalResult:
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

    @property
    def scales(self) -> list[str]:
        """Scales in record order."""
        return list(dict.fromkeys(r["scale"] for r in self.records))

    @property
    def aois(self) -> list[str]:
        """AOIs in record order."""
        return list(dict.fromkeys(r["aoi"] for r in self.records))

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
            },
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


@dataclass(frozen=True)
class PairedDelta:
    """Mean paired difference ``a - b`` over AOIs with a percentile-bootstrap CI.

    Attributes:
        mean: Mean of the per-AOI deltas.
        ci_low: Lower bound of the ``confidence`` interval of the mean.
        ci_high: Upper bound.
        n: Number of AOIs.
        deltas: ``{aoi or index: delta}``.
        confidence: Level of the interval (0.95).
        n_boot: Bootstrap resamples.
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    deltas: dict[str | int, float]
    confidence: float = 0.95
    n_boot: int = 10000

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.mean:+.3f} [{pct}% CI {self.ci_low:+.3f}, {self.ci_high:+.3f}] (n={self.n})"


def paired_deltas(
    a: Mapping[str, float] | Sequence[float],
    b: Mapping[str, float] | Sequence[float],
    *,
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDelta:
    """Mean per-AOI delta ``a - b`` with a percentile-bootstrap confidence interval.

    AOIs are resampled with replacement ``n_boot`` times (numpy ``default_rng(seed)``); the CI is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the resampled means.

    Args:
        a: Per-AOI values of the candidate, ``{aoi: value}`` (paired by key; the key sets must be
            equal) or a sequence (paired by position).
        b: Per-AOI values of the reference, same form.
        n_boot: Number of bootstrap resamples (>= 1).
        seed: RNG seed.
        confidence: Interval level in (0, 1).
    """
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise InvalidInputError("a and b must both be mappings or both be sequences")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            raise InvalidInputError(f"a and b cover different AOIs: {sorted(set(a) ^ set(b))}")
        d = np.array([float(a[k]) - float(b[k]) for k in a], dtype=np.float64)
        keys: list[str | int] = list(a)
    else:
        av = np.asarray(a, dtype=np.float64)
        bv = np.asarray(b, dtype=np.float64)
        if av.ndim != 1 or av.shape != bv.shape:
            raise InvalidInputError(
                f"a and b must be 1-D of equal length, got {av.shape}, {bv.shape}"
            )
        keys = list(range(av.size))
        d = av - bv
    if d.size == 0:
        raise InvalidInputError("no pairs")
    if not np.all(np.isfinite(d)):
        raise InvalidInputError("deltas must be finite")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise InvalidInputError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise InvalidInputError(f"confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    n = d.size
    means = np.empty(int(n_boot))
    chunk = max(1, 2_000_000 // n)
    for start in range(0, int(n_boot), chunk):
        stop = min(int(n_boot), start + chunk)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedDelta(
        mean=float(d.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        n=int(n),
        deltas={k: float(v) for k, v in zip(keys, d, strict=True)},
        confidence=float(confidence),
        n_boot=int(n_boot),
    )
