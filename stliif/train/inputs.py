"""Where a training run's scenes come from, and the record of them that its checkpoints keep.

Two sources, chosen by :attr:`TrainSpec.source <stliif.train.spec.TrainSpec.source>`:

- ``"files"`` (the default): protocol P's inputs, read from the WorldStrat reference files under
  ``spec.data`` (``reference/temporal_subset``, ``reference/hr_adapted``); the AOIs are the
  folder's, split by :func:`stliif.preprocess.split.paper_split`; the record is a sha256 of those
  files. Validation is protocol P on the validation AOIs.
- ``"store"``: protocol C's inputs, read from the artifact store (``matched/clean/<aoi>``,
  ``pansharpened/<aoi>``, ``subset/clean/<aoi>``, through
  :func:`stliif.evaluation.clean.load_clean_sample`), all at one snapshot; the AOIs are the train
  and validation parts of the store's ``splits/paper`` manifest, the validation AOIs carved from
  them as ``paper_split`` does; the record is ``{artifact path: version}`` of every artifact read
  (the manifest included), the snapshot and the store's identity. Training scenes are the samples'
  uint8 view (each AOI at its protocol C scale, the view a checkpoint is scored on under C), the
  target's few pixels without HR data (image edges) filled from their nearest valid pixel; with
  ``spec.bands == 4`` also the NIR (``nir`` of ``matched/clean``, the pansharpened NIR target),
  in its own uint8 scale. Validation is protocol C on the validation AOIs (R, G, B PSNR).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from stliif.errors import InvalidInputError, NoDataError
from stliif.evaluation.clean import CleanSample, load_clean_sample
from stliif.evaluation.paper import PaperSample, load_paper_samples, paper_aois
from stliif.models.predictor import band_scales, reflectance_to_uint8
from stliif.preprocess.mask import fill_nearest
from stliif.preprocess.split import PAPER_TEST_AOIS, carve_validation, paper_split
from stliif.store import ArtifactStore
from stliif.train.spec import TrainSpec

__all__ = ["SPLIT_PATH", "TrainInputs", "file_inputs", "load_inputs", "store_inputs", "uint8_sample"]

SPLIT_PATH = "splits/paper"
"""The store manifest whose train and validation AOIs a store-fed run trains and validates on."""


@dataclass(frozen=True)
class TrainInputs:
    """What a run trains and validates on.

    Attributes:
        train: AOI -> :class:`PaperSample` (uint8 frames and target, with dates).
        val: AOI -> validation sample (:class:`PaperSample` for ``"paper"``,
            :class:`CleanSample` for ``"clean"``).
        protocol: How validation scores: ``"paper"`` (P) or ``"clean"`` (C).
        info: The checkpoint's ``data`` record (JSON-like): source, AOIs, and what identifies the
            inputs (``fingerprint``; for the store also ``versions``, ``snapshot``, ``store_id``).
    """

    train: dict[str, PaperSample]
    val: dict[str, Any]
    protocol: Literal["paper", "clean"]
    info: dict[str, Any]


def _check_split(train_aois: Sequence[str], val_aois: Sequence[str]) -> tuple[list[str], list[str]]:
    overlap = sorted(set(train_aois) & set(val_aois))
    if overlap:
        raise InvalidInputError(f"train and validation AOIs overlap: {overlap}")
    return list(train_aois), list(val_aois)


def _files_fingerprint(root: Path, aois: Sequence[str]) -> str:
    """sha256 over the protocol-P files of ``aois`` (frames and targets): the data snapshot id."""
    h = hashlib.sha256()
    for aoi in sorted(aois):
        ref = root / "reference"
        files = [ref / "temporal_subset" / aoi / f"{i}.png" for i in range(1, 6)]
        files.append(ref / "hr_adapted" / f"{aoi}_adapted_x6.png")
        for p in files:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def file_inputs(spec: TrainSpec) -> TrainInputs:
    """Protocol P's samples from the WorldStrat reference files under ``spec.data``."""
    root = Path(spec.data)
    train_aois, val_aois = spec.train_aois, spec.val_aois
    if train_aois is None or val_aois is None:
        manifest = paper_split(paper_aois(root), n_val=spec.n_val, seed=spec.split_seed)
        train_aois = train_aois or list(manifest.train)
        val_aois = val_aois or list(manifest.val)
    train_aois, val_aois = _check_split(train_aois, val_aois)
    info = {
        "root": str(root), "protocol": "P", "train_aois": train_aois, "val_aois": val_aois,
        "fingerprint": _files_fingerprint(root, [*train_aois, *val_aois]),
    }  # fmt: skip
    return TrainInputs(
        train=load_paper_samples(root, train_aois, with_dates=True),
        val=load_paper_samples(root, val_aois, with_dates=True) if val_aois else {},
        protocol="paper",
        info=info,
    )


