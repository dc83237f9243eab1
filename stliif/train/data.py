"""Training data for (temporal) LIIF: random crops supervised on the real high-resolution grid.

Each item is one random low-resolution crop of ``crop x crop`` px from a scene's dated frames plus
``queries`` points of the high-resolution target inside the same footprint, at a random scale:

- **Real HR supervision at evaluated scales.** For a scale ``s`` drawn from ``scale_range``
  (``s`` = output side / LR side; protocol P's x2/x4/x6 are 314/628/1054 px for ~157 px LR, so
  ``s`` ~ 2.0/4.0/6.7), the target is the scene's 1054 px HR image resized to ``S = s * LR`` px
  with Pillow BICUBIC -- exactly how protocol P builds its x2/x4 targets -- and the supervised
  points are the *pixel centres of that S x S grid* that fall inside the crop (the native grid
  itself when ``S = 1054``; ``s`` is capped there since no finer truth exists). Only the needed
  window is resampled (Pillow's ``box=``, equal to cropping the full resize up to 8-bit rounding
  of its two passes, at most 1 grey level).
- **Coordinates from the crop, not the image.** Query coordinates and cells are expressed in the
  crop's own ``[-1, 1]^2`` frame (a cell is one HR pixel: ``2 * (H_lr / S) / crop``).
- **Consistent augmentation.** A random element of the dihedral group (flips and transpose) is
  applied to every frame, the target window and the coordinates together.
- **Time from the dates.** Frame times are ``(date_i - HR date) / time_scale`` days; the query
  time is the HR date (0). Models see only differences, so the reference does not matter.
- **Temporal strategies** (which frames an item shows): ``"complete"`` (all), ``"groups"``
  (a random run of 2..T adjacent frames), ``"pairs"`` (2 adjacent frames), ``"single"`` (one).
  Items are padded to ``T`` frames with a boolean ``mask``, so models handle the counts
  explicitly and the same model can be evaluated on all 5 frames.

Items are pure functions of ``(seed, index)``, so a training run that resumes at step ``k`` sees
exactly the batches it would have seen without stopping, whatever the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stliif.errors import InvalidInputError
from stliif.models.coords import TIME_SCALE_DAYS, frame_times

__all__ = [
    "STRATEGIES",
    "CropDataset",
    "Scene",
    "Strategy",
    "select_frames",
]

Strategy = Literal["complete", "groups", "pairs", "single"]
STRATEGIES: tuple[str, ...] = ("complete", "groups", "pairs", "single")


def select_frames(n: int, strategy: Strategy, rng: np.random.Generator) -> np.ndarray:
    """Indices (ascending) of the frames an item shows under a temporal ``strategy``.

    ``"complete"``: all ``n``; ``"groups"``: a run of ``L`` adjacent frames, ``L`` uniform in
    ``2..n`` (1 if ``n == 1``); ``"pairs"``: 2 adjacent frames; ``"single"``: one frame.
    """
    if n < 1:
        raise InvalidInputError(f"need at least one frame, got {n}")
    if strategy == "complete":
        length = n
    elif strategy == "groups":
        length = int(rng.integers(2, n + 1)) if n >= 2 else 1
    elif strategy == "pairs":
        length = min(2, n)
    elif strategy == "single":
        length = 1
    else:
        raise InvalidInputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    start = int(rng.integers(0, n - length + 1))
    return np.arange(start, start + length)


@dataclass(frozen=True)
class Scene:
    """One training scene.

    Attributes:
        aoi: Name.
        frames: ``(T, H, W, C)`` uint8 low-resolution frames, chronological.
        target: ``(S0, S0, C)`` uint8 high-resolution target (1054 px on protocol P).
        times: ``(T,)`` float32 frame times relative to the target date, in time-scale units.
    """

    aoi: str
    frames: np.ndarray
    target: np.ndarray
    times: np.ndarray

    @classmethod
    def from_sample(cls, sample: Any, *, time_scale: float = TIME_SCALE_DAYS) -> Scene:
        """From a :class:`stliif.evaluation.paper.PaperSample` (with dates, or without: times 0)."""
        frames = np.asarray(sample.frames)
        target = np.asarray(sample.target)
        if frames.ndim != 4 or frames.dtype != np.uint8 or target.dtype != np.uint8:
            raise InvalidInputError(f"{sample.aoi}: frames (T, H, W, C) and target must be uint8")
        if target.ndim != 3 or target.shape[0] != target.shape[1] or target.shape[2] != frames.shape[3]:
            raise InvalidInputError(f"{sample.aoi}: target must be square (S, S, C), got {target.shape}")
        times = frame_times(
            getattr(sample, "dates", None), getattr(sample, "hr_date", None),
            n=frames.shape[0], time_scale=time_scale,
        )  # fmt: skip
        return cls(aoi=sample.aoi, frames=frames, target=target, times=times)


class CropDataset(Dataset[dict[str, torch.Tensor]]):
    """Random crops with real-HR queries at random scales (see the module docstring).

    Args:
        scenes: :class:`Scene` objects (or ``PaperSample``s, converted with their dates).
        crop: LR crop side in px.
        queries: HR points per item.
        scale_range: ``(min, max)`` scale ``S / LR``; ``max`` is capped per scene at its native
            HR size.
        strategy: Temporal strategy (:data:`STRATEGIES`).
        augment: Random flips/transposes.
        target_offset: ``(dy, dx)`` in LR px: where the targets' pixel centres sit on the input
            grid (:func:`stliif.models.calibration.fit_offset`); applied before augmentation, so
            flips and transposes keep the registration.
        length: Nominal length (items are generated from their index; any index works).
        seed: Seed of the item generator.
        time_scale: Days per time unit (for ``PaperSample`` inputs).
        shift: With ``m > 0``, items also carry ``gt_shift``: each query's target at every shift
            of the target grid by up to ``m`` of its pixels each way (the queries are drawn at
            least ``m`` pixels inside the window, so every shift is real target data), for a
            loss tolerant of misregistration (``loss="l1-shift"``). ``0``: items as before.

    Items (``T`` = max frames over scenes, ``Q`` = ``queries``):
        ``frames`` ``(T, C, crop, crop)`` float32 in ``[0, 1]`` (padded frames are 0),
        ``mask`` ``(T,)`` bool, ``times`` ``(T,)`` float32, ``t_query`` ``()`` float32 (0: the
        HR date), ``coord`` ``(Q, 2)`` ``(y, x)`` in the crop's ``[-1, 1]``, ``cell`` ``(Q, 2)``,
        ``gt`` ``(Q, C)`` float32 in ``[0, 1]``, ``scale`` ``()`` float32, ``scene`` ``()`` int64;
        with ``shift`` also ``gt_shift`` ``(Q, (2m + 1)^2, C)`` (row-major shifts, ``gt`` the middle one).
    """

    def __init__(
        self,
        scenes: Sequence[Any],
        *,
        crop: int = 32,
        queries: int = 2304,
        scale_range: tuple[float, float] = (2.0, 7.0),
        strategy: Strategy = "complete",
        augment: bool = True,
        length: int = 1_000_000,
        seed: int = 0,
        time_scale: float = TIME_SCALE_DAYS,
        target_offset: tuple[float, float] = (0.0, 0.0),
        shift: int = 0,
    ) -> None:
        if not scenes:
            raise InvalidInputError("CropDataset needs at least one scene")
        self.scenes = [
            s if isinstance(s, Scene) else Scene.from_sample(s, time_scale=time_scale)
            for s in scenes
        ]
        lo, hi = (float(v) for v in scale_range)
        if not (0 < lo <= hi):
            raise InvalidInputError(f"scale_range must be 0 < min <= max, got {scale_range!r}")
        if strategy not in STRATEGIES:
            raise InvalidInputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if crop < 2 or queries < 1 or length < 1 or shift < 0:
            raise InvalidInputError(
                f"need crop >= 2, queries >= 1, length >= 1, shift >= 0; got {crop}, {queries}, {length}, {shift}"
            )
        for s in self.scenes:
            if min(s.frames.shape[1:3]) < crop:
                raise InvalidInputError(f"{s.aoi}: frames {s.frames.shape[1:3]} smaller than crop {crop}")
        self.crop, self.queries, self.scale_range = int(crop), int(queries), (lo, hi)
        self.strategy: Strategy = strategy
        self.augment, self.length, self.seed = bool(augment), int(length), int(seed)
        self.target_offset = (float(target_offset[0]), float(target_offset[1]))
        self.shift = int(shift)
        self.max_frames = max(s.frames.shape[0] for s in self.scenes)
        self._images = [Image.fromarray(s.target) for s in self.scenes]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        k = int(rng.integers(len(self.scenes)))
        scene = self.scenes[k]
        t, h_lr, w_lr, c = scene.frames.shape
        s0 = scene.target.shape[0]
        h = self.crop
        # scale and output grid size
        lr_side = 0.5 * (h_lr + w_lr)
        hi = min(self.scale_range[1], s0 / lr_side)
        lo = min(self.scale_range[0], hi)
        size = min(round(float(rng.uniform(lo, hi)) * lr_side), s0)
        # LR crop and the HR pixels whose centres fall inside it
        y0 = int(rng.integers(0, h_lr - h + 1))
        x0 = int(rng.integers(0, w_lr - h + 1))
        i0, i1 = _inside(y0, h, h_lr, size)
        j0, j1 = _inside(x0, h, w_lr, size)
        patch = self._window(k, size, i0, i1, j0, j1)  # (i1 - i0, j1 - j0, C)
        dy, dx = self.target_offset
        ys = (2.0 * ((np.arange(i0, i1) + 0.5) * h_lr / size + dy - y0) / h - 1.0).astype(np.float32)
        xs = (2.0 * ((np.arange(j0, j1) + 0.5) * w_lr / size + dx - x0) / h - 1.0).astype(np.float32)
        cy, cx = 2.0 * (h_lr / size) / h, 2.0 * (w_lr / size) / h
        # frames: temporal strategy, then the crop
        idx = select_frames(t, self.strategy, rng)
        frames = scene.frames[idx, y0 : y0 + h, x0 : x0 + h]
        times = scene.times[idx]
        if self.augment:
            if rng.random() < 0.5:  # vertical flip
                frames, patch, ys = frames[:, ::-1], patch[::-1], -ys[::-1]
            if rng.random() < 0.5:  # horizontal flip
                frames, patch, xs = frames[:, :, ::-1], patch[:, ::-1], -xs[::-1]
            if rng.random() < 0.5:  # transpose
                frames, patch = frames.transpose(0, 2, 1, 3), patch.transpose(1, 0, 2)
                ys, xs, cy, cx = xs, ys, cx, cy
        # query points (with shifts: at least m pixels inside the window)
        m = self.shift
        inner = (patch.shape[0] - 2 * m, patch.shape[1] - 2 * m)
        if min(inner) < 1:
            raise InvalidInputError(f"crop too small for shifts of {m} target pixels at this scale")
        n_pts = inner[0] * inner[1]
        pick = rng.choice(n_pts, self.queries, replace=n_pts < self.queries)
        pi, pj = np.divmod(pick, inner[1])
        pi, pj = pi + m, pj + m
        coord = np.stack([ys[pi], xs[pj]], axis=-1)
        gt = patch[pi, pj].astype(np.float32) / 255.0
        # pad frames to max_frames
        n = len(idx)
        fr = np.zeros((self.max_frames, c, h, h), dtype=np.float32)
        fr[:n] = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
        tm = np.zeros(self.max_frames, dtype=np.float32)
        tm[:n] = times
        mask = np.zeros(self.max_frames, dtype=bool)
        mask[:n] = True
        item = {
            "frames": torch.from_numpy(fr),
            "mask": torch.from_numpy(mask),
            "times": torch.from_numpy(tm),
            "t_query": torch.tensor(0.0),
            "coord": torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32)),
            "cell": torch.tensor([[cy, cx]], dtype=torch.float32).expand(self.queries, 2).clone(),
            "gt": torch.from_numpy(gt),
            "scale": torch.tensor(size / lr_side, dtype=torch.float32),
            "scene": torch.tensor(k, dtype=torch.int64),
        }
        if m:
            d = np.arange(-m, m + 1)
            shifted = patch[pi[:, None, None] + d[None, :, None], pj[:, None, None] + d[None, None, :]]
            item["gt_shift"] = torch.from_numpy(shifted.reshape(len(pi), -1, c).astype(np.float32) / 255.0)
        return item

    def _window(self, k: int, size: int, i0: int, i1: int, j0: int, j1: int) -> np.ndarray:
        """Rows ``i0:i1``, cols ``j0:j1`` of the scene's target resized to ``size`` (bicubic)."""
        target = self.scenes[k].target
        s0 = target.shape[0]
        if size == s0:
            return target[i0:i1, j0:j1]
        r = s0 / size
        box = (j0 * r, i0 * r, j1 * r, i1 * r)
        out = self._images[k].resize((j1 - j0, i1 - i0), Image.Resampling.BICUBIC, box=box)
        return np.asarray(out)


def _inside(start: int, length: int, lr_size: int, size: int) -> tuple[int, int]:
    """HR indices ``[a, b)`` whose centres ``(i + 0.5) * lr_size / size`` lie in ``[start, start + length)``."""
    a = max(0, math.ceil(start * size / lr_size - 0.5))
    b = min(size, math.ceil((start + length) * size / lr_size - 0.5))
    if b <= a:
        raise InvalidInputError("crop too small for this scale: no HR pixel centre inside")
    return a, b
