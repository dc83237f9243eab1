"""Self-supervised pretext scenes made of the low-resolution revisits alone (issue 19).

A scene with ``T >= 2`` revisits gives ``T`` pretext scenes: revisit ``j`` is the target at its
own resolution, and the other ``T - 1`` revisits, downsampled ``factor`` times by block means,
are the inputs, timed from revisit ``j``'s date. Predicting it is the model's own task an octave
down (super-resolve x2 and carry the scene to another date), with no HR image: every training
AOI's revisits become extra supervision. Frames are cut to their largest square of a side
divisible by ``factor`` from the top-left corner, so the target grid is exactly ``factor`` times
the inputs' (no offset). A training run serves the pretext items first, then the real ones
(``torch.utils.data.ConcatDataset``), so it pretrains and fine-tunes in one resumable sequence of
steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stliif.errors import InvalidInputError
from stliif.train.data import Scene

__all__ = ["block_mean", "pretext_scenes"]


def block_mean(frames: np.ndarray, factor: int) -> np.ndarray:
    """``(T, H, W, C)`` uint8 frames downsampled by the mean of each ``factor x factor`` block
    (``H`` and ``W`` divisible by ``factor``), rounded to the nearest integer, uint8."""
    t, h, w, c = frames.shape
    if factor < 1 or h % factor or w % factor:
        raise InvalidInputError(f"frames {h} x {w} are not divisible into {factor} x {factor} blocks")
    blocks = frames.reshape(t, h // factor, factor, w // factor, factor, c).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def pretext_scenes(scenes: Sequence[Scene], *, factor: int = 2) -> list[Scene]:
    """The pretext scenes of ``scenes`` (see the module docstring), ``T`` per scene of ``T >= 2``
    revisits, in scene then revisit order; named ``<aoi>#<j>``."""
    out: list[Scene] = []
    for s in scenes:
        t, h, w, _ = s.frames.shape
        side = min(h, w) // factor * factor
        if t < 2 or side < factor:
            continue
        frames = s.frames[:, :side, :side]
        small = block_mean(frames, factor)
        for j in range(t):
            keep = np.arange(t) != j
            times = (s.times[keep] - s.times[j]).astype(np.float32)
            out.append(Scene(aoi=f"{s.aoi}#{j}", frames=small[keep], target=frames[j].copy(), times=times))
    if not out:
        raise InvalidInputError("self-supervised pretraining needs scenes with at least 2 revisits")
    return out

