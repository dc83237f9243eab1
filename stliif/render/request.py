"""What a render request means before any pixel: model, dates, revisits, scale, grid, budget.

The rules of :mod:`stliif.render` in functions a request is checked with: the revisits a date
uses (:func:`select_revisits`, :func:`temporal_support`), the dates of a series
(:func:`series_dates`), the scale (``scale`` or ``gsd``), the output grid, the memory budget of
an in-memory render (:func:`check_render_budget`) and the model
(:func:`load_predictor`, :func:`model_id`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from stliif.errors import InvalidInputError, NoDataError
from stliif.models.predictor import model_name
from stliif.models.window import BaselineWindow, WindowPredictor

__all__ = [
    "BYTES_PER_OUTPUT_PIXEL",
    "NIR_MODEL",
    "NIR_SOURCE",
    "RGBN_BANDS",
    "RGB_BANDS",
    "check_render_budget",
    "load_predictor",
    "model_id",
    "nir_text",
    "render_bands",
    "select_revisits",
    "series_dates",
    "temporal_support",
]

RGB_BANDS = ("B04", "B03", "B02")
RGBN_BANDS = ("B04", "B03", "B02", "B08")
"""A product render's bands: Sentinel-2 red, green, blue and near infrared (SPOT's R, G, B, NIR)."""
NIR_SOURCE = (
    "B08: the inputs' low frequencies only (product-mode constraint of a zero model output: "
    "bilinear time-interpolated input NIR, block means equal to the inputs'); the checkpoint is RGB "
    "and adds no NIR detail"
)
"""The COG tag ``nir_source`` of a four-band render of an RGB model."""
NIR_MODEL = "model"
"""The COG tag ``nir_source`` of a four-band model's render: its NIR is the model's own."""


def nir_text(source: str) -> str:
    """What a render's ``nir_source`` tag says, for people (the CLI, the Prefect card)."""
    return "B08: the model's own (a four-band checkpoint)" if source == NIR_MODEL else source


def render_bands(cube: Any, mode: str, model_bands: int = 3) -> tuple[str, ...]:
    """The bands a render writes: a four-band model's four (:data:`RGBN_BANDS`, in both modes);
    for an RGB model four in product mode when the cube has B08, else the three it predicts
    (paper mode is the model's output as protocol P scores it).

    Raises:
        InvalidInputError: A four-band model and a cube without B08.
    """
    bands = {str(b) for b in cube["band"].values}
    if model_bands == 4:
        if "B08" not in bands:
            raise InvalidInputError("this model takes four bands (B04, B03, B02, B08): the cube has no B08")
        return RGBN_BANDS
    return RGBN_BANDS if mode == "product" and "B08" in bands else RGB_BANDS
S2_GSD_M = 10.0


def load_predictor(model: str | Path | WindowPredictor) -> WindowPredictor:
    """The windowed predictor (:class:`~stliif.models.window.WindowPredictor`) of a checkpoint
    file, a run folder (``best.pt``) or a baseline name (``bicubic``, ``median``, ``linear``).

    A checkpoint's output calibration is kept without its blend with the time-invariant median
    (weight 1: a render must follow the query date) and without the grid offset of the study's
    targets (a render stays on the inputs' georeferenced grid); the V-mean match stays.
    """
    if isinstance(model, WindowPredictor):
        return model
    name = model_name(model)
    if name in BaselineWindow.NAMES:
        return BaselineWindow(name)
    from stliif.models.predictor import get_predictor

    pred = get_predictor(model, protocol="paper")
    if not isinstance(pred, WindowPredictor):
        raise InvalidInputError(f"{name}: this model cannot render windows (a tiled render needs predict_window)")
    cal = getattr(pred, "calibration", None)
    if cal is not None:
        pred.calibration = dataclasses.replace(cal, weight=1.0, offset=(0.0, 0.0))  # type: ignore[attr-defined]
    return pred


def _date(value: Any, what: str = "date") -> np.datetime64:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"invalid {what} {value!r}: use YYYY-MM-DD") from err
    if ts is pd.NaT:
        raise InvalidInputError(f"invalid {what} {value!r}: use YYYY-MM-DD")
    return np.datetime64(ts.tz_localize(None) if ts.tzinfo else ts, "s")


def _days(times: Any) -> np.ndarray:
    """Acquisition days (the time of day dropped), as ``datetime64[s]`` at midnight."""
    out = np.asarray(times, dtype="datetime64[s]").astype("datetime64[D]").astype("datetime64[s]")
    return out[()] if out.ndim == 0 else out


def _scale(cube: xr.Dataset, scale: float | None, gsd: float | None) -> float:
    if (scale is None) == (gsd is None):
        raise InvalidInputError("give exactly one of scale and gsd")
    if gsd is not None:
        if not (isinstance(gsd, int | float) and math.isfinite(gsd) and gsd > 0):
            raise InvalidInputError(f"gsd must be a positive number of metres, got {gsd!r}")
        crs = cube.rio.crs
        native = abs(cube.rio.resolution()[0]) if crs is not None and crs.is_projected else S2_GSD_M
        scale = native / float(gsd)
    if not (isinstance(scale, int | float) and math.isfinite(scale) and 0 < scale <= 16):
        raise InvalidInputError(f"scale must be a number in (0, 16], got {scale!r}")
    return float(scale)


