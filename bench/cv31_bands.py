"""Four bands against three, cross-validated over the 31 AOIs on the store's scenes (issue 19).

Usage::

    PYTHONPATH=. .venv/bin/python bench/cv31_bands.py --store STORE [--out stliif-runs/cv31-bands]
        [--steps 1200] [--jobs 2] [--json OUT]

``STORE`` holds the clean ETL artifacts of every AOI (``stliif etl --mode clean --store STORE``).
The folds are ``bench/cv31.py``'s (:func:`stliif.train.cv.kfold` over every AOI, seed 0). Fold
``k`` trains two models on the other folds' AOIs from the store (protocol C scenes): the record's
train spec with ``source="store"`` and ``bands`` 3 (R, G, B) or 4 (R, G, B, NIR), ``--steps``
steps, no validation, the last step (one thread each, ``--jobs`` trainings at a time in spawned
processes). Each is calibrated as the record is (weight 0.4, additive V-mean; the blend's colour
map fitted on the fold's training AOIs from the store, R, G, B only; no grid offset, which
protocol C drops) and scored on the fold's held-out AOIs on protocol C, raw output calibrated and
in product mode, beside median + bicubic and median + colour map (colour map fitted on the fold's
training AOIs). Prints means and paired deltas (95 % bootstrap CI) of uint8 R, G, B PSNR and the
NIR's reflectance PSNR. Resumable: a fold's ``best.pt`` at ``--steps`` on the same AOIs is reused.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.config import default_data_root  # noqa: E402
from stliif.evaluation.paper import PAPER_SCALES, PAPER_TEST_AOIS, paper_aois  # noqa: E402
from stliif.evaluation.results import paired_deltas  # noqa: E402
from stliif.train.cv import kfold  # noqa: E402

METRICS = ("psnr", "psnr_refl_nir")
PAIRS = (("four", "rgb"), ("four-product", "rgb-product"), ("four", "median-colour"), ("rgb", "median-colour"))


def train_job(store_path: str, base: dict[str, Any], bands: int, train_aois: list[str], steps: int, out: str) -> dict[str, Any]:
    """Train one (fold, bands) model from the store (in a spawned process); its ``best.pt`` and seconds."""
    import torch

    from stliif.store import ArtifactStore
    from stliif.train import train
    from stliif.train.cv import fold_spec, train_fold

    torch.set_num_threads(1)
    store = ArtifactStore.open(store_path, create=False)
    spec = fold_spec({**base, "source": "store", "bands": bands}, train_aois, steps=steps, threads=1)
    t0 = time.perf_counter()
    best = train_fold(spec, out, trainer=lambda s, o, progress: train(s, o, store=store, progress=progress))
    return {"best": str(best), "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=REPO / "stliif-runs" / "cv31-store")
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--out", type=Path, default=REPO / "stliif-runs" / "cv31-bands")
    ap.add_argument("--record", type=Path, default=REPO / "models" / "record" / "best.pt")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t_start = time.perf_counter()

    from stliif.checkpoint import load_checkpoint
    from stliif.constraint import product_predictor
    from stliif.evaluation.clean import evaluate_clean, load_clean_sample
    from stliif.models.predictor import get_predictor
    from stliif.store import ArtifactStore
    from stliif.train.cv import calibrate_fold, fit_fold_colour_map_clean
    from stliif.train.inputs import uint8_sample

    base = dict(load_checkpoint(args.record).train_spec or {})
    aois = paper_aois(args.data)
    parts = kfold(aois, 5, 0)
    jobs = [(k, b) for k in range(len(parts)) for b in (3, 4)]
    best: dict[tuple[int, int], Path] = {}
    seconds: dict[str, float] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {
            (k, b): pool.submit(train_job, str(args.store), base, b, [a for a in aois if a not in parts[k]],
                                args.steps, str(args.out / f"b{b}" / f"fold{k}"))
            for k, b in jobs
        }  # fmt: skip
        for (k, b), fut in futures.items():
            r = fut.result()
            best[(k, b)] = Path(r["best"])
            seconds[f"b{b}/fold{k}"] = r["seconds"]
            print(f"fold {k}, {b} bands: {r['seconds']:.0f} s ({time.perf_counter() - t_start:.0f} s)", flush=True)

    store = ArtifactStore.open(str(args.store), create=False)
    clean = {a: load_clean_sample(store, a) for a in aois}
    rgb_u8 = {a: uint8_sample(s) for a, s in clean.items()}
    scores: dict[str, dict[str, dict[str, dict[str, float]]]] = {}  # metric -> method -> aoi -> scale
    for k, held in enumerate(parts):
        train_aois = [a for a in aois if a not in held]
        methods: dict[str, Any] = {
            "median": get_predictor("median", protocol="clean"),
            "median-colour": fit_fold_colour_map_clean(clean, train_aois).predictor(),
        }
        for b, name in ((3, "rgb"), (4, "four")):
            calibrate_fold(best[(k, b)], rgb_u8, held, weight=0.4, v_mean="add", offset=False)
            model = get_predictor(best[(k, b)], protocol="clean")
            methods[name], methods[f"{name}-product"] = model, product_predictor(model)
        res = evaluate_clean(methods, {a: clean[a] for a in held}, scales=PAPER_SCALES, ssim=False, cpsnr=False)
        for name, r in res.items():
            for metric in METRICS:
                for scale in PAPER_SCALES:
                    for aoi, v in r.values(metric, scale).items():
                        scores.setdefault(metric, {}).setdefault(name, {}).setdefault(aoi, {})[scale] = float(v)
        print(f"fold {k} scored ({time.perf_counter() - t_start:.0f} s)", flush=True)

    summary: dict[str, Any] = {}
    for subset, names in (("all", aois), ("non-test", [a for a in aois if a not in PAPER_TEST_AOIS])):
        print(f"\n{subset} ({len(names)} AOIs), means (x2 / x4 / x6):")
        for metric in METRICS:
            for name, per in scores[metric].items():
                means = [float(np.mean([per[a][s] for a in names])) for s in PAPER_SCALES]
                summary.setdefault(subset, {}).setdefault(metric, {}).setdefault(name, {})["mean"] = means
                print(f"  {metric:14s} {name:14s} " + " / ".join(f"{m:.2f}" for m in means))
            for a_, b_ in PAIRS:
                cells = []
                for s in PAPER_SCALES:
                    d = paired_deltas([scores[metric][a_][a][s] for a in names], [scores[metric][b_][a][s] for a in names])
                    better = sum(scores[metric][a_][a][s] > scores[metric][b_][a][s] for a in names)
                    cells.append({"delta": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "better": better})
                summary[subset][metric].setdefault(f"{a_} - {b_}", cells)
                print(f"  {metric:14s} {a_} - {b_}: " + " / ".join(
                    f"{c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] ({c['better']} better)" for c in cells))
    print(f"\nwall {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"folds": parts, "steps": args.steps, "seconds": seconds, "scores": scores,
                                         "summary": summary}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
