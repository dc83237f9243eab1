"""Windowed prediction: part of a model's output grid from part of its inputs, as floats.

A tiled render (:mod:`stliif.render.tiles`) asks a model for the output pixels of one tile from
the low-resolution (LR) pixels around it. A :class:`Window` places the tile's pixel centres on
the LR window's own grid (edge coordinates: the window spans ``[0, h) x [0, w)`` LR pixels,
LR pixel ``i`` centred at ``i + 0.5``), with the output cell (pixel size) in LR pixels. Every
model used this way is translation-equivariant: the value at a point depends only on the LR
pixels within :meth:`WindowPredictor.halo` of it, so a tile rendered from a window holding that
margin equals the same pixels of a one-shot render (the tests check it).

A :class:`WindowPredictor` returns float RGB in the 0..255 units of its uint8 inputs, neither
calibrated nor rounded: the render applies the (global) output calibration once all tiles are
known, and keeps floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from stliif.errors import InvalidInputError
from stliif.models.baselines import blend_in_time, resize_channels, temporal_median
from stliif.types import DateLike, Dates

__all__ = ["BaselineWindow", "Window", "WindowPredictor", "full_window"]

#: Pillow's bicubic kernel reaches 2 input pixels each side when upsampling.
_BICUBIC_SUPPORT = 2.0


@dataclass(frozen=True)
class Window:
    """Output pixel centres of a tile on its LR window's grid.

    Attributes:
        ys: ``(ny,)`` row centres, in LR pixels from the window's top edge (float64, increasing,
            equally spaced by ``cell[0]``).
        xs: ``(nx,)`` column centres, in LR pixels from the window's left edge.
        cell: ``(dy, dx)`` size of one output pixel, in LR pixels.
    """

    ys: np.ndarray
    xs: np.ndarray
    cell: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` output pixels."""
        return len(self.ys), len(self.xs)


def full_window(lr_hw: tuple[int, int], out_hw: tuple[int, int]) -> Window:
    """The window of a one-shot render: all ``out_hw`` pixels over all ``lr_hw`` LR pixels."""
    (h, w), (oh, ow) = lr_hw, out_hw
    cy, cx = h / oh, w / ow
    return Window((np.arange(oh) + 0.5) * cy, (np.arange(ow) + 0.5) * cx, (cy, cx))


@runtime_checkable
class WindowPredictor(Protocol):
    """What a tiled render needs of a model."""

    def halo(self, scale: float) -> int:
        """LR pixels of context each side of a tile that make it equal a one-shot render."""
        ...

    def predict_window(
        self,
        frames: np.ndarray,
        window: Window,
        *,
        dates: Dates | None = None,
        target_date: DateLike | None = None,
    ) -> np.ndarray:
        """``frames (T, h, w, 3) uint8`` (the LR window) -> ``(ny, nx, 3)`` float32, 0..255 units."""
        ...


def _resample(image: np.ndarray, window: Window, method: Image.Resampling) -> np.ndarray:
    """Pillow's resample (``"F"`` mode, per channel) of ``image (h, w, C)`` at the window's pixels:
    the box from the first to the last pixel's edges, so that each output pixel samples the
    same point as in the resize of the whole image."""
    (ny, nx), (cy, cx) = window.shape, window.cell
    box = (float(window.xs[0] - cx / 2), float(window.ys[0] - cy / 2),
           float(window.xs[-1] + cx / 2), float(window.ys[-1] + cy / 2))  # fmt: skip
    return resize_channels(np.asarray(image, dtype=np.float32), (ny, nx), method, box)


class BaselineWindow:
    """The interpolation baselines a render can use, on windows, in float.

    ``"bicubic"``: the revisit nearest the target date (the study's per-frame baseline, as a
    render), ``"median"``: the temporal median, ``"linear"``: linear in time between the
    revisits around the target date; each resampled with Pillow BICUBIC in float mode.
    """

    NAMES = ("bicubic", "median", "linear")

    def __init__(self, name: str) -> None:
        if name not in self.NAMES:
            raise InvalidInputError(f"no windowed baseline {name!r}: use one of {list(self.NAMES)}")
        self.__name__ = name

    def halo(self, scale: float) -> int:
        """Bicubic support (2 LR pixels, ``2 / scale`` when downsampling) plus one."""
        return math.ceil(_BICUBIC_SUPPORT / min(1.0, float(scale))) + 1

    def predict_window(
        self,
        frames: np.ndarray,
        window: Window,
        *,
        dates: Dates | None = None,
        target_date: DateLike | None = None,
    ) -> np.ndarray:
        f = np.asarray(frames)
        if self.__name__ == "median":
            image = temporal_median(f)
        elif self.__name__ == "linear":
            image = blend_in_time(f, dates, target_date)
        else:
            image = f[_nearest(dates, target_date, f.shape[0])]
        return _resample(image, window, Image.Resampling.BICUBIC)


def _nearest(dates: Dates | None, target_date: DateLike | None, n: int) -> int:
    """Index of the frame nearest ``target_date`` (the first on ties; the middle one without dates)."""
    if dates is None or target_date is None:
        return n // 2
    d = np.asarray(dates, dtype="datetime64[s]").astype(np.int64)
    t = np.asarray(target_date, dtype="datetime64[s]").astype(np.int64)
    return int(np.argmin(np.abs(d - t)))
