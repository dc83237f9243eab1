"""K-fold cross-validation of a fixed training configuration over every AOI (issue 18, part 4).

Each AOI is predicted by a model that never saw it: the AOIs are split into ``k`` disjoint folds
(:func:`kfold`), fold ``i``'s model is trained on the other folds' AOIs (:func:`train_fold`, no
step selection: the last checkpoint is the model) and calibrated on them
(:func:`calibrate_fold`: the configuration's weight and V-mean mode, with the colour map and the
grid offset refitted on the fold's training AOIs), then scored on its own fold
(:func:`score_fold`) against the baselines, on protocol P's targets and on protocol C's, in P
mode (the calibrated output) and in product mode (:func:`stliif.constraint.product_predictor`).
:func:`summarize` gives per-method means and paired deltas (95 % bootstrap CI, AOIs resampled)
against ``median-colour``.

A fold spec (:func:`fold_spec`) is a :class:`stliif.train.TrainSpec` marked ``cross_validation``:
unlike any other spec it may train on test AOIs of the paper split, since every AOI is held out
by exactly one fold. Nothing is chosen here: the configuration (model, steps, calibration) is fixed
before any fold is scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stliif.errors import InvalidInputError
from stliif.evaluation.clean import CleanSample, fit_colour_map_clean, score_clean
from stliif.evaluation.paper import PaperSample, score_image
from stliif.evaluation.results import paired_deltas
from stliif.models.baselines import ColourMap, median_bicubic, to_uint8
from stliif.models.calibration import Calibration, fit_offset

__all__ = [
    "METHODS",
    "REFERENCE",
    "SCALES",
    "calibrate_fold",
    "calibration_rule",
    "check_out_of_fold",
    "commit_fold",
    "fold_spec",
    "kfold",
    "score_fold",
    "summarize",
    "train_fold",
]

SCALES: dict[str, int] = {"x2": 314, "x4": 628, "x6": 1054}
"""Output sides scored (those of protocols P and C)."""
METHODS = ("record", "record-product", "median-colour", "median-colour-cal", "median")
"""Methods scored per AOI: the fold model calibrated (P mode), the same in product mode,
median + colour map + bicubic, that with the model's calibration alone (the blend's median term
at weight 0, V-mean matched, at the grid offset on P), and median + bicubic."""
REFERENCE = "median-colour"
"""The method every paired delta is taken against."""

Psnr = dict[str, dict[str, dict[str, dict[str, float]]]]
"""``psnr[protocol][method][aoi][scale]``, protocol ``"P"`` or ``"C"``."""


def kfold(aois: Iterable[str], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` disjoint folds covering ``aois`` (seeded shuffle of the sorted names, fold ``i`` gets
    every ``k``-th from position ``i``: sizes differ by at most one), each sorted (also
    ``bench/cv.py``'s folds).

    Raises:
        InvalidInputError: ``k < 2``, more folds than AOIs, or a repeated AOI.
    """
    names = sorted(str(a) for a in aois)
    if len(set(names)) != len(names):
        raise InvalidInputError("AOIs repeat")
    if not 2 <= k <= len(names):
        raise InvalidInputError(f"need 2 <= k <= {len(names)} folds, got {k}")
    order = [str(a) for a in np.random.default_rng(seed).permutation(names)]
    return [sorted(order[i::k]) for i in range(k)]


def fold_spec(base: Mapping[str, Any], train_aois: Sequence[str], *, steps: int | None = None,
              threads: int | None = None) -> Any:  # fmt: skip
    """The :class:`~stliif.train.TrainSpec` of a fold: ``base`` (a train spec's JSON form, e.g. the
    record's) with its training AOIs replaced by ``train_aois`` (no validation AOIs), marked
    ``cross_validation`` (the paper split's test AOIs may train it: each is held out by another
    fold), and ``steps`` / ``threads`` when given. Validated as any spec."""
    from stliif.train import TrainSpec

    if not train_aois:
        raise InvalidInputError("a fold needs training AOIs")
    update: dict[str, Any] = {"train_aois": sorted(train_aois), "val_aois": None, "n_val": 0, "val_every": 0,
                              "cross_validation": True}  # fmt: skip
    if steps is not None:
        update["steps"] = int(steps)
    if threads is not None:
        update["threads"] = int(threads)
    return TrainSpec.model_validate({**dict(base), **update})


