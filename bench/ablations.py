"""Ablations of the CPU Temporal LIIF at an equal, short budget, scored on the validation AOIs.

Usage::

    .venv/bin/python bench/ablations.py [--steps 800] [--only NAME ...] [--out stliif-runs/ablations]

Each row changes one thing of the record configuration (``stliif.train.CPU_MODEL``, strategy
``complete``, real-HR supervision at scales x2..x7) and trains it with the same seed, data and
steps; the score is protocol P PSNR on the *validation* AOIs (never test) at the last step,
next to median + bicubic on the same AOIs. Runs resume, so an interrupted bench continues.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.train import CPU_MODEL, TrainSpec, train  # noqa: E402


def _model(**changes: object) -> dict:
    m = copy.deepcopy(CPU_MODEL)
    m["args"].update(changes)
    return m


ABLATIONS: dict[str, dict] = {
    "record config (temporal, complete, HR supervision, 2-D encoder)": {},
    "single-frame LIIF (middle frame, same encoder/decoder)": {
        "model": {"name": "liif", "args": {k: v for k, v in CPU_MODEL["args"].items() if k != "fusion_blocks"}},
    },
    "strategy: random adjacent groups": {"strategy": "groups"},
    "strategy: pairs": {"strategy": "pairs"},
    "LR-grid supervision (the study's: HR downsampled to the 10 m grid)": {"scale_min": 1.0, "scale_max": 1.0},
    "encoder: the study's 3-D EDSR (32 x 4)": {
        "model": _model(encoder_spec={"name": "edsr-3d", "args": {"n_feats": 32, "n_resblocks": 4}}),
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--only", nargs="*", help="Substrings of the rows to run.")
    ap.add_argument("--out", type=Path, default=REPO / "stliif-runs" / "ablations")
    ap.add_argument("--json", type=Path, help="Write the rows as JSON.")
    args = ap.parse_args()
    rows = []
    for i, (name, change) in enumerate(ABLATIONS.items()):
        if args.only and not any(s in name for s in args.only):
            continue
        spec = TrainSpec(**{"steps": args.steps, "val_every": args.steps, "threads": 2, **change})
        t0 = time.perf_counter()
        res = train(spec, args.out / f"a{i}", progress=False)
        v = res.validation[-1]
        rows.append({"ablation": name, "steps": res.step, "seconds": round(time.perf_counter() - t0, 1),
                     **{k: round(v[k], 3) for k in v if k.startswith("psnr_")},
                     "baseline": {k: round(b, 3) for k, b in res.baseline.items()}})  # fmt: skip
        r = rows[-1]
        print(f"{name:70s} {r['psnr_x2']:.2f} {r['psnr_x4']:.2f} {r['psnr_x6']:.2f}  ({r['seconds']:.0f} s)", flush=True)
    if rows:
        b = rows[0]["baseline"]
        print(f"{'median + bicubic (same validation AOIs)':70s} {b['psnr_x2']:.2f} {b['psnr_x4']:.2f} {b['psnr_x6']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
