"""Interpolation baselines for space-time super-resolution (numpy + Pillow, no torch).

Every baseline is a *predictor*: a callable
``predict(frames, *, size, dates=None, target_date=None) -> np.ndarray`` where ``frames`` is a
``(T, H, W, C)`` stack of low-resolution revisits in chronological order (C = 3 for RGB),
``size`` the side of the square output (or ``(height, width)``), ``dates``
the ``T`` acquisition dates and ``target_date`` the date asked for. A predictor returns one
``(size, size, C)`` uint8 image, except :func:`per_frame_bicubic`, which returns the ``(T, size,
size, C)`` stack of its per-frame upsamplings so that the study's protocol can score each frame
and average (see :func:`stliif.evaluation.paper.evaluate_paper`).

One family serves both protocols, chosen by the frames' dtype: **uint8** frames (protocol P)
give a uint8 output, resampled through Pillow's 8-bit path on the whole RGB image (what the study
did) or in Pillow's 32-bit float mode ``"F"`` per channel and rounded to uint8 only at the end;
**float** frames (protocol C's finite, gap-filled reflectance) are computed in float32 and give a
float32 output, never rounded.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from PIL import Image

from stliif.errors import InvalidInputError
from stliif.types import DateLike, Dates

__all__ = [
    "BASELINES",
    "ColourMap",
    "Predictor",
    "blend_in_time",
    "median_bicubic",
    "median_colour_bicubic",
    "per_frame_bicubic",
    "resize",
    "resize_channels",
    "size_hw",
    "temporal_linear",
    "temporal_median",
    "to_uint8",
]

Resample = Literal["bicubic", "bilinear", "nearest", "lanczos"]
_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}



class Predictor(Protocol):
    """Common call shape of every baseline (and of models evaluated on protocol P)."""

    def __call__(
        self,
        frames: np.ndarray,
        *,
        size: int | tuple[int, int],
        dates: Dates | None = None,
        target_date: DateLike | None = None,
    ) -> np.ndarray: ...


def size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of a predictor's ``size``: a side (square) or a pair of positive ints."""
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        h = w = int(size)
    elif isinstance(size, tuple | list) and len(size) == 2:
        h, w = (int(v) for v in size)
    else:
        raise InvalidInputError(f"size must be an int or (height, width), got {size!r}")
    if h < 1 or w < 1:
        raise InvalidInputError(f"size must be positive, got {size!r}")
    return h, w


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """A ``(T, H, W, C)`` stack: uint8 as is, or finite float reflectance as float32."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[0] < 1 or min(f.shape[1:]) < 1:
        raise InvalidInputError(f"frames must be a (T, H, W, C) stack with T >= 1, got {f.shape}")
    if f.dtype == np.uint8:
        return f
    if not np.issubdtype(f.dtype, np.floating):
        raise InvalidInputError(f"frames must be uint8 or float reflectance, got {f.dtype}")
    if not np.all(np.isfinite(f)):
        raise InvalidInputError("float frames must be finite (gap-filled)")
    return f.astype(np.float32, copy=False)


def _out(image: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The output in the frames' family: rounded uint8 for uint8 frames, float32 otherwise."""
    return to_uint8(image) if frames.dtype == np.uint8 else np.asarray(image, dtype=np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round half to even and clip to 0..255; returns uint8 of the same shape."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def resize(
    image: np.ndarray,
    size: int | tuple[int, int],
    *,
    resample: Resample = "bicubic",
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Resize an ``(H, W, C)`` or ``(H, W)`` image with Pillow.

    Args:
        image: uint8 (Pillow 8-bit path; RGB images in one call, as the study did) or float
            (Pillow ``"F"`` mode per channel, float32 result, no clipping).
        size: Output side (square) or ``(height, width)``.
        resample: ``"bicubic"`` (Pillow BICUBIC, a = -0.5), ``"bilinear"``, ``"nearest"`` or
            ``"lanczos"``.
        offset: ``(dy, dx)`` in input pixels: the output samples the input grid moved by this
            much (output pixel centres at input position ``centre + offset``; edges replicated).
            ``(0, 0)`` is Pillow's plain resize, bit for bit.

    Returns:
        ``(height, width[, C])`` array, uint8 for uint8 input, float32 otherwise.
    """
    if resample not in _RESAMPLE:
        raise InvalidInputError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    h, w = size_hw(size)
    a = np.asarray(image)
    if a.ndim not in (2, 3) or a.size == 0:
        raise InvalidInputError(f"image must be (H, W) or (H, W, C), got shape {a.shape}")
    method = _RESAMPLE[resample]
    dy, dx = (float(v) for v in offset)
    if dy or dx:
        return _resize_shifted(a, (h, w), method, dy, dx)
    if a.dtype == np.uint8:
        if a.ndim == 3 and a.shape[2] == 3:
            return np.asarray(Image.fromarray(a).resize((w, h), method))
        out = resize_channels(a[..., None] if a.ndim == 2 else a, (h, w), method)
        return out[..., 0] if a.ndim == 2 else out
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InvalidInputError(f"image must be uint8 or real float, got dtype {a.dtype}")
    f = a.astype(np.float32)
    out = resize_channels(f[..., None] if f.ndim == 2 else f, (h, w), method)
    return out[..., 0] if f.ndim == 2 else out


def resize_channels(
    image: np.ndarray,
    hw: tuple[int, int],
    method: Image.Resampling,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Pillow's resize of each channel of ``image (H, W, C)`` alone (8-bit ``"L"`` mode for uint8,
    ``"F"`` for float32) to ``hw = (height, width)``, of the source ``box`` (Pillow's
    ``(left, upper, right, lower)``, in input pixels; default the whole image): ``(height, width, C)``."""
    return np.stack(
        [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize((hw[1], hw[0]), method, box=box))
         for c in range(image.shape[-1])],
        axis=-1,
    )  # fmt: skip


