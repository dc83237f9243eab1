"""Self-describing checkpoints, written atomically and read without executing code.

A checkpoint is one file (``torch.save`` zip format) holding a dict::

    {"format": 1, "stliif_version": str, "model": {name, args}, "train_spec": dict | None,
     "data": dict, "state_dict": {name: Tensor}, "step": int, "optimizer": dict | None,
     "extra": dict}

Everything except tensors is plain JSON-like data (checked when saving), so the file loads with
``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which refuses any global that
is not a tensor/primitive type. A checkpoint carrying a malicious pickle (a ``__reduce__`` that
runs code) is rejected with :class:`CheckpointError` and nothing in it runs. (``safetensors``
would be the other safe format; it is not installed here, and weights-only loading covers the
optimizer state too.)

Saving writes a temporary file in the destination folder, flushes it to disk and renames it over
the destination (``os.replace``): a crash leaves the old checkpoint or the new one, never half.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

import stliif
from stliif.errors import CheckpointError, ModelError
from stliif.models.registry import make_model, model_spec, normalize_spec

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "checkpoint_dataset",
    "load_checkpoint",
    "load_model",
    "restore_checkpoint",
    "save_checkpoint",
    "update_extra",
]

FORMAT_VERSION = 1
_REQUIRED = ("format", "stliif_version", "model", "state_dict")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        model: ``{name, args}`` spec that rebuilds the model (:func:`make_model`).
        state_dict: Parameters and buffers.
        train_spec: The training spec (JSON form) or ``None``.
        data: What the model was trained on (root, AOIs, fingerprint, ...).
        stliif_version: Library version that wrote it.
        step: Optimisation steps done.
        optimizer: Optimizer state (to resume) or ``None``.
        extra: Anything else (training history, best validation score, code revision, ...).
        format: File format version.
    """

    model: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    train_spec: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stliif_version: str = stliif.__version__
    step: int = 0
    optimizer: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION


def _plain(name: str, value: Any) -> Any:
    """Check that ``value`` is JSON-like (what weights-only loading accepts besides tensors)."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint field {name!r} must be JSON-like data: {err}") from err
    return value


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    spec: Mapping[str, Any] | None = None,
    train_spec: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint of ``model`` atomically.

    Args:
        path: Destination file (its folder is created).
        model: The model; its spec comes from :func:`stliif.models.registry.model_spec` unless
            ``spec`` is given.
        spec: ``{name, args}`` (default: the one the model was built from).
        train_spec: Training spec (JSON-like).
        data: Data description (JSON-like).
        optimizer: Optimizer whose state is stored for resuming.
        step: Steps done.
        extra: Other JSON-like metadata.

    Returns:
        The path written.
    """
    dest = Path(path)
    try:
        s = normalize_spec(spec) if spec is not None else model_spec(model)
    except ModelError as err:
        raise CheckpointError(f"cannot describe the model: {err}") from err
    payload = {
        "format": FORMAT_VERSION,
        "stliif_version": stliif.__version__,
        "model": s,
        "train_spec": _plain("train_spec", dict(train_spec)) if train_spec is not None else None,
        "data": _plain("data", dict(data or {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "extra": _plain("extra", dict(extra or {})),
    }
    return _write_atomic(dest, payload)


def update_extra(path: str | Path, **extra: Any) -> Path:
    """Rewrite a checkpoint (atomically) with ``extra`` merged into its ``extra`` metadata.

    Weights, optimizer state and every other field are kept as they are.
    """
    ck = load_checkpoint(path)
    payload = {
        "format": ck.format, "stliif_version": ck.stliif_version, "model": ck.model,
        "train_spec": ck.train_spec, "data": ck.data, "state_dict": ck.state_dict, "step": ck.step,
        "optimizer": ck.optimizer, "extra": _plain("extra", {**ck.extra, **extra}),
    }  # fmt: skip
    return _write_atomic(Path(path), payload)


def _write_atomic(dest: Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``dest``, fsync, rename over ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename durable (best effort: not every platform can open a folder)
        dfd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return dest


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint safely (weights-only unpickling) and check its structure.

    Raises:
        CheckpointError: Missing, truncated or corrupted file, a pickle that asks for anything but
            tensors and plain data (possible code execution: refused), or a wrong structure.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file missing")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is damaged
        raise CheckpointError(
            f"{p}: not a readable checkpoint: refused, not a torch.save archive (truncated, another "
            "kind of file, or a bare pickle, which is never unpickled)"
        )
    try:
        raw = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{p}: refused: the file contains objects other than tensors and plain data "
            f"(weights-only loading; it may be malicious): {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            TypeError, KeyError, IndexError) as err:  # fmt: skip
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(raw, dict) or any(k not in raw for k in _REQUIRED):
        raise CheckpointError(f"{p}: not an stliif checkpoint (needs keys {_REQUIRED})")
    fmt = raw["format"]
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION or fmt < 1:
        raise CheckpointError(f"{p}: unsupported checkpoint format {fmt!r} (this stliif reads <= {FORMAT_VERSION})")
    sd = raw["state_dict"]
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise CheckpointError(f"{p}: state_dict must map names to tensors")
    try:
        spec = normalize_spec(raw["model"])
    except ModelError as err:
        raise CheckpointError(f"{p}: bad model spec: {err}") from err
    return Checkpoint(
        model=spec,
        state_dict=sd,
        train_spec=raw.get("train_spec"),
        data=dict(raw.get("data") or {}),
        stliif_version=str(raw["stliif_version"]),
        step=int(raw.get("step", 0)),
        optimizer=raw.get("optimizer"),
        extra=dict(raw.get("extra") or {}),
        format=fmt,
    )


def load_model(
    source: str | Path | Checkpoint,
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
) -> nn.Module:
    """Rebuild a model from its checkpoint (spec + weights), in eval mode on ``device``.

    Raises:
        CheckpointError: Unreadable checkpoint, or weights that do not fit the spec.
    """
    ck = source if isinstance(source, Checkpoint) else load_checkpoint(source)
    try:
        model = make_model(ck.model)
        model.load_state_dict(ck.state_dict, strict=strict)
    except (ModelError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint weights do not fit its spec {ck.model['name']!r}: {err}") from err
    return model.to(device).eval()


def checkpoint_dataset(path: str | Path) -> xr.Dataset:
    """A checkpoint file as a Dataset for the artifact store: its bytes plus readable attributes.

    The bytes are stored verbatim (``checkpoint`` variable, uint8), so :func:`restore_checkpoint`
    gives back the identical file; the model spec, step, data description and best validation
    record are attributes, so ``stliif store show`` tells what a stored model is without loading it.
    """
    ck = load_checkpoint(path)  # refuse to version something that would not load
    raw = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    attrs = {
        "model": json.dumps(ck.model),
        "train_spec": json.dumps(ck.train_spec),
        "data": json.dumps(ck.data),
        "step": ck.step,
        "best": json.dumps(ck.extra.get("best")),
        "code": json.dumps(ck.extra.get("code")),
        "stliif_version": ck.stliif_version,
    }
    return xr.Dataset({"checkpoint": ("byte", raw)}, attrs=attrs)


def restore_checkpoint(ds: xr.Dataset, path: str | Path) -> Path:
    """Write the checkpoint held by a store Dataset (:func:`checkpoint_dataset`) to ``path``, atomically."""
    if "checkpoint" not in ds:
        raise CheckpointError("this artifact holds no checkpoint (variable 'checkpoint' missing)")
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(np.asarray(ds["checkpoint"].values, dtype=np.uint8).tobytes())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    load_checkpoint(dest)
    return dest
