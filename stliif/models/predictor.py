"""Models by name: baselines and checkpoints as predictors, and the uint8 view of reflectance.

Every consumer of a model (evaluation, rendering) goes through here, so neither depends on
training or on the other::

    model_name(m)                  canonical name of a baseline or a checkpoint path
    get_predictor(m, protocol=...) the predictor (:class:`~stliif.models.baselines.Predictor`)
    register_checkpoint_loader(f)  teach get_predictor another checkpoint format
    uint8_scale, band_scales, reflectance_to_uint8, uint8_adapter   protocol C's uint8 level
    predictor_bands(p)             3 (R, G, B) or 4 (R, G, B, NIR): the bands a predictor takes

Checkpoints load through :class:`stliif.models.inference.ModelPredictor` (torch is imported
only then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from stliif.errors import InvalidInputError, NoDataError
from stliif.models.baselines import (
    ColourMap,
    Predictor,
    median_bicubic,
    per_frame_bicubic,
    temporal_linear,
    temporal_median,
    to_uint8,
)
from stliif.names import validate_name
from stliif.types import DateLike, Dates

__all__ = [
    "BASELINE_NAMES",
    "PROTOCOLS",
    "UINT8_PEAK",
    "CheckpointLoader",
    "band_scales",
    "check_protocol",
    "get_predictor",
    "model_name",
    "predictor_bands",
    "reflectance_to_uint8",
    "register_checkpoint_loader",
    "uint8_adapter",
    "uint8_scale",
]

PROTOCOLS: tuple[str, ...] = ("paper", "clean")
UINT8_PEAK = 255.0
"""Peak of the uint8 level: PSNR and SSIM data range of protocol P and of C's uint8 metrics."""
BASELINE_NAMES: tuple[str, ...] = ("bicubic", "median", "median-colour", "linear")
"""Registry keys of the four baselines every report includes (kebab-case)."""

_ALIASES = {
    "bicubic": "bicubic",
    "per-frame-bicubic": "bicubic",
    "per_frame_bicubic": "bicubic",
    "median": "median",
    "median-bicubic": "median",
    "median_bicubic": "median",
    "median-colour": "median-colour",
    "median-color": "median-colour",
    "median_colour": "median-colour",
    "median_colour_bicubic": "median-colour",
    "linear": "linear",
    "temporal-linear": "linear",
    "temporal_linear": "linear",
}


CheckpointLoader = Callable[[Path, str], Predictor | None]
"""``loader(path, protocol) -> predictor`` or ``None`` when the file is not its kind."""
_CHECKPOINT_LOADERS: list[CheckpointLoader] = []


def register_checkpoint_loader(loader: CheckpointLoader) -> None:
    """Teach :func:`get_predictor` to load checkpoints (called by the model code).

    The loader gets the checkpoint path and the protocol and returns a predictor, or ``None``
    when the file is not a checkpoint it knows. For protocol C the predictor receives float32
    reflectance frames and returns reflectance; :func:`uint8_adapter` turns a uint8 predictor
    into one.
    """
    if loader not in _CHECKPOINT_LOADERS:
        _CHECKPOINT_LOADERS.append(loader)


