"""A trained (temporal) LIIF as a predictor: the inference side of a checkpoint.

:class:`ModelPredictor` takes the frames every predictor takes
(:class:`~stliif.models.baselines.Predictor`) and queries the model on the output grid; it is
what :func:`stliif.models.predictor.get_predictor` returns for a checkpoint, and what training
validates with. Imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
from torch import nn

from stliif.checkpoint import load_checkpoint, load_model
from stliif.errors import InvalidInputError
from stliif.models.baselines import size_hw, to_uint8
from stliif.models.calibration import Calibration
from stliif.models.coords import TIME_SCALE_DAYS, frame_times, make_cell, make_coord
from stliif.models.interface import ImplicitModel, TemporalImplicitModel, check_model
from stliif.models.liif import default_chunk
from stliif.models.window import Window
from stliif.types import DateLike, Dates

__all__ = ["ModelPredictor", "receptive_radius"]


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class ModelPredictor:
    """Adapter: a (temporal) LIIF as a protocol-P predictor (:class:`~stliif.models.baselines.Predictor`).

    ``predictor(frames (T, H, W, C) uint8, *, size, dates=None, target_date=None)`` returns the
    ``(size, size, C)`` uint8 rendering (``C`` = :attr:`bands`: 3, or 4 for a four-band model). Temporal models get all ``T`` frames with their times
    (``(date - target_date) / time_scale``; without dates all frames are at 0, without a target
    date the query is at the midpoint of the first and last dates). Single-image models get the
    middle frame, or the temporal median with ``frame="median"``.

    Args:
        model: Any model that follows :mod:`stliif.models.interface` (LIIF, Temporal LIIF, ...).
        time_scale: Days per time unit (as in training).
        chunk: Queries decoded at once (default: :func:`~stliif.models.liif.default_chunk`).
        device: Device to run on (default: the model's).
        frame: Input of single-image models.
        name: Label in results.
        calibration: Output calibration from the inputs (:mod:`stliif.models.calibration`),
            applied before rounding; ``None``: the raw model output.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        time_scale: float = TIME_SCALE_DAYS,
        chunk: int | None = None,
        device: str | torch.device | None = None,
        frame: Literal["middle", "median"] = "middle",
        name: str | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        check_model(model)
        self.model = model
        self.calibration = calibration
        self.time_scale = float(time_scale)
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.chunk = int(chunk) if chunk else default_chunk(self.device)
        self.frame = frame
        self.bands = int(getattr(model, "in_channels", 3))
        """3 (R, G, B) or 4 (R, G, B, NIR: a four-band checkpoint, frames in per-band uint8 scales)."""
        self.__name__ = name or type(model).__name__

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str | torch.device = "cpu", chunk: int | None = None
    ) -> ModelPredictor:
        """Load a checkpoint and wrap it (time scale and eval frame from its train spec, the
        output calibration from ``extra["calibration"]`` when it has one)."""
        ck = load_checkpoint(path)
        ts = (ck.train_spec or {}).get("time_scale", TIME_SCALE_DAYS)
        frame = (ck.train_spec or {}).get("eval_frame", "middle")
        cal = ck.extra.get("calibration")
        return cls(load_model(ck, device=device), time_scale=ts, chunk=chunk, device=device,
                   frame=frame, name=Path(path).stem,
                   calibration=Calibration.from_dict(cal) if cal else None)  # fmt: skip

    @torch.no_grad()
    def __call__(
        self,
        frames: np.ndarray,
        *,
        size: int | tuple[int, int],
        dates: Dates | None = None,
        target_date: DateLike | None = None,
    ) -> np.ndarray:
        f = _uint8_frames(frames)
        h_out, w_out = size_hw(size)
        x = torch.from_numpy(f.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        coord = make_coord((h_out, w_out), device=self.device)[None]
        cell = make_cell((h_out, w_out), coord.shape[1], device=self.device)[None]
        if self.calibration is not None and any(self.calibration.offset):
            dy, dx = self.calibration.offset  # input pixels -> [-1, 1] units of the input
            coord = coord + torch.tensor([2 * dy / f.shape[1], 2 * dx / f.shape[2]], device=self.device)
        out = self._query(x, coord, cell, dates, target_date)
        img = out[0].view(h_out, w_out, -1).float().cpu().numpy() * 255.0
        if self.calibration is not None:
            img = self.calibration.apply(img, f)
        return to_uint8(img)

    def _query(
        self, x: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, dates: Dates | None, target_date: DateLike | None
    ) -> torch.Tensor:
        """The model's ``(1, Q, C)`` output in ``[0, 1]`` units for frames ``x (T, C, H, W)``."""
        n = x.shape[0]
        x = x.to(self.device)[None]  # (1, T, C, H, W)
        was_training = self.model.training
        self.model.eval()
        try:
            if self.model.temporal:
                tm = cast(TemporalImplicitModel, self.model)
                times = frame_times(dates, target_date, n=n, time_scale=self.time_scale)
                t = torch.from_numpy(times).to(self.device)[None]
                lat = tm.gen_feat(x, t, torch.zeros(1, device=self.device))
                return tm.query_rgb(lat.feat, coord, cell, base=lat.base, chunk=self.chunk)
            inp = x.quantile(0.5, dim=1) if self.frame == "median" else x[:, n // 2]  # numpy's median
            im = cast(ImplicitModel, self.model)
            return im.query_rgb(im.gen_feat(inp), coord, cell, base=inp, chunk=self.chunk)
        finally:
            self.model.train(was_training)

    def halo(self, scale: float) -> int:
        """LR pixels each side that a window needs (:class:`~stliif.models.window.WindowPredictor`):
        the spatial reach of every convolution and pooling of the model, plus the 3x3 feature
        unfolding, the local ensemble and the bicubic base (one pixel each, two for the base)."""
        return receptive_radius(self.model) + 5

    @torch.no_grad()
    def predict_window(
        self,
        frames: np.ndarray,
        window: Window,
        *,
        dates: Dates | None = None,
        target_date: DateLike | None = None,
    ) -> np.ndarray:
        """The model at ``window``'s pixels (:class:`~stliif.models.window.WindowPredictor`):
        ``(ny, nx, C)`` float32 in 0..255 units, neither calibrated nor rounded."""
        f = _uint8_frames(frames)
        h, w = f.shape[1:3]
        ys = torch.from_numpy(-1.0 + 2.0 * window.ys / h).float()
        xs = torch.from_numpy(-1.0 + 2.0 * window.xs / w).float()
        coord = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(1, -1, 2).to(self.device)
        cell = torch.tensor([2.0 * window.cell[0] / h, 2.0 * window.cell[1] / w], device=self.device)
        x = torch.from_numpy(f.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        out = self._query(x, coord, cell.expand(1, coord.shape[1], 2), dates, target_date)
        return out[0].view(*window.shape, -1).float().cpu().numpy() * np.float32(255.0)


def _uint8_frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 4 or f.dtype != np.uint8:
        raise InvalidInputError(f"frames must be (T, H, W, C) uint8, got {f.shape} {f.dtype}")
    return f


def receptive_radius(model: nn.Module) -> int:
    """Spatial reach (pixels each side) of a model's stacked convolutions and poolings: the sum of
    their ``dilation * (kernel - 1) // 2`` over the two spatial dimensions (the larger of them),
    plus one for each 3x3 average pooling done functionally (Temporal LIIF's deviation map)."""
    reach = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            ks, dil = m.kernel_size[-2:], m.dilation[-2:]
            reach += max(d * (k - 1) // 2 for k, d in zip(ks, dil, strict=True))
    return reach + (1 if getattr(model, "temporal", False) else 0)
