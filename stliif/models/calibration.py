"""Output calibration of a model's RGB prediction, from the inputs only.

Both evaluation protocols build their targets by CDF-matching the HR image's HSV value channel
``V = max(R, G, B)`` to the low-resolution inputs (P: to one revisit the inputs are matched to as
well; C: to the inputs' median composite). A model's brightness can still drift by a few DN on
an area unlike its training areas (cross-validation on the 21 training AOIs of P found offsets of
10-25 DN on some). :class:`Calibration` corrects that with the frames alone, never the target:

1. ``blend``: ``w * model + (1 - w) * median_colour``, where ``median_colour`` is the closed-form
   colour map (:class:`~stliif.models.baselines.ColourMap`, fitted on training AOIs) applied to
   the temporal median and upsampled with Pillow bicubic (float, not rounded).
2. ``v_mean``: make the mean of ``V`` over the prediction equal the mean of ``V`` over the input
   frames, by adding the difference to every channel (``"add"``) or by scaling every channel
   (``"mul"``, which keeps hue and saturation); ``"none"`` skips it.
3. ``offset``: where the targets sit on the input grid, ``(dy, dx)`` in input pixels, fitted on
   training AOIs by :func:`fit_offset`. The study's P targets sit about 0.35 px below and 0.3 px
   right of the inputs' pixel centres, consistently over its training areas (the flips and
   transposes of training augmentation average such an offset away, so a model trained without
   ``fit_offset`` cannot learn it). Predictors sample the output grid moved by it: the model
   through its query coordinates, the median term through
   :func:`~stliif.models.baselines.resize`. It is fitted on and applied to protocol P only.

The weight, mode and offset of the checkpoint of record were chosen by 3-fold cross-validation
over the 21 non-test AOIs (``bench/cv.py``), never on test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from stliif.errors import InvalidInputError
from stliif.models.baselines import ColourMap, resize, temporal_median

__all__ = ["Calibration", "VMeanMode", "fit_offset", "match_v_mean"]

VMeanMode = Literal["none", "add", "mul"]


def match_v_mean(image: np.ndarray, frames: np.ndarray, mode: VMeanMode = "add") -> np.ndarray:
    """Shift or scale ``image`` so that its mean ``V = max(R, G, B)`` equals the frames'.

    Args:
        image: ``(H, W, C)`` float RGB (0..255); a fourth channel (NIR) is left as it is.
        frames: ``(T, h, w, C)`` uint8 (or float on the same scale) input frames.
        mode: ``"add"`` (one offset for R, G and B), ``"mul"`` (one gain) or ``"none"``.

    Returns:
        float64 ``(H, W, C)``, unclipped.
    """
    img = np.asarray(image, dtype=np.float64)
    if mode == "none":
        return img
    if mode not in ("add", "mul"):
        raise InvalidInputError(f"v_mean must be 'none', 'add' or 'mul', got {mode!r}")
    ref = float(np.asarray(frames, dtype=np.float64)[..., :3].max(axis=-1).mean())
    cur = float(img[..., :3].max(axis=-1).mean())
    out = img.copy()
    if mode == "add":
        out[..., :3] += ref - cur
    elif cur > 0:
        out[..., :3] *= ref / cur
    return out


@dataclass(frozen=True)
class Calibration:
    """Blend with the colour-mapped median, then match the mean of V to the inputs.

    Attributes:
        weight: Weight of the model in the blend, in ``[0, 1]`` (1: no blend).
        colour_map: The map of the ``median_colour`` term (needed when ``weight < 1``).
        v_mean: ``"none"``, ``"add"`` or ``"mul"`` (see :func:`match_v_mean`).
        offset: ``(dy, dx)`` in input pixels: the output grid's shift on the input grid.
    """

    weight: float = 1.0
    colour_map: ColourMap | None = None
    v_mean: VMeanMode = "none"
    offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.check(self.weight, self.v_mean)
        if self.weight < 1.0 and self.colour_map is None:
            raise InvalidInputError("a blend (weight < 1) needs the colour map of its median term")

    @staticmethod
    def check(weight: float, v_mean: str) -> None:
        """Refuse a weight outside ``[0, 1]`` or an unknown V-mean mode (before any data is read)."""
        if not 0.0 <= float(weight) <= 1.0:
            raise InvalidInputError(f"blend weight must be in [0, 1], got {weight!r}")
        if v_mean not in ("none", "add", "mul"):
            raise InvalidInputError(f"v_mean must be 'none', 'add' or 'mul', got {v_mean!r}")

    def apply(self, image: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Calibrate a ``(H, W, C)`` float prediction (0..255) made from ``frames`` ``(T, h, w, C)``
        (already sampled at :attr:`offset`: the offset moves only the median term here). The
        blend and the V-mean act on R, G and B; a fourth channel (NIR) is the model's."""
        out = np.array(image, dtype=np.float64)
        if self.weight < 1.0 and self.colour_map is not None:
            median = self.colour_map.apply(temporal_median(np.asarray(frames)[..., :3]))
            base = resize(median, out.shape[:2], offset=self.offset)
            out[..., :3] = self.weight * out[..., :3] + (1.0 - self.weight) * base
        return match_v_mean(out, frames, self.v_mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored in checkpoints as ``extra["calibration"]``)."""
        return {"weight": float(self.weight), "v_mean": self.v_mean,
                "offset": [float(v) for v in self.offset],
                "colour_map": self.colour_map.to_dict() if self.colour_map is not None else None}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        try:
            cmap = d.get("colour_map")
            dy, dx = (float(v) for v in d.get("offset", (0.0, 0.0)))
            return cls(weight=float(d.get("weight", 1.0)), v_mean=d.get("v_mean", "none"),
                       colour_map=ColourMap.from_dict(cmap) if cmap is not None else None,
                       offset=(dy, dx))  # fmt: skip
        except (AttributeError, TypeError, ValueError) as err:
            raise InvalidInputError(f"not a calibration: {err}") from err


def fit_offset(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    colour_map: ColourMap | None = None,
    *,
    size: int = 314,
    span: float = 1.0,
    steps: Sequence[float] = (0.25, 0.05),
) -> tuple[float, float]:
    """The ``(dy, dx)`` offset (input pixels) that maximises the mean PSNR over ``pairs``.

    Each pair is ``(frames (T, h, w, C) uint8, target (H, W, C))``; the predictor scored is the
    temporal median, colour-mapped (identity without ``colour_map``), resized to ``size`` with
    the offset and V-mean matched to the frames (``"add"``). A grid search over
    ``[-span, span]^2`` at ``steps[0]``, refined around the best point at each following step.
    Only training AOIs may be passed: the offset is a fitted parameter like the colour map.
    """
    data = []
    for frames, target in pairs:
        med = temporal_median(frames)
        data.append((colour_map.apply(med) if colour_map is not None else med.astype(np.float64),
                     resize(np.asarray(target), size).astype(np.float64), frames))  # fmt: skip
    if not data:
        raise InvalidInputError("fit_offset needs at least one (frames, target) pair")

    def score(off: tuple[float, float]) -> float:
        total = 0.0
        for med, tgt, frames in data:
            pred = match_v_mean(resize(med, size, offset=off).astype(np.float64), frames, "add")
            mse = float(np.mean((np.clip(np.rint(pred), 0, 255) - tgt) ** 2))
            total += 10.0 * np.log10(255.0**2 / max(mse, 1e-12))
        return total / len(data)

    best, lo, hi = (0.0, 0.0), -float(span), float(span)
    for i, step in enumerate(steps):
        cy = np.arange(lo, hi + 1e-9, step) + (best[0] if i else 0.0)
        cx = np.arange(lo, hi + 1e-9, step) + (best[1] if i else 0.0)
        cand = [(round(float(y), 4), round(float(x), 4)) for y in cy for x in cx]
        best = max(cand + [best], key=score)
        lo, hi = -step, step  # the next level searches +-1 step of this one
    return best