def _stliif_checkpoint(path: Path, protocol: str) -> Predictor | None:
    """stliif's own checkpoints (a ``.pt`` file, or a run folder's ``best.pt``)."""
    from stliif.models.inference import (
        ModelPredictor,  # torch is imported only when a model is evaluated
    )

    file = path / "best.pt" if path.is_dir() else path
    pred = ModelPredictor.from_checkpoint(file)
    pred.__name__ = model_name(path)
    if protocol == "paper":
        return pred
    if pred.calibration is not None:  # the offset was fitted on P's targets; C's are not P's files
        pred.calibration = replace(pred.calibration, offset=(0.0, 0.0))
    return uint8_adapter(pred)


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is ``"paper"`` or ``"clean"``."""
    if protocol not in PROTOCOLS:
        raise InvalidInputError(f"unknown protocol {protocol!r}: use one of {list(PROTOCOLS)}")
    return protocol


def model_name(name_or_path: str | Path) -> str:
    """Canonical name of a model: a baseline's registry key or a checkpoint file's stem.

    Raises:
        InvalidInputError: Neither a baseline name nor an existing file.
    """
    text = str(name_or_path).strip()
    key = text.lower()
    if key in _ALIASES:
        return _ALIASES[key]
    path = Path(text).expanduser()
    if path.is_file():
        return validate_name(path.stem, what="checkpoint name")
    if (path / "best.pt").is_file():
        return validate_name(path.name, what="checkpoint name")
    raise InvalidInputError(
        f"no such model {text!r}: use one of {', '.join(BASELINE_NAMES)}, the path of an "
        "existing checkpoint file or a run folder holding best.pt"
    )


def get_predictor(
    name_or_path: str | Path,
    *,
    protocol: str = "paper",
    colour_map: ColourMap | None = None,
) -> Predictor:
    """The predictor of a baseline name or a checkpoint path, for ``protocol``.

    Baselines (:data:`BASELINE_NAMES`; Python names such as ``median_bicubic`` also work):
    ``bicubic`` (each frame upsampled alone; a ``(T, S, S, 3)`` stack scored per frame),
    ``median`` (temporal median, then bicubic), ``median-colour`` (temporal median, affine colour
    map, bicubic; needs ``colour_map``), ``linear`` (linear in time between the two frames
    around the target date, then bicubic). For P they take uint8 frames
    (:mod:`stliif.models.baselines`); for C float32 reflectance (resampled in Pillow float mode).

    Args:
        name_or_path: Registry key or checkpoint path.
        protocol: ``"paper"`` or ``"clean"``.
        colour_map: Fitted map for ``median-colour`` (:func:`fit_colour_map_paper` /
            :func:`fit_colour_map_clean`, on training AOIs only).

    Raises:
        InvalidInputError: Unknown model, missing colour map, or a checkpoint that no
            registered loader can read.
    """
    check_protocol(protocol)
    name = model_name(name_or_path)
    if name not in BASELINE_NAMES:
        path = Path(str(name_or_path)).expanduser()
        for loader in [*_CHECKPOINT_LOADERS, _stliif_checkpoint]:
            pred = loader(path, protocol)
            if pred is not None:
                return pred
        raise InvalidInputError(f"{path}: not a checkpoint that stliif or a registered loader can read")
    if name == "median-colour":
        if colour_map is None:
            raise InvalidInputError(
                "median-colour needs a colour map fitted on the training AOIs "
                "(fit_colour_map_paper or fit_colour_map_clean)"
            )
        return colour_map.predictor()
    table: dict[str, Predictor] = {
        "bicubic": per_frame_bicubic, "median": median_bicubic, "linear": temporal_linear,
    }  # fmt: skip
    return table[name]


def uint8_scale(frames: np.ndarray) -> float:
    """Protocol C's per-AOI uint8 scale from the inputs alone: max of their temporal median.

    For gap-filled frames the per-pixel median equals the composite, so this is the maximum of
    the composite over its valid pixels and bands (``CleanSample.uint8_scale``).
    """
    f = np.asarray(frames)
    if not np.issubdtype(f.dtype, np.floating):
        raise InvalidInputError(f"protocol C frames are float reflectance, got {f.dtype}")
    top = float(temporal_median(f).max())
    if not top > 0:
        raise NoDataError("frames have no positive reflectance: no uint8 scale")
    return top


def band_scales(frames: np.ndarray) -> np.ndarray:
    """Per-band uint8 scales ``(C,)`` of ``(T, H, W, C)`` reflectance frames: R, G and B share
    :func:`uint8_scale` of the first three bands (so their uint8 view is the RGB one, hue
    kept); a fourth band (NIR, brighter than red on vegetation) has its own, the same rule on
    that band alone, so it is not clipped."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] not in (3, 4):
        raise InvalidInputError(f"frames must be (T, H, W, 3 or 4), got {f.shape}")
    rgb = uint8_scale(f[..., :3])
    return np.array([rgb] * 3 + [uint8_scale(f[..., 3:])] * (f.shape[-1] - 3), dtype=np.float64)


def predictor_bands(predictor: object) -> int:
    """Bands a predictor takes and returns: 4 (R, G, B, NIR) for a four-band checkpoint, else 3.
    Band-agnostic baselines say 3 here: they run on whatever they are given."""
    return int(getattr(predictor, "bands", 3))


def reflectance_to_uint8(image: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """``round_half_even(clip(255 * x / scale, 0, 255))`` as uint8 (NaN -> 0), any shape; a
    ``scale`` array (:func:`band_scales`) is one scale per band (the last axis)."""
    sc = np.asarray(scale, dtype=np.float64)
    if sc.ndim > 1 or not (np.all(np.isfinite(sc)) and np.all(sc > 0)):
        raise InvalidInputError(f"uint8 scale must be a positive number (or one per band), got {scale!r}")
    x = np.asarray(image, dtype=np.float64) * (UINT8_PEAK / sc)
    bad = ~np.isfinite(x)
    if bad.any():
        x[bad] = 0.0
    np.rint(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def uint8_adapter(predictor: Predictor) -> Predictor:
    """Run a uint8 (protocol P style) predictor on protocol C's reflectance frames.

    The frames are converted with :func:`uint8_scale` / :func:`reflectance_to_uint8`, the
    uint8 output converted back to reflectance with the same scale (per band with
    :func:`band_scales` for four-band frames).
    """

    def adapted(
        frames: np.ndarray,
        *,
        size: int | tuple[int, int],
        dates: Dates | None = None,
        target_date: DateLike | None = None,
    ) -> np.ndarray:
        scale = band_scales(frames) if np.shape(frames)[-1] == 4 else uint8_scale(frames)
        out = predictor(
            reflectance_to_uint8(frames, scale), size=size, dates=dates, target_date=target_date
        )
        return to_uint8(np.asarray(out)).astype(np.float32) * (np.asarray(scale) / UINT8_PEAK).astype(np.float32)

    adapted.__name__ = getattr(predictor, "__name__", "adapted")
    adapted.bands = predictor_bands(predictor)  # type: ignore[attr-defined]
    adapted.__wrapped__ = predictor  # type: ignore[attr-defined]
    return adapted
