"""Training loop for (temporal) LIIF, and the adapter that evaluates a model on protocol P.

:func:`train` is a plain, seeded loop (no framework): Adam, L1 loss on real-HR queries
(:class:`stliif.train.data.CropDataset`), cosine learning-rate decay, a tqdm progress bar with loss and
throughput, an atomic checkpoint every ``ckpt_every`` steps (``last.pt``), validation PSNR on the
*validation* AOIs only (protocol P at x2/x4/x6 through :func:`stliif.evaluation.paper.evaluate_paper`,
or protocol C for a run fed from the store; no SSIM), the best-on-validation checkpoint
(``best.pt``), and curves (CSV, JSON, PNG). With ``pretrain_steps``, the run first takes that
many self-supervised steps on its training AOIs' revisits alone (:mod:`stliif.train.pretext`),
then its ``steps`` supervised ones, validated in the supervised phase only. The scenes come from
the WorldStrat reference files or from the artifact store (:mod:`stliif.train.inputs`); the
checkpoint's ``data`` records which, and for the store every artifact's version.

Resuming: calling :func:`train` again on the same folder continues from ``last.pt`` at its step,
with the optimizer state and the same batches (items are functions of ``(seed, index)``), so an
interrupted run reproduces the loss sequence of an uninterrupted one. The training spec must be
the same (``steps`` may grow; ``until``/``time_limit_s`` are arguments, not part of the spec), and
so must the versions of the store artifacts a store-fed run read.

CPU by default; CUDA when ``device="auto"`` finds it (same code: the device comes from the data).
The test AOIs are never touched: :class:`TrainSpec` refuses any of them in train or validation.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

import stliif
from stliif.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from stliif.errors import CheckpointError, InvalidInputError, ModelError
from stliif.models.baselines import ColourMap, Predictor, median_bicubic
from stliif.models.calibration import Calibration, fit_offset
from stliif.models.coords import TIME_SCALE_DAYS
from stliif.models.inference import ModelPredictor
from stliif.models.interface import check_model
from stliif.models.predictor import uint8_adapter
from stliif.models.registry import make_model, model_spec
from stliif.store import ArtifactStore
from stliif.train.calibrate import init_colour_map, trained_offset
from stliif.train.data import CropDataset, Scene
from stliif.train.inputs import load_inputs
from stliif.train.pretext import pretext_scenes
from stliif.train.spec import TrainSpec

__all__ = ["TrainResult", "load_run", "train", "training_loss", "validate", "write_curves"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        out_dir: Run folder (``last.pt``, ``best.pt``, curves).
        step: Steps done.
        finished: Whether every step is done (``spec.pretrain_steps + spec.steps``).
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


def _resolve_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InvalidInputError("device='cuda' but CUDA is not available")
        return torch.device("cuda")
    return torch.device("cpu")


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
    """The learning rate of (0-based) ``step``: the pretext phase's cosine from ``lr`` over its
    ``pretrain_steps``, then the supervised phase's warm-up and cosine over ``steps``."""
    if step < spec.pretrain_steps:
        return _cosine(spec, step / spec.pretrain_steps)
    step -= spec.pretrain_steps
    if spec.warmup_steps and step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    span = max(spec.steps - spec.warmup_steps, 1)
    return _cosine(spec, min(max(step - spec.warmup_steps, 0) / span, 1.0))


def _cosine(spec: TrainSpec, p: float) -> float:
    return spec.lr_final + 0.5 * (spec.lr - spec.lr_final) * (1.0 + math.cos(math.pi * p))


