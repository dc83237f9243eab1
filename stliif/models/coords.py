"""Continuous coordinates of LIIF: pixel-centre grids, cells and the 4-corner local ensemble.

Convention (LIIF's): an image of ``H x W`` pixels covers the square ``[-1, 1]^2``; pixel ``(i, j)``
has its centre at ``(-1 + (2i + 1) / H, -1 + (2j + 1) / W)``. Coordinates are stored as
``(y, x)`` (row first) in the last dimension; :func:`to_grid` flips them to the ``(x, y)`` order of
:func:`torch.nn.functional.grid_sample` (``align_corners=False`` matches these pixel centres).
A *cell* is the size of one query pixel in the same units: ``(2 / H_out, 2 / W_out)``. Time
is the third coordinate of Temporal LIIF: :func:`frame_times` gives each frame's time relative to
the query date, in units of :data:`TIME_SCALE_DAYS`.

Reference: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit Image
Function", CVPR 2021 (LIIF).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from stliif.errors import InvalidInputError

__all__ = [
    "TIME_SCALE_DAYS",
    "LocalCorners",
    "frame_times",
    "local_corners",
    "make_cell",
    "make_coord",
    "to_grid",
]

_EPS_SHIFT = 1e-6  # LIIF's tie-breaking shift
_CLAMP = 1 - 1e-6


def make_coord(
    shape: Sequence[int],
    *,
    ranges: Sequence[tuple[float, float]] | None = None,
    flatten: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Coordinates of the pixel centres of a grid (LIIF's ``make_coord``).

    Args:
        shape: Grid size per dimension, e.g. ``(H, W)``.
        ranges: ``(low, high)`` per dimension (default ``(-1, 1)`` each): the span the grid covers.
        flatten: Return ``(prod(shape), len(shape))`` instead of ``(*shape, len(shape))``.
        device: Device of the result.
        dtype: Floating dtype of the result.

    Returns:
        ``(H * W, 2)`` (flattened) or ``(H, W, 2)`` tensor of ``(y, x)`` centres.
    """
    if not shape or any(int(n) < 1 for n in shape):
        raise InvalidInputError(f"shape must be positive sizes, got {tuple(shape)!r}")
    if ranges is not None and len(ranges) != len(shape):
        raise InvalidInputError("ranges must give one (low, high) pair per dimension")
    axes = []
    for d, n in enumerate(shape):
        v0, v1 = (-1.0, 1.0) if ranges is None else (float(ranges[d][0]), float(ranges[d][1]))
        r = (v1 - v0) / (2 * int(n))
        axes.append(v0 + r + (2 * r) * torch.arange(int(n), device=device, dtype=dtype))
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return grid.reshape(-1, grid.shape[-1]) if flatten else grid