def select_revisits(
    times: np.ndarray,
    date: Any,
    *,
    k: int = 5,
    clear_fraction: np.ndarray | None = None,
    min_clear: float = 0.5,
) -> np.ndarray:
    """Indices of the ``k`` usable revisits closest to ``date`` by acquisition day (ties: earlier
    first), in date order.

    Raises:
        NoDataError: No revisit has a clear fraction of at least ``min_clear``.
    """
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    t = _days(times)
    usable = np.ones(t.shape[0], bool) if clear_fraction is None else np.asarray(clear_fraction) >= min_clear
    if not usable.any():
        raise NoDataError(f"no revisit is at least {min_clear:.0%} clear")
    cand = np.flatnonzero(usable)
    gap = np.abs((t[cand] - _days(_date(date))).astype(np.int64))
    chosen = cand[np.lexsort((t[cand].astype(np.int64), gap))[:k]]
    return np.sort(chosen)


def temporal_support(
    times: np.ndarray,
    when: Any,
    *,
    k: int = 5,
    clear_fraction: np.ndarray | None = None,
    min_clear: float = 0.5,
    max_gap_days: float = 30.0,
    allow_far: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, str]:
    """The revisits a render at ``when`` uses: ``(indices, gaps in days, nearest gap, support)``.

    Raises:
        InvalidInputError: ``when`` is farther than ``max_gap_days`` from every usable revisit
            (unless ``allow_far``).
        NoDataError: No usable revisit.
    """
    when = _days(_date(when))
    t = _days(times)
    idx = select_revisits(t, when, k=k, clear_fraction=clear_fraction, min_clear=min_clear)
    gaps = (t[idx] - when).astype(np.int64) / 86400.0
    nearest = float(np.min(np.abs(gaps)))
    support = "at revisit" if nearest == 0 else ("interpolated" if gaps.min() < 0 < gaps.max() else "extrapolated")
    if nearest > max_gap_days and not allow_far:
        raise InvalidInputError(
            f"{str(when)[:10]} is {nearest:.0f} days from the nearest usable revisit (limit "
            f"{max_gap_days:g}): outside the model's temporal support; pass allow_far to render anyway"
        )
    return idx, gaps, nearest, support


def _grid(cube: xr.Dataset, h: int, w: int) -> tuple[Affine, np.ndarray, np.ndarray]:
    left, bottom, right, top = cube.rio.bounds()
    tr = Affine((right - left) / w, 0.0, left, 0.0, -(top - bottom) / h, top)
    x = left + (np.arange(w) + 0.5) * tr.a
    y = top + (np.arange(h) + 0.5) * tr.e
    return tr, x, y


BYTES_PER_OUTPUT_PIXEL = 128
"""Working memory per rendered pixel: query coordinates and cells, the decoded output, the
uint8 and float32 images and the file copy; measured 108 bytes per pixel of peak RSS over the
imports for a x16 render (6.4 MP) with malloc arenas capped (bench/memory.py), plus margin."""


def check_render_budget(cube: xr.Dataset, scale: float, n_dates: int, max_mb: float) -> int:
    """Bytes a render of ``n_dates`` dates needs; refuse it before any compute if over ``max_mb``.

    Raises:
        InvalidInputError: the request exceeds the budget.
    """
    h, w = cube.sizes["y"], cube.sizes["x"]
    out_h, out_w = max(1, round(scale * h)), max(1, round(scale * w))
    need = out_h * out_w * BYTES_PER_OUTPUT_PIXEL * max(1, n_dates)
    if need > max_mb * 2**20:
        raise InvalidInputError(
            f"render needs about {need / 2**20:.0f} MiB ({n_dates} date(s) of {out_h}x{out_w} px), above the "
            f"budget of {max_mb:g} MiB: render a --bbox, a smaller scale or fewer dates, or raise max_mb"
        )
    return need


def series_dates(start: Any, end: Any, step: str = "5D") -> list[np.datetime64]:
    """Dates from ``start`` to ``end`` (inclusive) every ``step`` (a pandas offset such as ``5D``)."""
    a, b = _date(start, "start date"), _date(end, "end date")
    if b < a:
        raise InvalidInputError(f"end {str(b)[:10]} is before start {str(a)[:10]}")
    try:
        dates = pd.date_range(pd.Timestamp(a), pd.Timestamp(b), freq=step)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"invalid step {step!r}: use a pandas offset such as 5D or 1W") from err
    if len(dates) == 0 or pd.Timedelta(pd.tseries.frequencies.to_offset(step).nanos, "ns") <= pd.Timedelta(0):
        raise InvalidInputError(f"step {step!r} gives no dates")
    if len(dates) > 400:
        raise InvalidInputError(f"{len(dates)} dates: at most 400 per series (use a longer step)")
    return [np.datetime64(d, "s") for d in dates]


def model_id(model: str | Path) -> dict[str, str]:
    """What identifies a model in a render's lineage: its name and, for checkpoints, a content hash."""
    import hashlib

    name = model_name(model)
    p = Path(str(model)).expanduser()
    file = p / "best.pt" if p.is_dir() else p
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.is_file() else name
    return {"name": name, "sha256": digest}


