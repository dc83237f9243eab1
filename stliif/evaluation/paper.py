"""Protocol P: the original study's evaluation, reproduced exactly.

Per AOI the inputs are the 5 revisits ``reference/temporal_subset/<AOI>/{1..5}.png`` (uint8 RGB,
chronological) and the target is ``reference/hr_adapted/<AOI>_adapted_x6.png`` (1054x1054); the
x4 and x2 targets are Pillow BICUBIC resizes of it to 628 and 314 px. A predictor (see
:class:`stliif.models.baselines.Predictor`) produces a square uint8 RGB image per AOI and scale;
PSNR = 10 log10(255^2 / MSE) over the whole image and all channels, SSIM with the settings of
:func:`stliif.metrics.ssim`; per-AOI values are averaged over AOIs. A predictor that returns a
``(K, S, S, 3)`` stack (the study's per-frame bicubic) is scored per image and its metrics
averaged over the K images, as the study did.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from stliif.errors import DataAccessError, InvalidInputError, ModelError
from stliif.evaluation.consistency import lr_hr_scores
from stliif.evaluation.results import PAPER_METRICS, EvalResult, check_scales
from stliif.metrics import mse as _mse
from stliif.metrics import ssim as _ssim
from stliif.models.baselines import ColourMap, Predictor, resize, to_uint8
from stliif.models.predictor import UINT8_PEAK, predictor_bands
from stliif.preprocess.split import PAPER_TEST_AOIS
from stliif.sources.worldstrat_metadata import read_metadata

__all__ = [
    "PAPER_HR_SIZE",
    "PAPER_N_FRAMES",
    "PAPER_SCALES",
    "PAPER_TEST_AOIS",
    "PaperSample",
    "evaluate_paper",
    "fit_colour_map_paper",
    "load_paper_dates",
    "load_paper_sample",
    "load_paper_samples",
    "paper_aois",
    "paper_train_aois",
    "score_image",
]


PAPER_SCALES: dict[str, int] = {"x2": 314, "x4": 628, "x6": 1054}
"""Scale name -> side of the square output and target (x6 is really 1054/157 = 6.71x)."""

PAPER_HR_SIZE = 1054
PAPER_N_FRAMES = 5


def _check_root(root: str | Path) -> Path:
    r = Path(root).expanduser()
    ref = r / "reference"
    if not (ref / "temporal_subset").is_dir() or not (ref / "hr_adapted").is_dir():
        raise InvalidInputError(
            f"{r} has no reference/temporal_subset and reference/hr_adapted: not the WorldStrat "
            "subset with the study's references (set --data or STLIIF_DATA)"
        )
    return r


def _check_aoi(aoi: str) -> str:
    if not isinstance(aoi, str) or not aoi or "/" in aoi or "\\" in aoi or aoi.startswith("."):
        raise InvalidInputError(f"invalid AOI name {aoi!r}")
    return aoi


def _read_rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataAccessError(f"{path}: file missing")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataAccessError(f"{path}: unreadable image ({err})") from err


def paper_aois(root: str | Path) -> list[str]:
    """All AOIs of ``root/lr_dataset`` (31 in the subset), sorted."""
    lr = Path(root).expanduser() / "lr_dataset"
    if not lr.is_dir():
        raise InvalidInputError(f"{lr}: no lr_dataset folder (set --data or STLIIF_DATA)")
    return sorted(p.name for p in lr.iterdir() if p.is_dir())


def paper_train_aois(root: str | Path) -> list[str]:
    """The study's training AOIs: every AOI of ``lr_dataset`` not in :data:`PAPER_TEST_AOIS`."""
    return [a for a in paper_aois(root) if a not in PAPER_TEST_AOIS]


class TargetSizes:
    """``target_at(size)`` of a sample: its native target, or the Pillow bicubic resize of it
    (uint8 for a uint8 target, float for a float one, NaN spreading), computed once per size."""

    target: np.ndarray
    _cache: dict[int, np.ndarray]

    def target_at(self, size: int) -> np.ndarray:
        """The target at ``size`` px."""
        if size == self.target.shape[0]:
            return self.target
        if size not in self._cache:
            self._cache[size] = resize(self.target, size)
        return self._cache[size]


@dataclass(frozen=True)
class PaperSample(TargetSizes):
    """One AOI of protocol P.

    Attributes:
        aoi: AOI name.
        frames: ``(5, H, W, 3)`` uint8, chronological (H, W: 153..163 px, per AOI).
        target: ``(1054, 1054, 3)`` uint8, the x6 ground truth.
        dates: ``(5,)`` ``datetime64[D]`` dates of the frames, ascending, or ``None`` if not loaded.
        hr_date: ``datetime64[D]`` date of the HR target, or ``None``.
    """

    aoi: str
    frames: np.ndarray
    target: np.ndarray
    dates: np.ndarray | None = None
    hr_date: np.datetime64 | None = None
    _cache: dict[int, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )



