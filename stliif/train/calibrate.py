"""Calibrating a trained checkpoint on its training AOIs, and the colour-map start of training.

:func:`calibrate` fits the output calibration (blend with the colour-mapped median, V-mean
matching, grid offset: :mod:`stliif.models.calibration`) on the checkpoint's own training AOIs and
stores it in the checkpoint; test AOIs are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stliif.checkpoint import load_checkpoint, update_extra
from stliif.config import default_data_root
from stliif.errors import CheckpointError, InvalidInputError, ModelError
from stliif.models.baselines import ColourMap
from stliif.models.calibration import Calibration, VMeanMode, fit_offset
from stliif.store import ArtifactStore

__all__ = ["calibrate", "init_colour_map"]


def calibrate(
    path: str | Path,
    *,
    weight: float,
    v_mean: VMeanMode,
    offset: bool = False,
    data: str | Path | None = None,
    store: ArtifactStore | None = None,
) -> Calibration:
    """Store an output calibration in the checkpoint at ``path`` (atomically) and return it.

    The blend's colour map (and with ``offset``, the grid offset of
    :func:`~stliif.models.calibration.fit_offset`) is fitted on the checkpoint's own training AOIs
    (``data["train_aois"]``; test AOIs are refused), read as it was trained: from the WorldStrat
    files (``data``, default the checkpoint's root) or, for a run fed from the store, from
    ``store`` at the snapshot the run read. ``weight``, ``v_mean`` and whether to fit an
    offset come from cross-validation on training AOIs (``bench/cv.py``), never from test scores.
    """
    from stliif.evaluation.paper import PAPER_TEST_AOIS

    Calibration.check(weight, v_mean)
    ck = load_checkpoint(path)
    aois = list(ck.data.get("train_aois") or [])
    if not aois:
        raise CheckpointError(f"{path}: no training AOIs recorded to fit the colour map on")
    bad = sorted(set(aois) & set(PAPER_TEST_AOIS))
    if bad:
        raise InvalidInputError(f"test AOIs must not be used for calibration: {bad}")
    root = Path(data) if data is not None else Path(ck.data.get("root") or default_data_root())
    trained = trained_offset(ck.extra)  # trained on targets registered with it: always query there
    fit = offset and trained is None
    samples: Iterable[Any] = []
    if weight < 1.0 or fit:
        samples = _training_samples(ck.data, aois, root, store)
    pairs = [(s.frames, s.target) for s in samples]
    cmap = ColourMap.fit(pairs) if weight < 1.0 else None
    shift = trained or (fit_offset(pairs, cmap or ColourMap.fit(pairs)) if fit else (0.0, 0.0))
    cal = Calibration(weight=weight, v_mean=v_mean, colour_map=cmap, offset=shift)
    update_extra(path, calibration=cal.to_dict())
    return cal


def _training_samples(
    record: Mapping[str, Any], aois: list[str], root: Path, store: ArtifactStore | None
) -> list[Any]:
    """The uint8 training samples of ``aois`` from where the checkpoint's run read them."""
    from stliif.evaluation.clean import load_clean_sample
    from stliif.evaluation.paper import load_paper_samples
    from stliif.train.inputs import uint8_sample

    if record.get("source") != "store":
        return list(load_paper_samples(root, aois).values())
    if store is None:
        raise InvalidInputError("this checkpoint was trained on store artifacts: give the store to calibrate it")
    if store.store_id != record.get("store_id"):
        raise InvalidInputError(f"this checkpoint was trained on store {record.get('store')}, not {store.spec.uri}")
    return [uint8_sample(load_clean_sample(store, a, ref=record["snapshot"])) for a in aois]


def trained_offset(extra: Mapping[str, Any]) -> tuple[float, float] | None:
    """The grid offset a ``fit_offset`` run registered its targets with (``None``: not such a run)."""
    v = extra.get("target_offset")
    return None if v is None else (float(v[0]), float(v[1]))


def init_colour_map(model: nn.Module, samples: Iterable[Any]) -> None:
    """Set the model's base colour map to the least-squares affine map of ``samples`` (training
    AOIs: temporal median -> HR colours, the ``median-colour`` baseline's fit)."""
    colour = getattr(getattr(model, "base", None), "colour", None)
    if colour is None:
        raise ModelError("init_colour needs a model with a learned colour map (colour_map=True)")
    cmap = ColourMap.fit((s.frames, s.target) for s in samples)
    m = torch.tensor(np.array(cmap.matrix), dtype=colour.weight.dtype)
    c = m.shape[0]
    with torch.no_grad():
        colour.weight.copy_(m[:, :c, None, None])
        colour.bias.copy_(m[:, c] / 255.0)
