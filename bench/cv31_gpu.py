"""Cross-validation folds of several configurations trained and scored at once on a GPU (issues 18, 19).

Usage::

    python bench/cv31_gpu.py --data ROOT --out DIR [--config NAME=MODEL:STEPS[:LOSS[:PRETRAIN]] ...] [--folds 5]
        [--jobs 15] [--keep record] [--device cuda]

The folds are :func:`stliif.train.cv.kfold`'s over every AOI under ``ROOT`` (as ``bench/cv31.py``).
Each ``--config NAME=MODEL:STEPS[:LOSS[:PRETRAIN]]`` is the record's train spec (``models/record``) with its
model replaced by ``MODEL`` (``cpu``: :data:`~stliif.train.CPU_MODEL`, the record's; ``gpu``:
:data:`~stliif.train.GPU_MODEL`; ``cpu-fixed-fusion``: the record's with its fusion weights kept at
their priors), ``STEPS`` steps, the training loss ``LOSS`` (``l1``, the
record's, ``l1-debiased`` or ``l1-shift``) and ``PRETRAIN`` self-supervised steps before them
(``pretrain_steps``, default 0); default ``record=cpu:1200`` (the record's configuration itself). Every (configuration, fold) pair is one job, run ``--jobs`` at a time in
spawned processes sharing the device: train (:func:`~stliif.train.cv.train_fold`), calibrate with
the record's calibration rule (:func:`~stliif.train.cv.calibrate_fold`: its weight and V-mean
mode, colour map and grid offset refitted on the fold's training AOIs) and score protocol P out of
fold (:func:`~stliif.train.cv.score_fold` with no C samples: the store stays on the CPU machine,
where ``bench/cv31.py`` adds C, commits the fold models and reuses their ``best.pt``). Nothing is
chosen on the held-out AOIs.

Writes ``DIR/<config>/fold<k>/{best.pt, scores-p.json}`` (``best.pt`` only for ``--keep``
configurations, the others' checkpoints are deleted after scoring) and ``DIR/summary.json``
(per-AOI PSNR, means and paired deltas against median + colour map, 95 % bootstrap CI, per
configuration), and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODELS = ("cpu", "gpu", "cpu-fixed-fusion")
LOSSES = ("l1", "l1-debiased", "l1-shift")


def _config(text: str) -> tuple[str, str, int, str, int]:
    name, _, rest = text.partition("=")
    model, _, rest = rest.partition(":")
    steps, _, rest = rest.partition(":")
    loss, _, pre = rest.partition(":")
    if not name or model not in MODELS or not steps.isdigit() or loss not in ("", *LOSSES) or not (pre or "0").isdigit():
        raise argparse.ArgumentTypeError(f"--config NAME=MODEL:STEPS[:LOSS[:PRETRAIN]] with MODEL in {MODELS}, "
                                         f"LOSS in {LOSSES}, got {text!r}")  # fmt: skip
    return name, model, int(steps), loss or "l1", int(pre or 0)


def _model(model: str) -> dict[str, Any]:
    """The model spec of a ``--config`` MODEL: ``cpu-fixed-fusion`` is ``CPU_MODEL`` with its
    fusion weights kept at their priors (``learn_fusion=False``)."""
    from stliif.train import CPU_MODEL, GPU_MODEL

    if model == "cpu-fixed-fusion":
        return {**CPU_MODEL, "args": {**CPU_MODEL.get("args", {}), "learn_fusion": False}}
    return dict(CPU_MODEL if model == "cpu" else GPU_MODEL)


def job(name: str, model: str, steps: int, loss: str, pretrain: int, k: int, held: list[str], aois: list[str], args: dict[str, Any]) -> dict:
    """Train, calibrate and P-score one fold of one configuration (in a spawned process)."""
    import torch

    from stliif.checkpoint import load_checkpoint
    from stliif.evaluation.paper import load_paper_samples
    from stliif.models.inference import ModelPredictor
    from stliif.train.cv import (
        SCALES,
        calibrate_fold,
        calibration_rule,
        fold_spec,
        score_fold,
        train_fold,
    )

    torch.set_num_threads(1)
    record = load_checkpoint(args["record"])
    base = {**(record.train_spec or {}), "data": args["data"], "device": args["device"], "workers": 0,
            "model": _model(model), "loss": loss, "pretrain_steps": pretrain}  # fmt: skip
    train_aois = [a for a in aois if a not in held]
    fold_dir = Path(args["out"]) / name / f"fold{k}"
    t0 = time.perf_counter()
    best = train_fold(fold_spec(base, train_aois, steps=steps, threads=1), fold_dir)
    t1 = time.perf_counter()
    paper = load_paper_samples(args["data"], aois, with_dates=True)
    calibrate_fold(best, paper, held, **calibration_rule(record.extra["calibration"]))
    scales = {s: SCALES[s] for s in args["scales"]}

    def predictors(p: Path) -> tuple[Any, Any]:
        return ModelPredictor.from_checkpoint(p, device=args["device"]), None

    psnr = score_fold(best, held, paper, None, scales=scales, predictors=predictors)
    t2 = time.perf_counter()
    seconds = {"train": t1 - t0, "calibrate_score": t2 - t1}
    device = torch.cuda.get_device_name(0) if args["device"] == "cuda" else "cpu"
    (fold_dir / "scores-p.json").write_text(json.dumps(
        {"config": name, "model": model, "steps": steps, "loss": loss, "pretrain_steps": pretrain, "held": held, "psnr": {"P": psnr["P"]},
         "seconds": seconds, "device": device}, indent=1))  # fmt: skip
    (fold_dir / "last.pt").unlink(missing_ok=True)
    if name not in args["keep"]:
        best.unlink()
    return {"config": name, "fold": k, "psnr": {"P": psnr["P"]}, "seconds": seconds, "device": device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", type=_config, action="append", help="NAME=MODEL:STEPS[:LOSS] (repeatable).")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=15)
    ap.add_argument("--keep", nargs="*", default=["record"], help="Configurations whose fold best.pt is kept.")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--record", type=Path, default=REPO / "models" / "record" / "best.pt")
    ap.add_argument("--aois", type=int, default=0, help="Only the first N AOIs (smoke tests).")
    ap.add_argument("--scales", nargs="*", default=["x2", "x4", "x6"])
    args = ap.parse_args()
    configs = args.config or [("record", "cpu", 1200, "l1", 0)]

    from cv31 import table  # bench/cv31.py's tables (this script's folder is on sys.path)

    from stliif.evaluation.paper import paper_aois
    from stliif.train.cv import kfold, merge, summarize

    aois = paper_aois(args.data)[: args.aois or None]
    parts = kfold(aois, args.folds, args.seed)
    shared = {"data": str(args.data), "out": str(args.out), "device": args.device, "record": str(args.record),
              "keep": list(args.keep), "scales": list(args.scales)}  # fmt: skip
    t0 = time.perf_counter()
    results: dict[str, dict] = {c[0]: {"psnr": {}, "seconds": {}} for c in configs}
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(job, *c, k, held, aois, shared) for c in configs for k, held in enumerate(parts)]
        for f in as_completed(futures):
            r = f.result()
            merge(results[r["config"]]["psnr"], r["psnr"])
            results[r["config"]]["seconds"][f"fold{r['fold']}"] = r["seconds"]
            print(f"{r['config']} fold {r['fold']} on {r['device']}: train {r['seconds']['train']:.0f} s, "
                  f"calibrate+score {r['seconds']['calibrate_score']:.0f} s ({time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
    for name, model, steps, loss, pretrain in configs:
        res = results[name]
        res.update(model=model, steps=steps, loss=loss, pretrain_steps=pretrain, summary=summarize(res["psnr"]))
        print(f"\n{name} ({model}, {pretrain} + {steps} steps, {loss}):\n" + "\n".join(table(res["summary"], "P")))
    wall = time.perf_counter() - t0
    print(f"\nwall {wall:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(
        {"folds": parts, "seed": args.seed, "wall_s": wall, "configs": results}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
