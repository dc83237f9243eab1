"""Product mode: a render whose low frequencies are its inputs' (a low-frequency constraint in
the spirit of SEN2SR's, Aybar et al. 2025).

The target of a date is the time-interpolated LR reflectance (:func:`lr_target`: the rule of
the ``linear`` baseline, :func:`stliif.models.baselines.blend_in_time`, on the revisits the
render uses). The model's output ``y`` is corrected in two steps, ``D`` being the degradation
of :func:`stliif.consistency.degrade` (the mean of each LR pixel's member pixels):

1. ``y1 = y + up(target - D y)``, ``up`` bilinear (:func:`stliif.consistency.upsample`): a smooth
   correction of the low frequencies;
2. ``y2 = y1 + rep(target - D y1)``, ``rep`` giving each output pixel its LR pixel's value: since
   ``D rep = I``, ``D y2 = target`` exactly (before the final clip at 0 reflectance).

The model thus supplies only what ``D`` removes (the high frequencies). Each output pixel
depends on the LR pixels within one of its own, so a tile computed on a window widened by
:data:`MARGIN` LR pixels equals the one-shot result (:func:`constrain_window`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stliif.consistency import members
from stliif.errors import InvalidInputError

__all__ = ["MARGIN", "MODES", "check_mode", "constrain", "constrain_window", "lr_target", "product_predictor", "window_rows"]

MODES = ("product", "paper")
"""Render modes: ``product`` (the low-frequency constraint, the default) or ``paper`` (the
model's output as protocol P scores it)."""

MARGIN = 2
"""LR pixels each side of a tile's own that its constraint reads (1 is enough; 2 for safety)."""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`.

    Raises:
        InvalidInputError: Another mode.
    """
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def lr_target(frames: np.ndarray, dates: Any, when: Any) -> np.ndarray:
    """``(h, w, C)`` float64: the frames interpolated linearly in time at ``when`` (the nearest
    end frame outside their dates; frames of one date averaged)."""
    from stliif.models.baselines import blend_in_time

    return np.asarray(blend_in_time(np.asarray(frames, np.float64), dates, when), np.float64)


def window_rows(lo: int, hi: int, n_out: int, n_lr: int, margin: int = MARGIN) -> tuple[int, int, int, int]:
    """For output rows ``[lo, hi)``: ``(out0, out1, lr0, lr1)``, the LR rows ``[lr0, lr1)`` of those
    rows widened by ``margin`` and every output row ``[out0, out1)`` whose LR row is among them."""
    m = members(n_out, n_lr)
    lr0, lr1 = max(0, int(m[lo]) - margin), min(n_lr, int(m[hi - 1]) + 1 + margin)
    out0 = int(np.searchsorted(m, lr0, side="left"))
    out1 = int(np.searchsorted(m, lr1, side="left"))
    return out0, out1, lr0, lr1


def _axis(out0: int, out1: int, n_out: int, n_lr: int, lr0: int, lr1: int) -> tuple[np.ndarray, ...]:
    idx = np.arange(out0, out1)
    m = members(n_out, n_lr)[out0:out1] - lr0
    u = np.clip((idx + 0.5) * n_lr / n_out - 0.5, 0, n_lr - 1) - lr0
    u = np.clip(u, 0, lr1 - lr0 - 1)
    i0 = np.floor(u).astype(np.int64)
    i1 = np.minimum(i0 + 1, lr1 - lr0 - 1)
    return m, i0, i1, u - i0


def _degrade(y: np.ndarray, my: np.ndarray, mx: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    s = np.zeros((*hw, y.shape[2]))
    n = np.zeros(hw)
    np.add.at(s, (my[:, None], mx[None, :]), y)
    np.add.at(n, (my[:, None], mx[None, :]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / n[..., None]


def constrain_window(
    y: np.ndarray,
    target: np.ndarray,
    rows: tuple[int, int, int, int],
    cols: tuple[int, int, int, int],
    out_hw: tuple[int, int],
    lr_hw: tuple[int, int],
) -> np.ndarray:
    """The constraint on a window: ``y`` ``(ny, nx, C)`` holds output rows ``rows[0]:rows[1]`` and
    columns ``cols[0]:cols[1]``, ``target`` ``(hy, hx, C)`` LR rows ``rows[2]:rows[3]`` and
    columns ``cols[2]:cols[3]`` (as :func:`window_rows` gives). Exact (equal to :func:`constrain`
    on the whole image) on the output pixels whose LR pixel is at least one from the window's
    inner edges. NaN in ``target`` leaves those LR pixels unconstrained."""
    a = np.asarray(y, np.float64)
    t = np.asarray(target, np.float64)
    my, y0, y1, fy = _axis(rows[0], rows[1], out_hw[0], lr_hw[0], rows[2], rows[3])
    mx, x0, x1, fx = _axis(cols[0], cols[1], out_hw[1], lr_hw[1], cols[2], cols[3])
    if a.shape[:2] != (len(my), len(mx)) or t.shape[:2] != (rows[3] - rows[2], cols[3] - cols[2]):
        raise InvalidInputError(f"window shapes {a.shape} and {t.shape} do not match rows {rows} and cols {cols}")
    hw = t.shape[:2]

    def residual(img: np.ndarray) -> np.ndarray:
        r = t - _degrade(img, my, mx, hw)
        return np.where(np.isfinite(r), r, 0.0)

    r = residual(a)
    top = r[y0][:, x0] * (1 - fx)[None, :, None] + r[y0][:, x1] * fx[None, :, None]
    bot = r[y1][:, x0] * (1 - fx)[None, :, None] + r[y1][:, x1] * fx[None, :, None]
    a = a + top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return a + residual(a)[my][:, mx]


def constrain(y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` float64: ``y`` whose degradation to the grid of ``target`` (``(h, w, C)``)
    equals ``target``, the model keeping the high frequencies (module docstring)."""
    a, t = np.asarray(y), np.asarray(target)
    if a.ndim != 3 or t.ndim != 3 or a.shape[2] != t.shape[2]:
        raise InvalidInputError(f"need (H, W, C) and (h, w, C) arrays, got {a.shape} and {t.shape}")
    (oh, ow), (h, w) = a.shape[:2], t.shape[:2]
    return constrain_window(a, t, (0, oh, 0, h), (0, ow, 0, w), (oh, ow), (h, w))


def product_predictor(predictor: Any, name: str | None = None) -> Any:
    """``predictor`` (see :class:`stliif.models.baselines.Predictor`) in product mode: each
    output constrained (:func:`constrain`) to the frames interpolated in time at
    ``target_date`` (their temporal median without dates); same units as the frames (uint8
    values stay 0..255 floats, rounded by the scorer). A ``(K, S, S, C)`` stack is constrained
    image by image."""

    def predict(frames: np.ndarray, *, size: Any, dates: Any = None, target_date: Any = None, **kw: Any) -> np.ndarray:
        out = np.asarray(predictor(frames, size=size, dates=dates, target_date=target_date, **kw), np.float64)
        f = np.asarray(frames, np.float64)
        target = lr_target(f, dates, target_date) if dates is not None and target_date is not None else np.median(f, axis=0)
        top = 255.0 if np.asarray(frames).dtype == np.uint8 else np.inf
        fixed = [np.clip(constrain(o, target), 0.0, top) for o in (out if out.ndim == 4 else out[None])]
        return np.stack(fixed) if out.ndim == 4 else fixed[0]

    predict.__name__ = name or f"{getattr(predictor, '__name__', 'model')}-product"
    predict.bands = getattr(predictor, "bands", 3)  # type: ignore[attr-defined]  # four-band checkpoints keep theirs
    return predict