def make_cell(
    shape: Sequence[int],
    n: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Cells of ``n`` queries on an output grid of ``shape = (H_out, W_out)``.

    Returns:
        ``(n, 2)`` tensor filled with ``(2 / H_out, 2 / W_out)``.
    """
    if len(shape) != 2 or min(int(s) for s in shape) < 1:
        raise InvalidInputError(f"shape must be (H_out, W_out) > 0, got {tuple(shape)!r}")
    cell = torch.tensor([2.0 / int(shape[0]), 2.0 / int(shape[1])], device=device, dtype=dtype)
    return cell.expand(int(n), 2).clone()


def to_grid(coord: torch.Tensor) -> torch.Tensor:
    """``(B, Q, 2)`` ``(y, x)`` coordinates -> ``(B, 1, Q, 2)`` ``(x, y)`` grid for grid_sample."""
    return coord.flip(-1).unsqueeze(1)


class LocalCorners(NamedTuple):
    """The latent codes around each query and their local-ensemble weights.

    Attributes:
        index: ``(B, K, Q)`` int64 flat index ``iy * W + ix`` of each corner's latent code in the
            ``H x W`` grid (``K = 4`` with the local ensemble, else 1).
        rel: ``(B, K, Q, 2)`` query coordinate minus the code's centre, times ``(H, W)``
            (LIIF's relative coordinate: twice the offset in latent pixels, within ``[-2, 2]``).
        weight: ``(B, K, Q)`` ensemble weights (area of the opposite rectangle / total), summing
            to 1 over ``K``; bilinear weights between the four nearest codes in the interior.
    """

    index: torch.Tensor  # type: ignore[assignment]  # shadows tuple.index, as LIIF names it
    rel: torch.Tensor
    weight: torch.Tensor


def local_corners(
    coord: torch.Tensor,
    shape: Sequence[int],
    *,
    local_ensemble: bool = True,
) -> LocalCorners:
    """LIIF's local ensemble: the 4 nearest latent codes of each query and their area weights.

    Equivalent to LIIF's ``grid_sample(..., mode="nearest")`` look-ups with the ``+-1/H`` shifts,
    but with integer indices (a gather instead of a sampling). Between the outermost code centres
    the weights are exactly bilinear, so a decoder that returns its code's value reproduces
    linear images; outside them the corners clamp to the border code (constant extrapolation).

    Args:
        coord: ``(B, Q, 2)`` ``(y, x)`` query coordinates in ``[-1, 1]``.
        shape: ``(H, W)`` of the latent grid.
        local_ensemble: 4 corners with area weights; otherwise the single nearest code, weight 1.

    Returns:
        A :class:`LocalCorners`.
    """
    if coord.ndim != 3 or coord.shape[-1] != 2:
        raise InvalidInputError(f"coord must be (B, Q, 2), got {tuple(coord.shape)}")
    h, w = int(shape[0]), int(shape[1])
    size = coord.new_tensor([h, w])
    if local_ensemble:
        shifts = coord.new_tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        shifts = shifts / size + _EPS_SHIFT  # (4, 2): +-half a pixel pitch (pitch = 2 / size)
    else:
        shifts = coord.new_zeros(1, 2)
    c = (coord.unsqueeze(1) + shifts[None, :, None, :]).clamp(-_CLAMP, _CLAMP)  # (B, K, Q, 2)
    ij = torch.floor((c + 1) * 0.5 * size).long()
    ij[..., 0].clamp_(0, h - 1)
    ij[..., 1].clamp_(0, w - 1)
    centre = -1 + (2 * ij.to(coord.dtype) + 1) / size
    rel = (coord.unsqueeze(1) - centre) * size
    index = ij[..., 0] * w + ij[..., 1]
    if not local_ensemble:
        return LocalCorners(index, rel, torch.ones_like(rel[..., 0]))
    area = (rel[..., 0] * rel[..., 1]).abs() + 1e-9  # (B, 4, Q)
    weight = area.flip(1) / area.sum(dim=1, keepdim=True)  # opposite corner's area (LIIF's swap)
    return LocalCorners(index, rel, weight)


# ------------------------------------------------------------------------------------ time

TIME_SCALE_DAYS = 30.0
"""Default time unit of the models: one unit = 30 days."""


def frame_times(
    dates: Sequence[Any] | np.ndarray | None,
    reference: Any | None,
    *,
    n: int | None = None,
    time_scale: float = TIME_SCALE_DAYS,
) -> np.ndarray:
    """Frame times ``(date_i - reference) / time_scale`` in days.

    Args:
        dates: ``T`` dates (anything ``numpy.datetime64`` accepts), or ``None``: no time
            information, all frames at 0 (then ``n`` gives ``T``).
        reference: The reference date (the target date); ``None`` uses the midpoint of the first
            and last dates.
        n: Number of frames when ``dates`` is ``None``.
        time_scale: Days per time unit (> 0).

    Returns:
        ``(T,)`` float32.
    """
    if not time_scale > 0:
        raise InvalidInputError(f"time_scale must be > 0, got {time_scale!r}")
    if dates is None:
        if n is None or n < 1:
            raise InvalidInputError("frame_times needs dates or the number of frames n")
        return np.zeros(int(n), dtype=np.float32)
    try:
        d = np.asarray(dates, dtype="datetime64[s]").astype(np.int64) / 86400.0
        if reference is None:
            ref = 0.5 * (d.min() + d.max())
        else:
            ref = float(np.asarray(reference, dtype="datetime64[s]").astype(np.int64)) / 86400.0
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"not dates: {dates!r} / {reference!r} ({err})") from err
    if d.ndim != 1 or (n is not None and d.shape[0] != n):
        raise InvalidInputError(f"need {n or 'T'} dates, got shape {d.shape}")
    return ((d - ref) / float(time_scale)).astype(np.float32)
