"""Training loop for (temporal) LIIF, and the adapter that evaluates a model on protocol P.

:func:`train` is a plain, seeded loop (no framework): Adam, L1 loss on real-HR queries
(:class:`stliif.data.CropDataset`), cosine learning-rate decay, a tqdm progress bar with loss and
throughput, an atomic checkpoint every ``ckpt_every`` steps (``last.pt``), validation PSNR on the
*validation* AOIs only (protocol P at x2/x4/x6 through :func:`stliif.evaluation.paper.evaluate_paper`,
no SSIM), the best-on-validation checkpoint (``best.pt``), and curves (CSV, JSON, PNG).

Resuming: calling :func:`train` again on the same folder continues from ``last.pt`` at its step,
with the optimizer state and the same batches (items are functions of ``(seed, index)``), so an
interrupted run reproduces the loss sequence of an uninterrupted one. The training spec must be
the same (``steps`` may grow; ``until``/``time_limit_s`` are arguments, not part of the spec).

CPU by default; CUDA when ``device="auto"`` finds it (same code: the device comes from the data).
The test AOIs are never touched: :class:`TrainSpec` refuses any of them in train or validation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

import stliif
from stliif.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, update_extra
from stliif.config import default_data_root
from stliif.data import TIME_SCALE_DAYS, CropDataset, Scene, Strategy
from stliif.errors import CheckpointError, InvalidInputError, ModelError
from stliif.models.baselines import ColourMap, median_bicubic
from stliif.models.calibration import Calibration, VMeanMode, fit_offset
from stliif.models.inference import ModelPredictor
from stliif.models.interface import check_model
from stliif.models.registry import make_model, model_spec

__all__ = [
    "CPU_MODEL",
    "GPU_MODEL",
    "TrainResult",
    "TrainSpec",
    "load_run",
    "train",
    "validate",
    "write_curves",
]

log = logging.getLogger(__name__)

CPU_MODEL: dict[str, Any] = {
    "name": "temporal-liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 32, "n_resblocks": 4}},
        "hidden": [64, 64, 64],
        "fusion_blocks": 1,
        "residual": "bilinear",
        "colour_map": True,
        "learn_shift": True,
    },
}
"""The CPU configuration (about 0.13 M parameters; see ``docs/models.md`` for timings)."""

GPU_MODEL: dict[str, Any] = {
    "name": "temporal-liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 64, "n_resblocks": 16}},
        "hidden": [256, 256, 256, 256],
        "fusion_blocks": 2,
        "residual": "bilinear",
        "colour_map": True,
        "learn_shift": True,
    },
}
"""A larger configuration (LIIF-sized encoder and decoder) for a lent GPU."""


class TrainSpec(BaseModel):
    """Everything that defines a training run (stored in its checkpoints)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: dict[str, Any] = Field(
        default_factory=lambda: json.loads(json.dumps(CPU_MODEL)),
        description="{name, args} model spec (registry key and constructor arguments).",
    )
    data: str = Field(
        default_factory=lambda: str(default_data_root()),
        description="WorldStrat subset root (with reference/ for protocol P).",
    )
    split_seed: int = Field(0, description="Seed of paper_split (validation AOIs).")
    n_val: int = Field(
        3, ge=0,
        description="Validation AOIs carved from the 21 training AOIs (0: none; the schedule was "
        "chosen beforehand, e.g. by cross-validation, and best.pt is the last step).",
    )
    train_aois: list[str] | None = Field(
        None, description="Training AOIs (default: the paper split's train part)."
    )
    val_aois: list[str] | None = Field(
        None, description="Validation AOIs (default: the paper split's val part)."
    )
    steps: int = Field(2000, ge=1, description="Total optimisation steps (sets the LR schedule).")
    batch_size: int = Field(8, ge=1, description="Crops per step.")
    crop: int = Field(32, ge=4, description="LR crop side (px).")
    queries: int = Field(2304, ge=1, description="HR query points per crop.")
    scale_min: float = Field(2.0, gt=0, description="Smallest scale (output side / LR side).")
    scale_max: float = Field(7.0, gt=0, description="Largest scale (capped at the native HR).")
    strategy: Strategy = Field("complete", description="Temporal strategy of the crops.")
    augment: bool = Field(True, description="Random flips/transposes.")
    init_colour: bool = Field(
        False, description="Start the model's colour map at the 3x4 affine map fitted on the training AOIs."
    )
    freeze_colour: bool = Field(
        False, description="Keep the colour map at that fit (not learned; needs init_colour)."
    )
    fit_offset: bool = Field(
        False, description="Register the targets to the inputs with the grid offset fitted on the "
        "training AOIs (calibration.fit_offset); the checkpoint's calibration then queries at it.",
    )
    lr: float = Field(1e-3, gt=0, description="Adam learning rate at the start.")
    lr_final: float = Field(1e-5, ge=0, description="Learning rate at the end (cosine decay).")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    grad_clip: float | None = Field(1.0, description="Gradient-norm clip (None: off).")
    seed: int = Field(0, description="Seed of the model init and the batch sequence.")
    time_scale: float = Field(TIME_SCALE_DAYS, gt=0, description="Days per model time unit.")
    ckpt_every: int = Field(100, ge=1, description="Save last.pt every N steps.")
    val_every: int = Field(500, ge=0, description="Validate every N steps (0: only at the end).")
    val_scales: dict[str, int] = Field(
        default_factory=lambda: {"x2": 314, "x4": 628, "x6": 1054},
        description="Protocol P scales for validation: name -> output side (px).",
    )
    eval_frame: Literal["middle", "median"] = Field(
        "middle", description="Single-image models: which input they get at evaluation."
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: unchanged).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA if present.")
    workers: int = Field(0, ge=0, description="DataLoader worker processes (spawned).")
    chunk: int | None = Field(None, ge=1, description="Queries decoded at once at validation (None: per device).")

    @field_validator("train_aois", "val_aois")
    @classmethod
    def _no_test(cls, v: list[str] | None) -> list[str] | None:
        from stliif.evaluation.paper import PAPER_TEST_AOIS

        if v is not None:
            bad = sorted(set(v) & set(PAPER_TEST_AOIS))
            if bad:
                raise InvalidInputError(f"test AOIs must not be used for training or selection: {bad}")
            if not v:
                raise InvalidInputError("AOI lists must not be empty")
        return v

    @field_validator("freeze_colour")
    @classmethod
    def _frozen_needs_init(cls, v: bool, info: Any) -> bool:
        if v and not info.data.get("init_colour"):
            raise InvalidInputError("freeze_colour keeps the fitted colour map: set init_colour too")
        return v


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        out_dir: Run folder (``last.pt``, ``best.pt``, curves).
        step: Steps done.
        finished: Whether ``step == spec.steps``.
        history: One dict per step: ``step``, ``loss``, ``lr``, ``samples_per_s``, ``seconds``.
        validation: One dict per validation: ``step``, ``psnr_<scale>``..., ``psnr_mean``.
        baseline: Median + bicubic PSNR per scale on the same validation AOIs.
        best: The best validation record (highest ``psnr_mean``), ``{"step": steps}`` for a
            finished run without validation AOIs, or ``None``.
    """

    out_dir: Path
    step: int
    finished: bool
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    baseline: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] | None = None


# ----------------------------------------------------------------------------------- predictor


def calibrate(
    path: str | Path,
    *,
    weight: float,
    v_mean: VMeanMode,
    offset: bool = False,
    data: str | Path | None = None,
) -> Calibration:
    """Store an output calibration in the checkpoint at ``path`` (atomically) and return it.

    The blend's colour map (and with ``offset``, the grid offset of
    :func:`~stliif.models.calibration.fit_offset`) is fitted on the checkpoint's own training AOIs
    (``data["train_aois"]``; test AOIs are refused). ``weight``, ``v_mean`` and whether to fit an
    offset come from cross-validation on training AOIs (``bench/cv.py``), never from test scores.
    """
    from stliif.evaluation.paper import PAPER_TEST_AOIS, load_paper_samples

    Calibration.check(weight, v_mean)
    ck = load_checkpoint(path)
    aois = list(ck.data.get("train_aois") or [])
    if not aois:
        raise CheckpointError(f"{path}: no training AOIs recorded to fit the colour map on")
    bad = sorted(set(aois) & set(PAPER_TEST_AOIS))
    if bad:
        raise InvalidInputError(f"test AOIs must not be used for calibration: {bad}")
    root = Path(data) if data is not None else Path(ck.data.get("root") or default_data_root())
    trained = _trained_offset(ck.extra)  # trained on targets registered with it: always query there
    fit = offset and trained is None
    samples = load_paper_samples(root, aois).values() if weight < 1.0 or fit else []
    pairs = [(s.frames, s.target) for s in samples]
    cmap = ColourMap.fit(pairs) if weight < 1.0 else None
    shift = trained or (fit_offset(pairs, cmap or ColourMap.fit(pairs)) if fit else (0.0, 0.0))
    cal = Calibration(weight=weight, v_mean=v_mean, colour_map=cmap, offset=shift)
    update_extra(path, calibration=cal.to_dict())
    return cal


def _trained_offset(extra: Mapping[str, Any]) -> tuple[float, float] | None:
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


def _resolve_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InvalidInputError("device='cuda' but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


def _split(spec: TrainSpec) -> tuple[list[str], list[str]]:
    from stliif.evaluation.paper import paper_aois
    from stliif.preprocess.split import paper_split

    train_aois, val_aois = spec.train_aois, spec.val_aois
    if train_aois is None or val_aois is None:
        manifest = paper_split(paper_aois(spec.data), n_val=spec.n_val, seed=spec.split_seed)
        train_aois = train_aois or list(manifest.train)
        val_aois = val_aois or list(manifest.val)
    overlap = sorted(set(train_aois) & set(val_aois))
    if overlap:
        raise InvalidInputError(f"train and validation AOIs overlap: {overlap}")
    return list(train_aois), list(val_aois)


def _fingerprint(root: Path, aois: Sequence[str]) -> str:
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


def _code_revision() -> dict[str, Any]:
    """Best-effort git commit of the stliif checkout (read-only git calls)."""
    repo = Path(stliif.__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _lr_at(spec: TrainSpec, step: int) -> float:
    if spec.warmup_steps and step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    span = max(spec.steps - spec.warmup_steps, 1)
    p = min(max(step - spec.warmup_steps, 0) / span, 1.0)
    return spec.lr_final + 0.5 * (spec.lr - spec.lr_final) * (1.0 + math.cos(math.pi * p))


def _forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Model output ``(B, Q, C)`` for a training batch (temporal or single-image model)."""
    if check_model(model).temporal:
        return model(batch["frames"], batch["times"], batch["t_query"], batch["coord"],
                     batch["cell"], mask=batch["mask"], chunk=None)  # fmt: skip
    return model(batch["frames"][:, 0], batch["coord"], batch["cell"], chunk=None)