def uint8_sample(sample: CleanSample, bands: int = 3) -> PaperSample:
    """A protocol C sample's uint8 view (frames and target at its ``uint8_scale``, the target's
    pixels without HR data taken from their nearest valid pixel), as a training scene takes it.
    With ``bands=4`` R, G, B, NIR, each band at its :func:`~stliif.models.predictor.band_scales`
    scale (R, G, B at ``uint8_scale``), as a four-band checkpoint is evaluated and rendered."""
    frames, target = (sample.rgbn_frames(), sample.rgbn_target()) if bands == 4 else (sample.frames, sample.target)
    scale: float | np.ndarray = band_scales(frames) if bands == 4 else sample.uint8_scale
    valid = np.isfinite(target).all(axis=-1)
    if not valid.any():
        raise NoDataError(f"{sample.aoi}: the target has no valid pixel")
    target = fill_nearest(target, valid)
    return PaperSample(
        aoi=sample.aoi,
        frames=reflectance_to_uint8(frames, scale),
        target=reflectance_to_uint8(target, scale),
        dates=sample.dates,
        hr_date=sample.hr_date,
    )


def store_inputs(spec: TrainSpec, store: ArtifactStore, *, ref: str | None = None) -> TrainInputs:
    """Protocol C's samples from ``store`` (at ``ref``, default its branch), read at one snapshot.

    Raises:
        NoDataError: No ``splits/paper`` manifest, or an AOI's artifacts are missing (the message
            says which ETL stages to run).
    """
    snapshot = store.snapshot_id(ref)
    versions: dict[str, str] = {}
    train_aois, val_aois = spec.train_aois, spec.val_aois
    if train_aois is None or val_aois is None:
        v = store.version(SPLIT_PATH, ref=snapshot)
        if v is None:
            raise NoDataError(f"the store has no {SPLIT_PATH} manifest: run `stliif etl` (stage split) first")
        versions[SPLIT_PATH] = v
        manifest = store.read_json(SPLIT_PATH, ref=snapshot)
        pool = sorted(a for a in [*manifest["train"], *manifest["val"]] if a not in PAPER_TEST_AOIS)
        carved_train, carved_val = carve_validation(pool, n_val=spec.n_val, seed=spec.split_seed)
        train_aois = train_aois or carved_train
        val_aois = val_aois or carved_val
    train_aois, val_aois = _check_split(train_aois, val_aois)
    clean = {a: load_clean_sample(store, a, ref=snapshot) for a in [*train_aois, *val_aois]}
    for sample in clean.values():
        versions.update(sample.versions)
    versions = dict(sorted(versions.items()))
    info = {
        "source": "store", "protocol": "C", "store": store.spec.uri, "store_id": store.store_id,
        "branch": store.spec.branch, "snapshot": snapshot, "train_aois": train_aois,
        "val_aois": val_aois, "versions": versions,
        "fingerprint": hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest(),
    }  # fmt: skip
    return TrainInputs(
        train={a: uint8_sample(clean[a], spec.bands) for a in train_aois},
        val={a: clean[a] for a in val_aois},
        protocol="clean",
        info=info,
    )


def load_inputs(spec: TrainSpec, store: ArtifactStore | None = None) -> TrainInputs:
    """The inputs ``spec.source`` names (``"store"`` needs ``store``)."""
    if spec.source == "files":
        return file_inputs(spec)
    if store is None:
        raise InvalidInputError("a train spec with source='store' needs a store to read from")
    return store_inputs(spec, store)
