"""Running an evaluation: plan, model against every baseline, saved predictions, commits.

:func:`evaluate_protocol` runs a model and the four baselines (:data:`BASELINE_NAMES`) on
protocol P or C and computes paired per-AOI deltas; :func:`run_evaluation` commits the result to
the store under ``metrics/<model>/<protocol>``, as a no-op when its inputs are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from stliif.errors import DataAccessError, InvalidInputError, NoDataError
from stliif.evaluation.clean import (
    clean_paths,
    evaluate_clean,
    fit_colour_map_clean,
    load_clean_sample,
    require_hr,
)
from stliif.evaluation.paper import (
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    evaluate_paper,
    fit_colour_map_paper,
    load_paper_samples,
    paper_train_aois,
)
from stliif.evaluation.results import (
    DELTA_METRICS,
    Evaluation,
    OnPrediction,
    PairedDelta,
    PredictionEvent,
    check_scales,
    paired_deltas,
)
from stliif.models.baselines import Predictor, to_uint8
from stliif.models.predictor import BASELINE_NAMES, check_protocol, get_predictor, model_name
from stliif.names import validate_aoi, validate_name
from stliif.store import ArtifactStore, run_key

__all__ = [
    "EvaluationRun",
    "evaluate_protocol",
    "evaluation_key",
    "evaluation_plan",
    "metrics_path",
    "run_evaluation",
    "save_prediction",
]

def _fingerprint(paths: Iterable[Path]) -> str:
    """Names, sizes and modification times of files (cheap content key), like the import stage."""
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = p.stat()
        except OSError as err:
            raise DataAccessError(f"{p}: file missing ({err})") from err
        h.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:24]


@dataclass(frozen=True)
class _Plan:
    protocol: str
    model: str
    aois: list[str]
    train: list[str]
    inputs: dict[str, str]
    notes: list[str]
    ref: str | None


def _paper_reference_files(root: Path, aois: Iterable[str]) -> list[Path]:
    ref = root / "reference"
    files = [ref / "study_temporal_selection.csv"]
    for a in aois:
        files += sorted((ref / "temporal_subset" / a).glob("*.png"))
        files.append(ref / "hr_adapted" / f"{a}_adapted_x6.png")
        files += sorted((root / "lr_dataset" / a / "L2A").glob("*.metadata"))
    return files


def evaluation_plan(
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    store: ArtifactStore | None = None,
    ref: str | None = None,
    aois: Sequence[str] | None = None,
) -> _Plan:
    """Which AOIs are evaluated and fitted on, and the versions of everything read.

    Cheap (no pixels are read): it decides whether a committed evaluation is up to date.
    """
    check_protocol(protocol)
    name = model_name(model)
    if aois is not None and (isinstance(aois, str) or not aois):
        raise InvalidInputError(f"aois must be a non-empty list of names, got {aois!r}")
    notes: list[str] = []
    inputs: dict[str, str] = {}
    if protocol == "paper":
        if data is None:
            raise InvalidInputError("protocol paper needs the WorldStrat data root (--data)")
        root = Path(data).expanduser()
        train = paper_train_aois(root)
        evaluated = [validate_name(a, what="AOI") for a in (aois or PAPER_TEST_AOIS)]
        inputs["reference"] = _fingerprint(_paper_reference_files(root, [*evaluated, *train]))
        split_test = list(PAPER_TEST_AOIS)
    else:
        if store is None:
            raise InvalidInputError("protocol clean needs the artifact store (--store)")
        ref = ref or store.snapshot_id()
        version = store.version("splits/paper", ref=ref)
        if version is None:
            raise NoDataError(
                "the store has no splits/paper manifest: run `stliif etl` over all AOIs "
                "(the paper split needs the study's 10 test AOIs)"
            )
        manifest = store.read_json("splits/paper", ref=ref)
        inputs["splits/paper"] = version
        train = list(manifest["train"])
        split_test = list(manifest["test"])
        evaluated = [validate_aoi(a) for a in (aois or split_test)]
        for a in [*evaluated, *train]:
            require_hr(store, a, ref)
            for p in clean_paths(a):
                v = store.version(p, ref=ref)
                if v is None:
                    raise NoDataError(
                        f"artifact {p!r} is missing from the store: run `stliif etl --aoi {a}` first"
                    )
                inputs[p] = v
    if len(set(evaluated)) != len(evaluated):
        raise InvalidInputError(f"duplicate AOIs in {evaluated}")
    leaked = [a for a in evaluated if a in train]
    if leaked:
        notes.append(
            f"AOIs {leaked} are training AOIs of the split: the median-colour baseline was "
            "fitted on them"
        )
    other = [a for a in evaluated if a not in split_test and a not in train]
    if other:
        notes.append(f"AOIs {other} are not test AOIs of the split")
    path = Path(str(model)).expanduser()
    if path.is_dir():
        path = path / "best.pt"  # a run folder: its best checkpoint
    if name not in BASELINE_NAMES and path.is_file():
        inputs["checkpoint"] = _file_digest(path)
    return _Plan(protocol, name, evaluated, train, inputs, notes, ref)


def evaluate_protocol(
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    store: ArtifactStore | None = None,
    ref: str | None = None,
    aois: Sequence[str] | None = None,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
    on_prediction: OnPrediction | None = None,
    n_boot: int = 10000,
    product: bool = True,
) -> Evaluation:
    """Evaluate a model and the four baselines on protocol P or C, with paired deltas.

    Args:
        protocol: ``"paper"`` (needs ``data``) or ``"clean"`` (needs ``store``).
        model: Baseline name or checkpoint path (see :func:`get_predictor`).
        data: WorldStrat root with ``reference/`` (P).
        store: Artifact store with the ETL's clean artifacts and ``splits/paper`` (C).
        ref: Branch, tag or snapshot to read (C; default: the branch head, pinned at the start).
        aois: AOIs to evaluate (default: the split's test AOIs).
        scales: ``{name: side}`` (default x2/x4/x6 = 314/628/1054).
        ssim: Compute SSIM (the slow part).
        on_prediction: Called with a :class:`PredictionEvent` for every prediction of every
            method before it is scored (to save predictions or keep crops).
        n_boot: Bootstrap resamples of the paired deltas.
        product: Also score a model (not a baseline) in product mode (``<model>-product``,
            :func:`stliif.constraint.product_predictor`), compared like a baseline (so the deltas
            ``model - <model>-product`` say what the constraint costs).

    Returns:
        An :class:`Evaluation`; every record carries the consistency and hallucination scores
        of :mod:`stliif.evaluation.consistency`.
    """
    start = time.perf_counter()
    check_scales(scales)
    plan = evaluation_plan(protocol, model, data=data, store=store, ref=ref, aois=aois)
    name = plan.model
    if name not in BASELINE_NAMES:
        get_predictor(model, protocol=protocol)  # fails early when it cannot be loaded
    if protocol == "paper":
        assert data is not None
        root = Path(data).expanduser()
        cmap = fit_colour_map_paper(root, plan.train)
        samples = load_paper_samples(root, plan.aois, with_dates=True)
        predictors: dict[str, Predictor] = {
            b: get_predictor(b, protocol="paper", colour_map=cmap) for b in BASELINE_NAMES
        }
        if name not in predictors:
            predictors[name] = get_predictor(model, protocol="paper")
        if product and name not in BASELINE_NAMES:  # the render's default mode, scored beside the model's own output
            from stliif.constraint import product_predictor

            predictors[f"{name}-product"] = product_predictor(predictors[name], f"{name}-product")
        results = {}
        for key, pred in predictors.items():
            hook = None
            if on_prediction is not None:
                hook = _paper_hook(on_prediction, key, samples)
            results[key] = evaluate_paper(
                pred, root, aois=plan.aois, scales=scales, ssim=ssim, samples=samples,
                name=key, on_prediction=hook,
            )  # fmt: skip
    else:
        assert store is not None
        train = [load_clean_sample(store, a, ref=plan.ref) for a in plan.train]
        cmap = fit_colour_map_clean(train)
        del train
        csamples = {a: load_clean_sample(store, a, ref=plan.ref) for a in plan.aois}
        predictors = {b: get_predictor(b, protocol="clean", colour_map=cmap) for b in BASELINE_NAMES}
        if name not in predictors:
            predictors[name] = get_predictor(model, protocol="clean")
        if product and name not in BASELINE_NAMES:
            from stliif.constraint import product_predictor

            predictors[f"{name}-product"] = product_predictor(predictors[name], f"{name}-product")
        results = evaluate_clean(
            predictors, csamples, scales=scales, ssim=ssim, on_prediction=on_prediction
        )
    result = results[name]
    baselines = {b: results[b] for b in BASELINE_NAMES}
    if f"{name}-product" in results:
        baselines[f"{name}-product"] = results[f"{name}-product"]
    deltas: dict[str, dict[str, dict[str, PairedDelta]]] = {}
    for b, base in baselines.items():
        if b == name:
            continue
        for s in result.scales:
            for m in DELTA_METRICS[protocol]:
                a_vals, b_vals = result.values(m, s), base.values(m, s)
                if all(math.isfinite(v) for v in [*a_vals.values(), *b_vals.values()]):
                    deltas.setdefault(b, {}).setdefault(s, {})[m] = paired_deltas(
                        a_vals, b_vals, n_boot=n_boot
                    )
    return Evaluation(
        protocol, name, result, baselines, deltas, train_aois=plan.train, notes=plan.notes,
        inputs=plan.inputs, seconds=time.perf_counter() - start,
    )  # fmt: skip


def _paper_hook(on_prediction: OnPrediction, name: str, samples: Mapping[str, Any]) -> Callable[[str, str, np.ndarray], None]:
    def hook(aoi: str, scale: str, pred: np.ndarray) -> None:
        s = samples[aoi]
        p = np.asarray(pred)
        size = p.shape[-2]
        on_prediction(
            PredictionEvent("paper", name, aoi, scale, to_uint8(p), s.target_at(int(size)), s.frames)
        )

    return hook


# ----------------------------------------------------------------------------- saved predictions


def save_prediction(event: PredictionEvent, out_dir: str | Path) -> list[Path]:
    """Write the exact scored image(s) of ``event``.

    P: PNG ``<AOI>_<scale>.png`` (uint8 RGB). C: GeoTIFF ``<AOI>_<scale>.tif``, 3 float32
    bands (R, G, B reflectance) on the HR footprint (CRS of the HR grid, transform =
    ``from_bounds(HR bounds, S, S)``), tags ``uint8_scale``, ``model``, ``protocol``. A stack
    (per-frame bicubic) gives one file per image, ``..._frame<k>`` (k = 1..K).

    Returns:
        The written paths.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    pred = np.asarray(event.prediction)
    images = pred[None] if pred.ndim == 3 else pred
    stems = (
        [f"{event.aoi}_{event.scale}"]
        if pred.ndim == 3
        else [f"{event.aoi}_{event.scale}_frame{k + 1}" for k in range(len(images))]
    )
    paths = []
    for stem, img in zip(stems, images, strict=True):
        if event.protocol == "paper":
            path = out / f"{stem}.png"
            Image.fromarray(to_uint8(img)).save(path)
        else:
            path = out / f"{stem}.tif"
            _write_geotiff(path, img.astype(np.float32), event)
        paths.append(path)
    return paths


def _write_geotiff(path: Path, img: np.ndarray, event: PredictionEvent) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    assert event.bounds is not None
    h, w = img.shape[:2]
    try:
        with rasterio.open(
            path, "w", driver="GTiff", height=h, width=w, count=img.shape[2], dtype="float32",
            crs=event.crs, transform=from_bounds(*event.bounds, w, h), compress="deflate",
        ) as dst:  # fmt: skip
            dst.write(np.moveaxis(img, -1, 0))
            dst.update_tags(
                protocol=event.protocol, model=event.model, aoi=event.aoi, scale=event.scale,
                uint8_scale=repr(float(event.uint8_scale or 0.0)), units="surface reflectance",
            )  # fmt: skip
            for i, band in enumerate(("red", "green", "blue"), start=1):
                dst.set_band_description(i, band)
    except rasterio.errors.RasterioError as err:
        raise DataAccessError(f"{path}: cannot write GeoTIFF ({err})") from err


# ---------------------------------------------------------------------------- committed results


def metrics_path(model: str | Path, protocol: str) -> str:
    """Store path of a committed evaluation: ``metrics/<model>/<protocol>``."""
    return f"metrics/{model_name(model)}/{check_protocol(protocol)}"


@dataclass(frozen=True)
class EvaluationRun:
    """A reference to what :func:`run_evaluation` did (small: passed between Prefect tasks)."""

    status: str  # "committed" or "unchanged"
    path: str
    run_key: str
    snapshot_id: str
    means: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


def evaluation_key(
    store: ArtifactStore,
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    aois: Sequence[str] | None = None,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
) -> tuple[str, dict[str, Any], dict[str, str], _Plan]:
    """Run key of an evaluation now: ``(key, params, inputs, plan)`` (no pixels read)."""
    plan = evaluation_plan(protocol, model, data=data, store=store, aois=aois)
    params = {
        "protocol": protocol, "model": plan.model, "aois": plan.aois,
        "scales": {k: int(v) for k, v in scales.items()}, "ssim": bool(ssim),
    }  # fmt: skip
    return run_key("evaluate", params, plan.inputs), params, plan.inputs, plan


def run_evaluation(
    store: ArtifactStore,
    protocol: str,
    model: str | Path,
    *,
    data: str | Path | None = None,
    aois: Sequence[str] | None = None,
    scales: Mapping[str, int] = PAPER_SCALES,
    ssim: bool = True,
    run_id: str | None = None,
    report: Callable[[Evaluation], str] | None = None,
) -> EvaluationRun:
    """Evaluate and commit ``{"evaluation": ..., "report": markdown}`` at ``metrics/<model>/<protocol>``.

    The run key covers the parameters, the versions of every input artifact (C) or the
    fingerprint of the reference files (P), and the code version: when the committed document
    already carries it, nothing is computed or committed (``status="unchanged"``).

    Args:
        store: The artifact store (inputs of C are read from it; results are committed to it).
        protocol: ``"paper"`` or ``"clean"``.
        model: Baseline name or checkpoint path.
        data: WorldStrat root (P).
        aois: AOIs to evaluate (default: the split's test AOIs).
        scales: ``{name: side}``.
        ssim: Compute SSIM.
        run_id: Recorded in the commit metadata (e.g. the Prefect flow run id).
        report: Builds the markdown report text (default: :func:`stliif.evaluation.report.markdown_report`).
    """
    key, params, inputs, plan = evaluation_key(
        store, protocol, model, data=data, aois=aois, scales=scales, ssim=ssim
    )
    path = f"metrics/{plan.model}/{protocol}"
    if store.version(path) == key:
        doc = store.read_json(path)
        return EvaluationRun("unchanged", path, key, store.snapshot_id(), doc["evaluation"]["means"])
    ev = evaluate_protocol(
        protocol, model, data=data, store=store if protocol == "clean" else None, ref=plan.ref,
        aois=plan.aois, scales=scales, ssim=ssim,
    )  # fmt: skip
    if report is None:
        from stliif.evaluation.report import markdown_report

        report = markdown_report
    doc = {"evaluation": ev.to_dict(), "report": report(ev)}
    doc = json.loads(json.dumps(doc, default=str))
    res = store.commit(
        {path: doc}, stage="evaluate", params=params, inputs=inputs, run_id=run_id,
        message=f"evaluate {plan.model} {protocol}",
    )  # fmt: skip
    return EvaluationRun(
        "committed" if res.created else "unchanged", path, res.run_key, res.snapshot_id,
        doc["evaluation"]["means"],
    )  # fmt: skip