def train_fold(spec: Any, out_dir: str | Path, *, trainer: Callable[..., Any] | None = None) -> Path:
    """Train a fold (or reuse it): its ``best.pt`` (the last step) under ``out_dir``.

    A ``best.pt`` already there at ``spec.steps`` steps and trained on ``spec.train_aois`` is
    reused without training; otherwise ``trainer`` (default :func:`stliif.train.train`) runs,
    resuming from ``out_dir/last.pt`` when a killed run left one.

    Raises:
        InvalidInputError: The run stopped before ``spec.steps``.
    """
    from stliif.checkpoint import load_checkpoint

    out = Path(out_dir)
    best = out / "best.pt"
    if best.is_file():
        ck = load_checkpoint(best)
        if ck.step == spec.steps and sorted(ck.data.get("train_aois") or []) == sorted(spec.train_aois):
            return best
    if trainer is None:
        from stliif.train import train

        trainer = train
    res = trainer(spec, out, progress=False)
    if not res.finished or not best.is_file():
        raise InvalidInputError(f"{out}: training stopped at step {res.step} of {spec.steps}; rerun to resume")
    return best


def calibration_rule(calibration: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration's calibration choice, as :func:`calibrate_fold` takes it (``weight``,
    ``v_mean``, ``offset``: whether a grid offset is fitted), from a checkpoint's
    ``extra["calibration"]``."""
    return {"weight": float(calibration["weight"]), "v_mean": str(calibration["v_mean"]),
            "offset": any(calibration.get("offset", (0, 0)))}  # fmt: skip


def calibrate_fold(
    path: str | Path,
    samples: Mapping[str, PaperSample],
    held: Sequence[str],
    *,
    weight: float,
    v_mean: str,
    offset: bool,
) -> Calibration:
    """Store the configuration's calibration in a fold checkpoint (atomically) and return it.

    ``weight`` and ``v_mean`` are the configuration's; the blend's colour map and (with
    ``offset``) the grid offset (:func:`~stliif.models.calibration.fit_offset`) are fitted on the
    checkpoint's recorded training AOIs (P samples from ``samples``). The checkpoint's extra
    also records ``cv = {"held_out": held, "train_aois": ...}``. A checkpoint that already
    carries this calibration for the same AOIs is left as it is.

    Raises:
        InvalidInputError: A held-out AOI among the training AOIs.
    """
    from stliif.checkpoint import load_checkpoint, update_extra

    ck = load_checkpoint(path)
    train_aois = sorted(ck.data.get("train_aois") or [])
    check_out_of_fold(train_aois, held)
    cv = {"held_out": sorted(held), "train_aois": train_aois}
    old = ck.extra.get("calibration")
    if ck.extra.get("cv") == cv and old and old.get("weight") == weight and old.get("v_mean") == v_mean and (
        any(old.get("offset", (0, 0))) == offset
    ):
        return Calibration.from_dict(old)
    pairs = [(samples[a].frames, samples[a].target) for a in train_aois]
    cmap = ColourMap.fit(pairs)
    shift = fit_offset(pairs, cmap) if offset else (0.0, 0.0)
    cal = Calibration(weight=weight, v_mean=v_mean, colour_map=cmap, offset=shift)  # type: ignore[arg-type]
    update_extra(path, calibration=cal.to_dict(), cv=cv)
    return cal


def check_out_of_fold(train_aois: Iterable[str], held: Iterable[str]) -> None:
    """Raise :class:`InvalidInputError` if any held-out AOI is among a model's training AOIs."""
    seen = sorted(set(train_aois) & set(held))
    if seen:
        raise InvalidInputError(f"not out of fold: the model trained on {seen}")


def _cached(image: np.ndarray) -> Callable[..., np.ndarray]:
    def predict(frames: np.ndarray, **_: Any) -> np.ndarray:
        return image

    return predict


def _calibration_only(cal: Calibration) -> Callable[..., np.ndarray]:
    """The calibration applied to a zero model output: its median term, V-mean matched (uint8)."""

    def predict(frames: np.ndarray, *, size: int, **_: Any) -> np.ndarray:
        zero = np.zeros((size, size, np.asarray(frames).shape[-1]))
        return to_uint8(replace(cal, weight=0.0).apply(zero, frames))

    return predict