def _same_run(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Fields that differ between two training specs, ignoring those a resume may change.

    A field missing from one side counts as its default (a spec stored before the field existed).
    """
    free = {"steps", "ckpt_every", "val_every", "threads", "workers", "chunk", "device"}
    dflt = {k: f.default for k, f in TrainSpec.model_fields.items() if f.default_factory is None}
    return sorted(k for k in set(a) | set(b)
                  if k not in free and a.get(k, dflt.get(k)) != b.get(k, dflt.get(k)))  # fmt: skip


def validate(
    model: nn.Module,
    samples: Mapping[str, Any],
    *,
    root: str | Path,
    scales: Mapping[str, int],
    time_scale: float = TIME_SCALE_DAYS,
    chunk: int | None = None,
    frame: Literal["middle", "median"] = "middle",
    offset: tuple[float, float] = (0.0, 0.0),
) -> dict[str, float]:
    """Protocol-P PSNR of ``model`` on the given (validation) samples: ``{"psnr_<scale>", "psnr_mean"}``
    (queried at the grid ``offset`` of its training targets)."""
    from stliif.evaluation.paper import evaluate_paper

    cal = Calibration(offset=offset) if any(offset) else None
    pred = ModelPredictor(model, time_scale=time_scale, chunk=chunk, frame=frame, calibration=cal)
    res = evaluate_paper(pred, root, aois=list(samples), scales=scales, ssim=False, samples=samples)
    out = {f"psnr_{s}": float(v["psnr"]) for s, v in res.means.items()}
    out["psnr_mean"] = float(np.mean([out[f"psnr_{s}"] for s in scales]))
    out["seconds"] = float(res.seconds)
    return out


def train(
    spec: TrainSpec | Mapping[str, Any],
    out_dir: str | Path,
    *,
    resume: bool = True,
    until: int | None = None,
    time_limit_s: float | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume training) a model as ``spec`` says; see the module docstring.

    Args:
        spec: A :class:`TrainSpec` or its dict form.
        out_dir: Run folder: ``last.pt``, ``best.pt``, ``curves.csv``, ``val.csv``,
            ``history.json``, ``curves.png``.
        resume: Continue from ``out_dir/last.pt`` when it exists (else start over).
        until: Stop after this many total steps (checkpointing there); rerun to continue.
        time_limit_s: Stop (with a checkpoint) once this much wall time has passed in this call.
        progress: Show a tqdm progress bar.

    Returns:
        A :class:`TrainResult`.
    """
    from stliif.evaluation.paper import load_paper_samples

    spec = spec if isinstance(spec, TrainSpec) else TrainSpec.model_validate(dict(spec))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = _resolve_device(spec.device)
    root = Path(spec.data)
    train_aois, val_aois = _split(spec)
    spec_json = spec.model_dump(mode="json")

    torch.manual_seed(spec.seed)
    model = make_model(spec.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    step, elapsed = 0, 0.0
    history: list[dict[str, float]] = []
    validation: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    offset: tuple[float, float] | None = None  # of a fit_offset run: fitted once, then resumed
    last = out / "last.pt"
    if resume and last.exists():
        ck = load_checkpoint(last, map_location=device)
        diff = _same_run(ck.train_spec or {}, spec_json)
        if diff:
            raise CheckpointError(f"{last} was trained with a different spec (fields {diff}); use another folder or resume=False")
        if ck.model != model_spec(model):
            raise CheckpointError(f"{last}: model spec differs from the training spec's")
        model.load_state_dict(ck.state_dict)
        if ck.optimizer is not None:
            opt.load_state_dict(ck.optimizer)
        step = ck.step
        history = [h for h in ck.extra.get("history", []) if h["step"] <= step]
        validation = [v for v in ck.extra.get("validation", []) if v["step"] <= step]
        best = ck.extra.get("best")
        elapsed = float(ck.extra.get("elapsed_s", 0.0))
        offset = _trained_offset(ck.extra)
        log.info("resuming %s at step %d", out, step)

    t0 = time.perf_counter()
    samples = load_paper_samples(root, train_aois, with_dates=True)
    if spec.init_colour and step == 0:
        init_colour_map(model, samples.values())
    if spec.freeze_colour:
        model.base.colour.requires_grad_(False)  # type: ignore[union-attr]  # checked by init_colour_map
    if spec.fit_offset and offset is None:
        pairs = [(s.frames, s.target) for s in samples.values()]
        offset = fit_offset(pairs, ColourMap.fit(pairs))
        log.info("target grid offset fitted on the training AOIs: %s input px", offset)
    offset = offset or (0.0, 0.0)
    scenes = [Scene.from_sample(s, time_scale=spec.time_scale) for s in samples.values()]
    val_samples = load_paper_samples(root, val_aois, with_dates=True) if val_aois else {}
    data_info = {
        "root": str(root),
        "protocol": "P",
        "train_aois": train_aois,
        "val_aois": val_aois,
        "fingerprint": _fingerprint(root, [*train_aois, *val_aois]),
    }
    from stliif.evaluation.paper import evaluate_paper

    baseline: dict[str, float] = {}
    if val_aois:
        base = evaluate_paper(median_bicubic, root, aois=val_aois, scales=spec.val_scales,
                              ssim=False, samples=val_samples)  # fmt: skip
        baseline = {f"psnr_{s}": float(v["psnr"]) for s, v in base.means.items()}
        baseline["psnr_mean"] = float(np.mean(list(baseline.values())))

    dataset = CropDataset(
        scenes, crop=spec.crop, queries=spec.queries, scale_range=(spec.scale_min, spec.scale_max),
        strategy=spec.strategy, augment=spec.augment, length=spec.steps * spec.batch_size,
        seed=spec.seed, time_scale=spec.time_scale, target_offset=offset,
    )  # fmt: skip
    stop = spec.steps if until is None else min(spec.steps, int(until))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=spec.batch_size,
        sampler=range(step * spec.batch_size, stop * spec.batch_size),
        num_workers=spec.workers,
        multiprocessing_context="spawn" if spec.workers else None,
        persistent_workers=False,
    )
    extra_static: dict[str, Any] = {"code": _code_revision(), "baseline": baseline}
    if spec.fit_offset:
        extra_static |= {"target_offset": list(offset), "calibration": Calibration(offset=offset).to_dict()}

    def save(path: Path) -> None:
        save_checkpoint(
            path, model, train_spec=spec_json, data=data_info, optimizer=opt, step=step,
            extra={**extra_static, "history": history, "validation": validation, "best": best,
                   "elapsed_s": elapsed + time.perf_counter() - t0},
        )  # fmt: skip

    def run_validation() -> None:
        nonlocal best
        if not val_aois:  # no validation set: the final step is the model
            if step == spec.steps:
                best = {"step": step}
                save(out / "best.pt")
            return
        rec = {"step": step, **validate(model, val_samples, root=root, scales=spec.val_scales,
                                         time_scale=spec.time_scale, chunk=spec.chunk,
                                         frame=spec.eval_frame, offset=offset)}  # fmt: skip
        validation.append(rec)
        if best is None or rec["psnr_mean"] > best["psnr_mean"]:
            best = rec
            save(out / "best.pt")
        log.info("step %d validation %s", step, rec)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=stop, initial=step, desc="train", unit="step", dynamic_ncols=True)
    model.train()
    tick = time.perf_counter()
    stopped_early = False
    for batch in loader:
        lr = _lr_at(spec, step)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        pred = _forward(model, batch)
        loss = torch.nn.functional.l1_loss(pred, batch["gt"])
        if not torch.isfinite(loss):
            raise ModelError(f"non-finite loss at step {step}: lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if spec.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        step += 1
        now = time.perf_counter()
        rate = spec.batch_size / max(now - tick, 1e-9)
        tick = now
        history.append({"step": step, "loss": float(loss.item()), "lr": lr, "samples_per_s": rate,
                        "seconds": elapsed + now - t0})  # fmt: skip
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", crops_s=f"{rate:.1f}")
        if (spec.val_every and step % spec.val_every == 0) or step == spec.steps:
            run_validation()
        if step % spec.ckpt_every == 0 or step == stop:
            save(last)
        if time_limit_s is not None and now - t0 > time_limit_s and step < stop:
            if val_aois and (not validation or validation[-1]["step"] != step):
                run_validation()  # an interrupted run still reports where it stands
            save(last)
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    if stopped_early or step < spec.steps:
        log.info("stopped at step %d of %d; rerun to continue", step, spec.steps)
    result = TrainResult(out_dir=out, step=step, finished=step >= spec.steps, history=history,
                         validation=validation, baseline=baseline, best=best)  # fmt: skip
    write_curves(result)
    return result


def write_curves(result: TrainResult) -> None:
    """Write ``curves.csv``, ``val.csv``, ``history.json`` and ``curves.png`` into the run folder."""
    out = result.out_dir
    if result.history:
        with (out / "curves.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(result.history[0]))
            w.writeheader()
            w.writerows(result.history)
    if result.validation:
        keys = list(dict.fromkeys(k for r in result.validation for k in r))
        with (out / "val.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(result.validation)
    doc = {"step": result.step, "finished": result.finished, "baseline_median_bicubic": result.baseline,
           "best": result.best, "validation": result.validation, "history": result.history}  # fmt: skip
    tmp = out / ".history.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(out / "history.json")
    if not result.history:
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)  # Agg canvas: no pyplot, no global backend state
    axes = fig.subplots(1, 2)
    steps = np.array([h["step"] for h in result.history])
    loss = np.array([h["loss"] for h in result.history])
    axes[0].plot(steps, loss, lw=0.5, alpha=0.4, label="L1 per step")
    k = max(1, len(loss) // 50)
    if len(loss) >= k:
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        axes[0].plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
    axes[0].set(xlabel="step", ylabel="L1 (0..1 units)", title="training loss")
    axes[0].legend()
    colours = [f"C{i}" for i in range(10)]
    for i, key in enumerate(k for k in result.baseline if k != "psnr_mean"):
        c = colours[i % len(colours)]
        if result.validation:
            axes[1].plot([v["step"] for v in result.validation], [v[key] for v in result.validation],
                         "o-", color=c, label=f"model {key[5:]}")  # fmt: skip
        axes[1].axhline(result.baseline[key], color=c, ls="--", lw=1, label=f"median+bicubic {key[5:]}")
    if result.baseline:
        axes[1].set(xlabel="step", ylabel="PSNR (dB)", title="validation (protocol P, val AOIs)")
        axes[1].legend(fontsize=7)
    else:
        axes[1].set_axis_off()
        axes[1].text(0.5, 0.5, "no validation AOIs\n(schedule chosen beforehand)", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)


def load_run(out_dir: str | Path, *, which: Literal["best", "last"] = "best") -> Checkpoint:
    """The ``best.pt`` or ``last.pt`` checkpoint of a run folder."""
    return load_checkpoint(Path(out_dir) / f"{which}.pt")
