"""Protocol P: the median + colour map baseline with the V-mean match, beside a model's scores.

Usage::

    .venv/bin/stliif evaluate --protocol paper --model models/record --json p.json
    .venv/bin/python bench/calibrated_baseline.py p.json [--model models/record/best.pt]

The checkpoint of record blends its output with median + colour map, matches the mean of V to
the inputs and samples the targets' grid offset (:mod:`stliif.models.calibration`). This scores
the checkpoint's calibration without the model (weight 0: median + colour map at the offset, then
the V-mean match; colour map and offset as stored, fitted on the 21 training AOIs) on the
study's 10 test AOIs, and prints the model's paired per-AOI PSNR deltas against it
(95 % bootstrap CI): what the learned model adds beyond its calibration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.checkpoint import load_checkpoint  # noqa: E402
from stliif.config import default_data_root  # noqa: E402
from stliif.evaluation import (  # noqa: E402
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    load_paper_samples,
    paired_deltas,
    score_image,
)
from stliif.models.calibration import Calibration  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", type=Path, help="`stliif evaluate --protocol paper --json` output")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "record" / "best.pt",
                    help="Checkpoint whose stored calibration is scored at weight 0.")
    ap.add_argument("--data", type=Path, default=default_data_root())
    args = ap.parse_args()
    doc = json.loads(args.json.read_text())
    model = doc["metrics"]
    sizes = {sc: PAPER_SCALES[sc] for sc in doc["scales"]}
    stored = Calibration.from_dict(load_checkpoint(args.model).extra["calibration"])
    cal = dataclasses.replace(stored, weight=0.0)
    test = load_paper_samples(args.data, PAPER_TEST_AOIS)
    base = {sc: {a: score_image(cal.apply(np.zeros((z, z, 3)), s.frames), s.target_at(z), ssim=False)["psnr"]
                 for a, s in test.items()} for sc, z in sizes.items()}  # fmt: skip
    print(f"{'AOI':22s} " + "  ".join(f"{sc}: model / median-colour+V" for sc in sizes))
    for a in test:
        print(f"{a:22s} " + "  ".join(f"{model[a][sc]['psnr']:6.2f} / {base[sc][a]:6.2f}      " for sc in sizes))
    for sc in sizes:
        d = paired_deltas({a: model[a][sc]["psnr"] for a in test}, base[sc])
        print(f"{sc}: median-colour+V mean {np.mean(list(base[sc].values())):.2f}; model - it: {d}")


if __name__ == "__main__":
    main()