def score_fold(
    checkpoint: str | Path,
    held: Sequence[str],
    paper: Mapping[str, PaperSample],
    clean: Mapping[str, CleanSample] | None,
    *,
    colour_map_clean: ColourMap | None = None,
    scales: Mapping[str, int] = SCALES,
    predictors: Callable[[Path], tuple[Callable[..., Any], Callable[..., Any]]] | None = None,
) -> Psnr:
    """PSNR of every :data:`METHODS` entry on the held-out AOIs of a calibrated fold checkpoint.

    P: the checkpoint as ``stliif evaluate --protocol paper`` runs it (calibrated, at its grid
    offset), PSNR of :func:`~stliif.evaluation.paper.score_image`; the colour map of
    ``median-colour`` is the calibration's (fitted on the fold's training AOIs). C (when
    ``clean`` is given): the checkpoint as ``--protocol clean`` runs it (offset 0, through the
    uint8 adapter), ``median-colour`` with ``colour_map_clean`` (fitted on the fold's training
    AOIs by :func:`~stliif.evaluation.clean.fit_colour_map_clean`), uint8 PSNR of
    :func:`~stliif.evaluation.clean.score_clean` (``psnr``; ``psnr_refl`` under ``"C-refl"``).
    Product mode constrains the same output (:func:`~stliif.constraint.product_predictor`).

    Args:
        predictors: ``path -> (P predictor, C predictor)`` (default: :func:`stliif.models.predictor.get_predictor`).

    Raises:
        InvalidInputError: A held-out AOI among the checkpoint's training AOIs, or no calibration.
    """
    from stliif.checkpoint import load_checkpoint
    from stliif.constraint import product_predictor
    from stliif.models.predictor import uint8_adapter

    path = Path(checkpoint)
    ck = load_checkpoint(path)
    check_out_of_fold(ck.data.get("train_aois") or [], held)
    cal_dict = ck.extra.get("calibration")
    if not cal_dict:
        raise InvalidInputError(f"{path}: no calibration (run calibrate_fold first)")
    cal = Calibration.from_dict(cal_dict)
    if predictors is None:
        from stliif.models.predictor import get_predictor

        def predictors(p: Path) -> tuple[Callable[..., Any], Callable[..., Any]]:
            return get_predictor(p, protocol="paper"), get_predictor(p, protocol="clean")

    pred_p, pred_c = predictors(path)
    out: Psnr = {"P": {}, "C": {}, "C-refl": {}}

    def put(proto: str, method: str, aoi: str, scale: str, value: float) -> None:
        out[proto].setdefault(method, {}).setdefault(aoi, {})[scale] = float(value)

    for aoi in held:
        s = paper[aoi]
        c = clean[aoi] if clean is not None else None
        for scale, z in scales.items():
            kw = {"size": z, "dates": s.dates, "target_date": s.hr_date}
            t = s.target_at(z)
            model = np.asarray(pred_p(s.frames, **kw))
            runs = {
                "record": model,
                "record-product": product_predictor(_cached(model))(s.frames, **kw),
                "median-colour": cal.colour_map.predictor()(s.frames, size=z) if cal.colour_map else None,
                "median-colour-cal": _calibration_only(cal)(s.frames, size=z),
                "median": median_bicubic(s.frames, size=z),
            }
            for m, img in runs.items():
                if img is not None:
                    put("P", m, aoi, scale, score_image(img, t, ssim=False)["psnr"])
            if c is None:
                continue
            kw = {"size": z, "dates": c.dates, "target_date": c.hr_date}
            tc = c.target_at(z)
            model = np.asarray(pred_c(c.frames, **kw))
            cal_c = uint8_adapter(_calibration_only(replace(cal, offset=(0.0, 0.0))))
            runs = {
                "record": model,
                "record-product": product_predictor(_cached(model))(c.frames, **kw),
                "median-colour": colour_map_clean.predictor()(c.frames, size=z) if colour_map_clean else None,
                "median-colour-cal": cal_c(c.frames, size=z),
                "median": median_bicubic(c.frames, size=z),
            }
            for m, img in runs.items():
                if img is not None:
                    sc = score_clean(np.asarray(img, np.float32), tc, uint8_scale=c.uint8_scale, ssim=False, cpsnr=False)
                    put("C", m, aoi, scale, sc["psnr"])
                    put("C-refl", m, aoi, scale, sc["psnr_refl"])
    return out