def _forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Model output ``(B, Q, C)`` for a training batch (temporal or single-image model)."""
    if check_model(model).temporal:
        return model(batch["frames"], batch["times"], batch["t_query"], batch["coord"],
                     batch["cell"], mask=batch["mask"], chunk=None)  # fmt: skip
    return model(batch["frames"][:, 0], batch["coord"], batch["cell"], chunk=None)


SHIFT_PX = 2
"""Target pixels each way that ``loss="l1-shift"`` searches (a 5 x 5 set of shifts)."""


def training_loss(pred: torch.Tensor, gt: torch.Tensor, kind: str = "l1", gt_shift: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error between ``(B, Q, C)`` predictions and targets; ``"l1-debiased"`` first
    removes each crop's per-band mean error (``(B, 1, C)``), so a constant colour offset costs
    nothing and only the structure is learned; ``"l1-shift"`` takes, for each crop, the smallest
    L1 over the target shifted by up to :data:`SHIFT_PX` of its pixels each way (``gt_shift``
    ``(B, Q, S, C)``, :class:`~stliif.train.data.CropDataset` ``shift``), so a crop's
    misregistration costs nothing and blurring to hedge it is not rewarded."""
    if kind == "l1":
        return torch.nn.functional.l1_loss(pred, gt)
    if kind == "l1-shift":
        if gt_shift is None:
            raise InvalidInputError("loss 'l1-shift' needs the shifted targets (gt_shift)")
        return (pred[:, :, None, :] - gt_shift).abs().mean(dim=(1, 3)).min(dim=1).values.mean()
    if kind != "l1-debiased":
        raise InvalidInputError(f"unknown loss {kind!r}: use 'l1', 'l1-debiased' or 'l1-shift'")
    err = pred - gt
    return (err - err.mean(dim=1, keepdim=True)).abs().mean()