def load_paper_dates(root: str | Path, aoi: str) -> tuple[np.ndarray, np.datetime64]:
    """Dates of the study's 5 selected revisits of ``aoi`` (ascending) and its HR date.

    The revisit numbers come from ``reference/study_temporal_selection.csv``, the dates from
    their ``lr_dataset`` metadata (both dialects).

    Returns:
        ``(dates (5,) datetime64[D] ascending, hr_date datetime64[D])``.
    """

    r = Path(root).expanduser()
    _check_aoi(aoi)
    table = r / "reference" / "study_temporal_selection.csv"
    try:
        with table.open(newline="") as fh:
            rows = {row["aoi"]: row for row in csv.DictReader(fh)}
    except OSError as err:
        raise DataAccessError(f"{table}: unreadable ({err})") from err
    except (KeyError, csv.Error) as err:
        raise DataAccessError(f"{table}: malformed ({err})") from err
    if aoi not in rows:
        raise InvalidInputError(f"AOI {aoi!r} not in {table}")
    try:
        numbers = [int(v) for v in rows[aoi]["selected_revisits"].split(",")]
    except (KeyError, ValueError, AttributeError) as err:
        raise DataAccessError(f"{table}: bad selected_revisits for {aoi} ({err})") from err
    folder = r / "lr_dataset" / aoi / "L2A"
    if not folder.is_dir():
        raise DataAccessError(f"{folder}: folder missing")
    by_name = {p.name.replace(" ", "_"): p for p in folder.iterdir()}
    key = aoi.replace(" ", "_")
    dates, hr = [], []
    for n in numbers:
        path = by_name.get(f"{key}-{n}.metadata")
        if path is None:
            raise DataAccessError(f"{folder / f'{aoi}-{n}.metadata'}: metadata file missing")
        meta = read_metadata(path)
        dates.append(np.datetime64(meta["date"], "D"))
        hr.append(np.datetime64(meta["hr_date"], "D"))
    return np.sort(np.array(dates, dtype="datetime64[D]")), hr[0]


def load_paper_sample(root: str | Path, aoi: str, *, with_dates: bool = False) -> PaperSample:
    """Load the 5 input frames and the x6 target of ``aoi`` (and the dates if ``with_dates``)."""
    r = _check_root(root)
    _check_aoi(aoi)
    folder = r / "reference" / "temporal_subset" / aoi
    frames = [_read_rgb(folder / f"{i}.png") for i in range(1, PAPER_N_FRAMES + 1)]
    if len({f.shape for f in frames}) != 1:
        raise DataAccessError(f"{folder}: frames differ in size {[f.shape for f in frames]}")
    target_path = r / "reference" / "hr_adapted" / f"{aoi}_adapted_x6.png"
    target = _read_rgb(target_path)
    if target.shape != (PAPER_HR_SIZE, PAPER_HR_SIZE, 3):
        raise DataAccessError(f"{target_path}: expected 1054x1054 RGB, got {target.shape}")
    dates = hr_date = None
    if with_dates:
        dates, hr_date = load_paper_dates(r, aoi)
    return PaperSample(
        aoi=aoi, frames=np.stack(frames), target=target, dates=dates, hr_date=hr_date
    )


def load_paper_samples(
    root: str | Path,
    aois: Iterable[str] = PAPER_TEST_AOIS,
    *,
    with_dates: bool = False,
) -> dict[str, PaperSample]:
    """:func:`load_paper_sample` for several AOIs, keyed by AOI in the given order."""
    return {a: load_paper_sample(root, a, with_dates=with_dates) for a in aois}