def fit_fold_colour_map_clean(clean: Mapping[str, CleanSample], train_aois: Iterable[str]) -> ColourMap:
    """C's colour map of a fold: :func:`fit_colour_map_clean` on its training AOIs only."""
    return fit_colour_map_clean(clean[a] for a in train_aois)


def merge(into: Psnr, part: Psnr) -> Psnr:
    """Add a fold's :func:`score_fold` result into ``into`` (in place; returned)."""
    for proto, methods in part.items():
        for m, per in methods.items():
            into.setdefault(proto, {}).setdefault(m, {}).update(per)
    return into


def summarize(psnr: Psnr, *, reference: str = REFERENCE, n_boot: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Means and paired deltas against ``reference`` per protocol, method and scale.

    Returns:
        ``{protocol: {method: {scale: {"n", "mean", "delta", "ci_low", "ci_high"}}}}`` over the
        AOIs scored for both the method and the reference at that scale (``delta`` and CI:
        :func:`~stliif.evaluation.results.paired_deltas`, method minus reference; ``None`` for
        the reference itself).
    """
    out: dict[str, Any] = {}
    for proto, methods in psnr.items():
        ref = methods.get(reference, {})
        for m, per in methods.items():
            for scale in sorted({sc for v in per.values() for sc in v}, key=lambda s: SCALES.get(s, 0)):
                aois = sorted(a for a in per if scale in per[a])
                vals = [per[a][scale] for a in aois]
                cell: dict[str, Any] = {"n": len(aois), "mean": float(np.mean(vals)), "delta": None,
                                        "ci_low": None, "ci_high": None}  # fmt: skip
                paired = [a for a in aois if scale in ref.get(a, {})]
                if m != reference and paired:
                    d = paired_deltas([per[a][scale] for a in paired], [ref[a][scale] for a in paired],
                                      n_boot=n_boot, seed=seed)  # fmt: skip
                    cell.update(delta=d.mean, ci_low=d.ci_low, ci_high=d.ci_high, n_paired=len(paired))
                out.setdefault(proto, {}).setdefault(m, {})[scale] = cell
    return out


def commit_fold(store: Any, name: str, path: str | Path, *, held: Sequence[str], fold: int, folds: int,
                run_id: str = "") -> dict[str, Any]:  # fmt: skip
    """Commit a fold checkpoint to ``store`` as ``models/<name>`` (as the train flow commits a
    model: :func:`stliif.checkpoint.checkpoint_dataset`), its held-out AOIs, fold index and count
    in the attributes (``cv_held_out`` JSON list, ``cv_fold``, ``cv_folds``). Idempotent: the
    same checkpoint and folds commit nothing new."""
    from stliif.checkpoint import checkpoint_dataset

    ds = checkpoint_dataset(path)
    data = json.loads(ds.attrs["data"])
    check_out_of_fold(data.get("train_aois") or [], held)
    ds.attrs.update({"cv_held_out": json.dumps(sorted(held)), "cv_fold": int(fold), "cv_folds": int(folds)})
    target = f"models/{name}"
    res = store.commit(
        {target: ds}, stage="train",
        params={"model": ds.attrs["model"], "train_spec": ds.attrs["train_spec"], "step": ds.attrs["step"],
                "best": ds.attrs["best"], "cv_held_out": sorted(held), "cv_fold": int(fold), "cv_folds": int(folds),
                "calibration": json.dumps(_extra(path).get("calibration"))},
        inputs=data.get("versions") or {"data": str(data.get("fingerprint", ""))},
        run_id=run_id,
    )  # fmt: skip
    return {"path": target, "snapshot_id": res.snapshot_id, "created": res.created}


def _extra(path: str | Path) -> dict[str, Any]:
    from stliif.checkpoint import load_checkpoint

    return load_checkpoint(path).extra