def _same_run(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Fields that differ between two training specs, ignoring those a resume may change.

    A field missing from one side counts as its default (a spec stored before the field existed).
    """
    free = {"steps", "ckpt_every", "val_every", "threads", "workers", "chunk", "device"}
    dflt = {k: f.default for k, f in TrainSpec.model_fields.items() if f.default_factory is None}
    return sorted(k for k in set(a) | set(b)
                  if k not in free and a.get(k, dflt.get(k)) != b.get(k, dflt.get(k)))  # fmt: skip


def _psnr(
    predictor: Predictor,
    samples: Mapping[str, Any],
    *,
    scales: Mapping[str, int],
    protocol: Literal["paper", "clean"],
    root: str | Path | None,
) -> tuple[dict[str, float], float]:
    """``{"psnr_<scale>"...}`` of ``predictor`` on ``samples`` under ``protocol`` (no SSIM), and
    the seconds it took. A uint8 predictor is scored on C through its uint8 view."""
    if protocol == "paper":
        from stliif.evaluation.paper import evaluate_paper

        res = evaluate_paper(predictor, root or "", aois=list(samples), scales=scales, ssim=False,
                             samples=samples)  # fmt: skip
    else:
        from stliif.evaluation.clean import evaluate_clean

        (res,) = evaluate_clean({"model": predictor}, samples, scales=scales, ssim=False, cpsnr=False).values()
    return {f"psnr_{s}": float(v["psnr"]) for s, v in res.means.items()}, float(res.seconds)


def validate(
    model: nn.Module,
    samples: Mapping[str, Any],
    *,
    root: str | Path | None = None,
    scales: Mapping[str, int],
    time_scale: float = TIME_SCALE_DAYS,
    chunk: int | None = None,
    frame: Literal["middle", "median"] = "middle",
    offset: tuple[float, float] = (0.0, 0.0),
    protocol: Literal["paper", "clean"] = "paper",
) -> dict[str, float]:
    """PSNR of ``model`` on the given (validation) samples: ``{"psnr_<scale>", "psnr_mean"}``
    (queried at the grid ``offset`` of its training targets), on protocol P (``root``: the
    WorldStrat folder) or C (``samples``: :class:`~stliif.evaluation.clean.CleanSample`)."""
    cal = Calibration(offset=offset) if any(offset) else None
    pred = ModelPredictor(model, time_scale=time_scale, chunk=chunk, frame=frame, calibration=cal)
    out, seconds = _psnr(pred if protocol == "paper" else uint8_adapter(pred), samples, scales=scales,
                         protocol=protocol, root=root)  # fmt: skip
    out["psnr_mean"] = float(np.mean([out[f"psnr_{s}"] for s in scales]))
    out["seconds"] = seconds
    return out


def train(
    spec: TrainSpec | Mapping[str, Any],
    out_dir: str | Path,
    *,
    store: ArtifactStore | None = None,
    resume: bool = True,
    until: int | None = None,
    time_limit_s: float | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume training) a model as ``spec`` says; see the module docstring.

    Args:
        spec: A :class:`TrainSpec` or its dict form.
        store: The store a ``source="store"`` spec reads its scenes from
            (:mod:`stliif.train.inputs`); unused for ``"files"``.
        out_dir: Run folder: ``last.pt``, ``best.pt``, ``curves.csv``, ``val.csv``,
            ``history.json``, ``curves.png``.
        resume: Continue from ``out_dir/last.pt`` when it exists (else start over).
        until: Stop after this many total steps (checkpointing there); rerun to continue.
        time_limit_s: Stop (with a checkpoint) once this much wall time has passed in this call.
        progress: Show a tqdm progress bar.

    Returns:
        A :class:`TrainResult`.
    """
    spec = spec if isinstance(spec, TrainSpec) else TrainSpec.model_validate(dict(spec))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = _resolve_device(spec.device)
    root = Path(spec.data)
    inputs = load_inputs(spec, store)
    val_aois = list(inputs.val)
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
        if ck.data.get("versions", {}) != inputs.info.get("versions", {}):
            raise CheckpointError(f"{last} was trained on other versions of the store's artifacts; "
                                  "use another folder or resume=False")  # fmt: skip
        model.load_state_dict(ck.state_dict)
        if ck.optimizer is not None:
            opt.load_state_dict(ck.optimizer)
        step = ck.step
        history = [h for h in ck.extra.get("history", []) if h["step"] <= step]
        validation = [v for v in ck.extra.get("validation", []) if v["step"] <= step]
        best = ck.extra.get("best")
        elapsed = float(ck.extra.get("elapsed_s", 0.0))
        offset = trained_offset(ck.extra)
        log.info("resuming %s at step %d", out, step)

    t0 = time.perf_counter()
    samples = inputs.train
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
    val_samples = inputs.val
    data_info = inputs.info
    baseline: dict[str, float] = {}
    if val_aois:
        baseline, _ = _psnr(median_bicubic, val_samples, scales=spec.val_scales,
                            protocol=inputs.protocol, root=root)  # fmt: skip
        baseline["psnr_mean"] = float(np.mean(list(baseline.values())))

    crops: dict[str, Any] = {
        "crop": spec.crop, "queries": spec.queries, "scale_range": (spec.scale_min, spec.scale_max),
        "strategy": spec.strategy, "augment": spec.augment, "seed": spec.seed,
        "shift": SHIFT_PX if spec.loss == "l1-shift" else 0,
    }  # fmt: skip
    dataset: torch.utils.data.Dataset[dict[str, torch.Tensor]] = CropDataset(
        scenes, length=spec.steps * spec.batch_size, target_offset=offset, **crops
    )
    pre = spec.pretrain_steps
    if pre:  # the pretext items first; the supervised ones are those of a run without them
        pretext = CropDataset(pretext_scenes(scenes), length=pre * spec.batch_size, **crops)
        dataset = torch.utils.data.ConcatDataset([pretext, dataset])
    total = pre + spec.steps
    stop = total if until is None else min(total, int(until))
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
            if step == total:
                best = {"step": step}
                save(out / "best.pt")
            return
        rec = {"step": step, **validate(model, val_samples, root=root, scales=spec.val_scales,
                                         time_scale=spec.time_scale, chunk=spec.chunk,
                                         frame=spec.eval_frame, offset=offset,
                                         protocol=inputs.protocol)}  # fmt: skip
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
        loss = training_loss(pred, batch["gt"], spec.loss, batch.get("gt_shift"))
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
        if (spec.val_every and step > pre and (step - pre) % spec.val_every == 0) or step == total:
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
    if stopped_early or step < total:
        log.info("stopped at step %d of %d; rerun to continue", step, total)
    result = TrainResult(out_dir=out, step=step, finished=step >= total, history=history,
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