def score_image(pred: np.ndarray, target: np.ndarray, *, ssim: bool = True) -> dict[str, float]:
    """Score one prediction (or a stack of them) against a uint8 target, as protocol P does.

    Args:
        pred: ``(S, S, 3)`` or a stack ``(K, S, S, 3)``; uint8, or float rounded half to even and
            clipped to 0..255 first.
        target: ``(S, S, 3)`` uint8.
        ssim: Compute SSIM (the costly part); ``nan`` otherwise.

    Returns:
        ``{"mse", "psnr", "ssim"}`` (data range 255); for a stack, each metric is the mean over
        the K per-image values (mean of PSNRs, not PSNR of the mean MSE).
    """
    p = np.asarray(pred)
    t = np.asarray(target)
    if p.ndim == t.ndim:
        p = p[None]
    if p.ndim != t.ndim + 1 or p.shape[1:] != t.shape or p.shape[0] < 1:
        raise ModelError(f"prediction shape {np.shape(pred)} does not match target {t.shape}")
    if p.dtype != np.uint8:
        if not np.issubdtype(p.dtype, np.number) or not np.all(np.isfinite(p)):
            raise ModelError(f"prediction must be finite numbers, got dtype {p.dtype}")
        p = to_uint8(p)
    rows = []
    for img in p:
        err = _mse(img, t)
        rows.append(
            (
                err,
                math.inf if err == 0 else 10.0 * math.log10(UINT8_PEAK * UINT8_PEAK / err),
                _ssim(img, t, data_range=UINT8_PEAK) if ssim else math.nan,
            )
        )
    m = np.mean(np.array(rows, dtype=np.float64), axis=0)
    return {"mse": float(m[0]), "psnr": float(m[1]), "ssim": float(m[2])}


def evaluate_paper(
    predictor: Predictor,
    root: str | Path,
    *,
    aois: Sequence[str] = PAPER_TEST_AOIS,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
    samples: Mapping[str, PaperSample] | None = None,
    with_dates: bool = False,
    name: str | None = None,
    on_prediction: Callable[[str, str, np.ndarray], None] | None = None,
) -> EvalResult:
    """Run ``predictor`` on protocol P and score it per AOI and scale.

    The predictor is called as ``predictor(frames, size=S, dates=dates, target_date=hr_date)``
    with the AOI's ``(5, H, W, 3)`` uint8 frames (dates are ``None`` unless the samples carry
    them) and must return ``(S, S, 3)`` (or a ``(K, S, S, 3)`` stack, scored per
    image and averaged); float outputs are rounded to uint8.

    Args:
        predictor: See :class:`stliif.models.baselines.Predictor`.
        root: WorldStrat subset root (with ``reference/``).
        aois: AOIs to evaluate; defaults to the study's 10 test AOIs.
        scales: ``{name: side}``; defaults to :data:`PAPER_SCALES`.
        ssim: Also compute SSIM (about 0.25 s per 1054^2 image on one core).
        samples: Preloaded samples by AOI (from :func:`load_paper_samples`); missing ones are
            loaded from ``root``.
        with_dates: Load the dates of the AOIs not in ``samples`` (needed by date-aware
            predictors such as :func:`stliif.models.baselines.temporal_linear`).
        name: Name stored in the result (default: the predictor's ``__name__``).
        on_prediction: Called as ``on_prediction(aoi, scale, pred)`` with every prediction
            (as returned by the predictor, before rounding) right before it is scored, e.g. to
            save it or keep crops for a report.

    Returns:
        An :class:`EvalResult` (protocol ``"paper"``) with ``len(aois) * len(scales)`` records.
    """
    if isinstance(aois, str) or not aois:
        raise InvalidInputError(f"aois must be a non-empty sequence of names, got {aois!r}")
    check_scales(scales)
    if predictor_bands(predictor) == 4:
        raise InvalidInputError(
            f"{getattr(predictor, '__name__', 'the model')} takes four bands (R, G, B, NIR): protocol P's "
            "files are RGB; evaluate it with --protocol clean"
        )
    label = name or getattr(predictor, "__name__", None) or getattr(
        getattr(predictor, "func", None), "__name__", type(predictor).__name__
    )
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    for aoi in aois:
        if samples is not None and aoi in samples:
            sample = samples[aoi]
        else:
            sample = load_paper_sample(root, aoi, with_dates=with_dates)
        for scale, size in scales.items():
            pred = predictor(
                sample.frames, size=int(size), dates=sample.dates, target_date=sample.hr_date
            )
            if on_prediction is not None:
                on_prediction(aoi, scale, pred)
            target = sample.target_at(int(size))
            scores = score_image(pred, target, ssim=ssim)
            p8 = pred if np.asarray(pred).dtype == np.uint8 else to_uint8(np.asarray(pred))
            scores.update(lr_hr_scores(p8, sample.frames, sample.dates, sample.hr_date, target, peak=UINT8_PEAK))
            records.append({"aoi": aoi, "scale": scale, "size": int(size), **scores})
    return EvalResult(str(label), "paper", records, PAPER_METRICS, time.perf_counter() - start)


def fit_colour_map_paper(root: str | Path, aois: Sequence[str] | None = None) -> ColourMap:
    """The P colour map: :meth:`ColourMap.fit` on the given (default: the 21 training) AOIs."""
    aois = list(aois) if aois is not None else paper_train_aois(root)
    return ColourMap.fit((s.frames, s.target) for s in (load_paper_sample(root, a) for a in aois))