def _resize_shifted(a: np.ndarray, hw: tuple[int, int], method: Image.Resampling, dy: float, dx: float) -> np.ndarray:
    """:func:`resize` with a sub-pixel offset: Pillow's resize of a box on an edge-padded copy."""
    pad = int(np.ceil(max(abs(dy), abs(dx)))) + 2
    chans = a[..., None] if a.ndim == 2 else a
    padded = np.pad(chans, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    f = padded.astype(np.float32)
    h_in, w_in = a.shape[:2]
    box = (pad + dx, pad + dy, pad + dx + w_in, pad + dy + h_in)
    out = resize_channels(f, hw, method, box)
    if a.dtype == np.uint8:
        out = to_uint8(out)
    return out[..., 0] if a.ndim == 2 else out


def per_frame_bicubic(
    frames: np.ndarray,
    *,
    size: int | tuple[int, int],
    dates: Dates | None = None,
    target_date: DateLike | None = None,
) -> np.ndarray:
    """The study's bicubic baseline: every frame upsampled alone with Pillow BICUBIC.

    Args:
        frames: ``(T, H, W, C)`` uint8 or float reflectance.
        size: Output side (square) or ``(height, width)``.
        dates: Ignored.
        target_date: Ignored.

    Returns:
        ``(T, size, size, C)``, the frames' family: one upsampling per frame (score each, then
        average).
    """
    f = _check_frames(frames)
    return np.stack([resize(frame, size) for frame in f])


def temporal_median(frames: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel median over time of ``(T, H, W, C)`` frames -> ``(H, W, C)``.

    uint8 frames give float64 (with an odd T it holds integers, a value of the stack; with an even
    T the mean of the two middle values); float frames give float32.
    """
    f = _check_frames(frames)
    return np.median(f, axis=0)


def median_bicubic(
    frames: np.ndarray,
    *,
    size: int | tuple[int, int],
    dates: Dates | None = None,
    target_date: DateLike | None = None,
) -> np.ndarray:
    """Temporal median of the frames, then Pillow bicubic to ``size``.

    uint8 frames: an integral median (odd T) is resampled by Pillow's 8-bit path, a half-integral
    one (even T) in float then rounded. ``dates`` and ``target_date`` are ignored.

    Returns:
        ``(size, size, C)``, the frames' family.
    """
    f = _check_frames(frames)
    med = temporal_median(f)
    if f.dtype != np.uint8:
        return resize(med, size)
    if np.all(med == np.floor(med)):
        return resize(med.astype(np.uint8), size)
    return to_uint8(resize(med, size))


@dataclass(frozen=True, eq=False)
class ColourMap:
    """Affine colour map ``out = A @ [c_1, ..., c_C, 1]`` applied per pixel.

    Attributes:
        matrix: ``(C, C + 1)`` float64; ``(3, 4)`` for RGB. The last column is the offset.
        n_pixels: Number of pixels the map was fitted on (0 for a map built by hand).
    """

    matrix: np.ndarray
    n_pixels: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[1] != m.shape[0] + 1 or not np.all(np.isfinite(m)):
            raise InvalidInputError(f"colour map matrix must be finite (C, C+1), got {m.shape}")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColourMap) and np.array_equal(self.matrix, other.matrix)

    def __hash__(self) -> int:
        return hash(self.matrix.tobytes())

    @classmethod
    def identity(cls, channels: int = 3) -> ColourMap:
        """The map that changes nothing."""
        return cls(np.hstack([np.eye(channels), np.zeros((channels, 1))]))

    @classmethod
    def fit(
        cls,
        samples: Iterable[tuple[np.ndarray, np.ndarray]],
        *,
        ridge: float = 0.0,
    ) -> ColourMap:
        """Least-squares fit of the map from the temporal median to the target colours.

        Fitted on the low-resolution grid: for each sample the high-resolution target is
        downsampled with Pillow BICUBIC (8-bit path) to the frames' ``(H, W)`` and the median of the
        frames is regressed onto it, pooling all pixels of all samples (ordinary least squares
        through the normal equations; ``ridge`` adds ``ridge * n_pixels`` to the diagonal of the
        linear part). Use training AOIs only.

        Args:
            samples: Pairs ``(frames (T, H, W, C) uint8, target (H', W', C) uint8)``.
            ridge: Non-negative Tikhonov weight per pixel (0: plain least squares).

        Returns:
            The fitted map, ``matrix`` of shape ``(C, C + 1)``.
        """
        if not ridge >= 0:
            raise InvalidInputError(f"ridge must be >= 0, got {ridge!r}")
        xtx: np.ndarray | None = None
        xty: np.ndarray | None = None
        n = 0
        for frames, target in samples:
            med = temporal_median(frames)
            t = np.asarray(target)
            if t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] != med.shape[2]:
                raise InvalidInputError(
                    f"target must be (H, W, {med.shape[2]}) uint8, got {t.shape} {t.dtype}"
                )
            down = resize(t, med.shape[:2]).reshape(-1, t.shape[2]).astype(np.float64)
            x = np.hstack([med.reshape(-1, med.shape[2]), np.ones((down.shape[0], 1))])
            if xtx is None or xty is None:
                xtx, xty = x.T @ x, x.T @ down
            else:
                if x.shape[1] != xtx.shape[0]:
                    raise InvalidInputError("all samples must have the same number of channels")
                xtx += x.T @ x
                xty += x.T @ down
            n += down.shape[0]
        if xtx is None or xty is None:
            raise InvalidInputError("no samples to fit the colour map on")
        c = xty.shape[1]
        reg = np.zeros_like(xtx)
        reg[np.arange(c), np.arange(c)] = ridge * n
        coef, *_ = np.linalg.lstsq(xtx + reg, xty, rcond=None)
        return cls(coef.T, n_pixels=n)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Map an ``(..., C)`` image; returns float64 of the same shape, unclipped."""
        a = np.asarray(image, dtype=np.float64)
        c = self.matrix.shape[0]
        if a.ndim < 1 or a.shape[-1] != c:
            raise InvalidInputError(f"image must end with {c} channels, got shape {a.shape}")
        return a @ self.matrix[:, :c].T + self.matrix[:, c]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"matrix": [[...], ...], "n_pixels": int}``."""
        return {"matrix": self.matrix.tolist(), "n_pixels": self.n_pixels}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColourMap:
        """Inverse of :meth:`to_dict`."""
        try:
            matrix = np.asarray(d["matrix"], dtype=np.float64)
            return cls(matrix, n_pixels=int(d.get("n_pixels", 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(f"not a colour map: {err}") from err

    def predictor(self) -> Predictor:
        """:func:`median_colour_bicubic` bound to this map."""
        return functools.partial(median_colour_bicubic, colour_map=self)


def median_colour_bicubic(
    frames: np.ndarray,
    *,
    size: int | tuple[int, int],
    colour_map: ColourMap,
    dates: Dates | None = None,
    target_date: DateLike | None = None,
) -> np.ndarray:
    """Temporal median, affine colour map (on the LR grid, float), Pillow bicubic, round.

    Args:
        frames: ``(T, H, W, C)`` uint8 or float reflectance (the map fitted on the same family).
        size: Output side (square) or ``(height, width)``.
        colour_map: A :class:`ColourMap` fitted on training AOIs.
        dates: Ignored.
        target_date: Ignored.

    Returns:
        ``(size, size, C)``, the frames' family.
    """
    f = _check_frames(frames)
    mapped = colour_map.apply(temporal_median(f))
    if f.dtype != np.uint8:
        mapped = mapped.astype(np.float32)
    return _out(resize(mapped, size), f)


def _days(values: Dates | DateLike) -> np.ndarray:
    try:
        d = np.asarray(values, dtype="datetime64[s]")
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"not dates: {values!r} ({err})") from err
    if np.any(np.isnat(d)):
        raise InvalidInputError(f"dates contain NaT: {values!r}")
    return d.astype(np.int64) / 86400.0


def temporal_linear(
    frames: np.ndarray,
    *,
    size: int | tuple[int, int],
    dates: Dates | None = None,
    target_date: DateLike | None = None,
    resample: Resample = "bicubic",
) -> np.ndarray:
    """Linear interpolation in time between the two frames around ``target_date``, then resize.

    Frames sharing a date are averaged first. A target date equal to a frame date returns that
    frame (resampled); one before the first or after the last date returns the nearest end frame
    (constant extrapolation). Blending is done in float, resampling in Pillow float mode, and a
    uint8 result rounded once.

    Args:
        frames: ``(T, H, W, C)`` uint8 or float reflectance, any order (paired with ``dates``).
        size: Output side (square) or ``(height, width)``.
        dates: ``T`` acquisition dates (ISO strings, ``datetime.date`` or ``numpy.datetime64``).
        target_date: The date to predict.
        resample: Spatial interpolation, ``"bicubic"`` or ``"bilinear"`` (or any of :func:`resize`).

    Returns:
        ``(size, size, C)``, the frames' family.
    """
    f = _check_frames(frames)
    image = blend_in_time(f, dates, target_date)
    if f.dtype != np.uint8:
        image = image.astype(np.float32)
    return _out(resize(image, size, resample=resample), f)


def blend_in_time(
    frames: np.ndarray, dates: Dates | None, target_date: DateLike | None
) -> np.ndarray:
    """The temporal-linear rule of :func:`temporal_linear`, before resampling: ``(H, W, C)`` float64.

    Frames sharing a date are averaged; the two dates around ``target_date`` are blended
    linearly; outside the date range the nearest end frame is used.
    """
    f = np.asarray(frames)
    if dates is None or target_date is None:
        raise InvalidInputError("temporal linear interpolation needs dates and target_date")
    d = _days(dates)
    if d.shape != (f.shape[0],):
        raise InvalidInputError(f"need {f.shape[0]} dates, got {d.shape[0] if d.ndim else 1}")
    t = float(_days(target_date))
    uniq, inverse = np.unique(d, return_inverse=True)
    if t <= uniq[0] or t >= uniq[-1]:
        k = 0 if t <= uniq[0] else len(uniq) - 1
        return f[inverse == k].astype(np.float64).mean(axis=0)
    j = int(np.searchsorted(uniq, t, side="left"))  # uniq[j - 1] < t <= uniq[j]
    w = (t - uniq[j - 1]) / (uniq[j] - uniq[j - 1])
    before = f[inverse == j - 1].astype(np.float64).mean(axis=0)
    after = f[inverse == j].astype(np.float64).mean(axis=0)
    return (1.0 - w) * before + w * after


BASELINES: dict[str, Predictor] = {
    "bicubic": per_frame_bicubic,
    "median_bicubic": median_bicubic,
    "temporal_linear": temporal_linear,
}
"""Fit-free baselines by name; the colour-mapped one needs :meth:`ColourMap.fit` first."""
