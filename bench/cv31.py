"""Cross-validation of the record configuration over all 31 AOIs (issue 18, part 4).

Usage::

    PYTHONPATH=. .venv/bin/python bench/cv31.py --store STORE [--folds 5] [--steps 1200]
        [--out stliif-runs/cv31] [--json cv31.json] [--name cv31] [--existing-only]

``STORE`` holds the clean ETL artifacts of every AOI (``stliif etl --mode clean --store STORE``);
the fold models are committed there as ``models/<name>-fold<k>``. The 31 AOIs (train, val and
test AOIs of the paper split alike) are split into ``--folds`` seeded folds
(:func:`stliif.train.cv.kfold`); fold ``k``'s model is the record's configuration
(``models/record``: its train spec, ``--steps`` steps, no validation AOIs, the last step) trained
on the other folds' AOIs, calibrated as the record is (its weight and V-mean mode; colour map and
grid offset refitted on the fold's training AOIs), and scored on its own fold on P's targets and
C's, in P mode and product mode, beside median + colour map (colour map fitted on the fold's
training AOIs), the calibration alone and median + bicubic. Prints and writes (``--json``)
per-AOI PSNR, means and paired deltas against median + colour map (95 % bootstrap CI).

Resumable: a fold's ``best.pt`` and ``scores.json`` under ``--out`` are reused; a killed training
resumes from its ``last.pt``. ``--existing-only`` summarises the folds already scored (a partial
run) without training anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.config import default_data_root  # noqa: E402
from stliif.evaluation.paper import PAPER_TEST_AOIS, load_paper_samples, paper_aois  # noqa: E402
from stliif.train.cv import (  # noqa: E402
    METHODS,
    REFERENCE,
    SCALES,
    calibrate_fold,
    calibration_rule,
    commit_fold,
    fit_fold_colour_map_clean,
    fold_spec,
    kfold,
    merge,
    score_fold,
    summarize,
    train_fold,
)

PROTOCOLS = {"P": "P targets (study's), uint8 PSNR", "C": "C targets (our ETL), uint8 PSNR",
             "C-refl": "C targets, reflectance PSNR"}  # fmt: skip


def table(summary: dict, proto: str) -> list[str]:
    """Markdown rows: method | x2 | x4 | x6 (mean, delta vs the reference [95 % CI])."""
    rows = [f"| method ({PROTOCOLS[proto]}) | " + " | ".join(SCALES) + " |", "|---" * (len(SCALES) + 1) + "|"]
    for m in METHODS:
        if m not in summary.get(proto, {}):
            continue
        cells = []
        for sc in SCALES:
            c = summary[proto][m].get(sc)
            if c is None:
                cells.append("–")
            elif c["delta"] is None:
                cells.append(f"{c['mean']:.2f}")
            else:
                cells.append(f"{c['mean']:.2f} ({c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}])")
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="Store with the clean ETL artifacts of every AOI.")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", type=Path, default=REPO / "models" / "record" / "best.pt")
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--out", type=Path, default=REPO / "stliif-runs" / "cv31")
    ap.add_argument("--name", default="cv31", help="Fold models are committed as models/<name>-fold<k>.")
    ap.add_argument("--json", type=Path, help="Write folds, per-AOI PSNR and the summary as JSON.")
    ap.add_argument("--existing-only", action="store_true", help="Summarise the folds already scored; train nothing.")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import torch

    from stliif.checkpoint import load_checkpoint
    from stliif.evaluation.clean import load_clean_sample
    from stliif.store import ArtifactStore

    torch.set_num_threads(args.threads)
    record = load_checkpoint(args.record)
    rule = calibration_rule(record.extra["calibration"])
    aois = paper_aois(args.data)
    parts = kfold(aois, args.folds, args.seed)
    print(f"{len(aois)} AOIs, {args.folds} folds (seed {args.seed}), {args.steps} steps; record calibration "
          f"w={rule['weight']} v_mean={rule['v_mean']} offset={'fit' if rule['offset'] else 'none'}", flush=True)  # fmt: skip
    for k, held in enumerate(parts):
        print(f"fold {k}: {', '.join(a + ('*' if a in PAPER_TEST_AOIS else '') for a in held)}", flush=True)
    store = ArtifactStore.open(args.store, create=False)
    samples: dict = {}

    def load() -> tuple[dict, dict]:
        """P and C samples of every AOI, read once, when a fold is first scored here."""
        if not samples:
            samples["P"] = load_paper_samples(args.data, aois, with_dates=True)
            samples["C"] = {a: load_clean_sample(store, a) for a in aois}
            print(f"samples loaded: {time.perf_counter() - t_start:.0f} s", flush=True)
        return samples["P"], samples["C"]

    psnr: dict = {}
    timing: dict[str, dict[str, float]] = {}
    done: list[int] = []
    commits: dict[str, str] = {}
    for k, held in enumerate(parts):
        fold_dir = args.out / f"fold{k}"
        scores = fold_dir / "scores.json"
        train_aois = [a for a in aois if a not in held]
        if scores.is_file():
            saved = json.loads(scores.read_text())
            if saved["held"] == held and saved["steps"] == args.steps:
                merge(psnr, saved["psnr"])
                timing[f"fold{k}"] = saved["seconds"]
                commits.update(saved.get("commit", {}))
                done.append(k)
                print(f"fold {k}: scores reused from {scores}", flush=True)
                continue
        if args.existing_only:
            print(f"fold {k}: not scored yet (skipped: --existing-only)", flush=True)
            continue
        paper, clean = load()
        t0 = time.perf_counter()
        spec = fold_spec(record.train_spec or {}, train_aois, steps=args.steps, threads=args.threads)
        best = train_fold(spec, fold_dir)
        t1 = time.perf_counter()
        calibrate_fold(best, paper, held, **rule)
        res = commit_fold(store, f"{args.name}-fold{k}", best, held=held, fold=k, folds=args.folds)
        cmap_c = fit_fold_colour_map_clean(clean, train_aois)
        t2 = time.perf_counter()
        part = score_fold(best, held, paper, clean, colour_map_clean=cmap_c)
        t3 = time.perf_counter()
        seconds = {"train": t1 - t0, "calibrate_commit": t2 - t1, "score": t3 - t2}
        commit = {res["path"]: res["snapshot_id"]}
        scores.write_text(json.dumps({"held": held, "steps": args.steps, "psnr": part, "seconds": seconds,
                                      "commit": commit}, indent=1))  # fmt: skip
        merge(psnr, part)
        timing[f"fold{k}"] = seconds
        commits.update(commit)
        done.append(k)
        print(f"fold {k}: train {t1 - t0:.0f} s, calibrate+commit {t2 - t1:.0f} s, score {t3 - t2:.0f} s; "
              f"{res['path']} at {res['snapshot_id']} (created {res['created']})", flush=True)  # fmt: skip

    scored = sorted(a for k in done for a in parts[k])
    summary = summarize(psnr)
    print(f"\n{len(scored)} of {len(aois)} AOIs scored ({len(done)} of {args.folds} folds"
          f"{'' if len(done) == args.folds else ': PARTIAL'}); PSNR mean (delta vs {REFERENCE} [95 % CI])")  # fmt: skip
    for proto in PROTOCOLS:
        if proto in summary:
            print("\n" + "\n".join(table(summary, proto)), flush=True)
    print("\nper AOI, x2 / x4 / x6 (P targets | C targets): record, record-product, median-colour")
    for a in scored:
        cells = []
        for proto in ("P", "C"):
            p = psnr.get(proto, {})
            cells.append("  ".join("/".join(f"{p[m][a][sc]:.2f}" for sc in SCALES) for m in
                                   ("record", "record-product", "median-colour") if a in p.get(m, {})))  # fmt: skip
        print(f"{a:22s} {cells[0]} | {cells[1]}")
    wall = time.perf_counter() - t_start
    print(f"\nwall {wall:.0f} s (this call)")
    if args.json:
        try:
            rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        except OSError:
            rev = ""
        doc = {"folds": parts, "seed": args.seed, "steps": args.steps, "done": done, "aois_scored": scored,
               "partial": len(done) != args.folds, "record_calibration": rule, "commit": rev, "store": args.store, "fold_models": commits,
               "seconds": timing, "wall_s_this_call": wall, "psnr": psnr, "summary": summary,
               "mean_over_scales": {p: {m: float(np.mean([c["mean"] for c in v.values()])) for m, v in s.items()}
                                    for p, s in summary.items()}}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
