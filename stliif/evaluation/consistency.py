"""Consistency and hallucination scores of a protocol's predictions (:mod:`stliif.consistency`,
opensr-test's definitions) against the LR inputs and the HR target.

The LR input of a prediction is its frames interpolated linearly in time at the HR date (the
``linear`` baseline's rule, :func:`stliif.constraint.lr_target`; their temporal median when the
dates are unknown). Values are divided by ``peak`` (255 on protocol P's uint8 images, 1 on
reflectance), so errors read as fractions of the range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stliif.consistency import consistency, correctness, synthesis

__all__ = ["CONSISTENCY_METRICS", "CORRECTNESS_PATCH", "lr_hr_scores"]

CONSISTENCY_METRICS: tuple[str, ...] = (
    "cons_mae", "cons_sam", "cons_shift", "synthesis", "improvement", "omission", "hallucination",
)  # fmt: skip
"""Keys: the prediction degraded to the LR grid against the LR input (``cons_mae`` mean
absolute error, ``cons_sam`` spectral angle in degrees, ``cons_shift`` shift in LR pixels),
``synthesis`` (mean ``|SR - bilinear(LR)|``) and the shares of patches classed improvement,
omission and hallucination against the HR target."""

CORRECTNESS_PATCH = 8
"""Side (output pixels) of the patches of :func:`stliif.consistency.correctness`."""


def lr_hr_scores(
    pred: np.ndarray, frames: np.ndarray, dates: Any, when: Any, hr: np.ndarray | None, *, peak: float,
    valid: np.ndarray | None = None,
) -> dict[str, float]:  # fmt: skip
    """:data:`CONSISTENCY_METRICS` of ``pred`` (``(S, S, C)`` or a ``(K, S, S, C)`` stack, the
    mean over the K images), given its ``(T, h, w, C)`` frames, their dates and the target
    date; correctness only where ``hr`` is given (pixels outside ``valid`` set to NaN)."""
    from stliif.constraint import lr_target

    f = np.asarray(frames, np.float64) / peak
    lr = lr_target(f, dates, when) if dates is not None and when is not None else np.median(f, axis=0)
    p = np.asarray(pred, np.float64) / peak
    stack = p if p.ndim == 4 else p[None]
    h = None if hr is None else np.asarray(hr, np.float64) / peak
    if h is not None and valid is not None:
        h = np.where(valid[..., None] if valid.ndim == 2 else valid, h, np.nan)
    rows = []
    for img in stack:
        c = consistency(img, lr)
        rec = {"cons_mae": c["mae"], "cons_sam": c["sam"], "cons_shift": c["shift_px"], "synthesis": synthesis(img, lr)}
        if h is not None:
            k = correctness(img, lr, h, patch=CORRECTNESS_PATCH)
            rec.update({m: k[m] for m in ("improvement", "omission", "hallucination")})
        else:
            rec.update(improvement=math.nan, omission=math.nan, hallucination=math.nan)
        rows.append(rec)
    return {m: float(np.mean([r[m] for r in rows])) for m in CONSISTENCY_METRICS}
