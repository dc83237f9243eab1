"""A four-band checkpoint against an RGB one trained the same way, on protocol C's test AOIs
(docs/results.md, "Four bands", the model): R, G, B scores, the NIR and NDVI of each, raw and in
product mode, with the band-agnostic baselines beside them and paired per-AOI deltas.

Usage: PYTHONPATH=. .venv/bin/python bench/four_band_model.py STORE RGB_RUN FOUR_RUN [--scale x4]...

Both runs are scored once, at their last step (trained with --n-val 0: no selection at all).
"""

import argparse
import math
import time

import numpy as np

from stliif.constraint import product_predictor
from stliif.evaluation.clean import evaluate_clean, load_clean_sample
from stliif.evaluation.paper import PAPER_SCALES
from stliif.evaluation.results import paired_deltas
from stliif.models.predictor import get_predictor
from stliif.store import ArtifactStore
from stliif.train.inputs import SPLIT_PATH

ap = argparse.ArgumentParser()
ap.add_argument("store")
ap.add_argument("rgb")
ap.add_argument("four")
ap.add_argument("--scale", action="append")
args = ap.parse_args()
store = ArtifactStore.open(args.store)
test = store.read_json(SPLIT_PATH)["test"]
scales = {s: PAPER_SCALES[s] for s in (args.scale or list(PAPER_SCALES))}
rgb, four = get_predictor(args.rgb, protocol="clean"), get_predictor(args.four, protocol="clean")
methods = {
    "median": get_predictor("median", protocol="clean"), "linear": get_predictor("linear", protocol="clean"),
    "rgb": rgb, "rgb-product": product_predictor(rgb), "four": four, "four-product": product_predictor(four),
}  # fmt: skip
start = time.perf_counter()
samples = {a: load_clean_sample(store, a) for a in test}
res = evaluate_clean(methods, samples, scales=scales, ssim=False, cpsnr=False)
print(f"{len(test)} test AOIs, {time.perf_counter() - start:.0f} s")
cols = ("psnr", "psnr_refl_r", "psnr_refl_g", "psnr_refl_b", "psnr_refl_nir", "cons_mae", "cons_sam", "ndvi_mae",
        "ndvi_mae_hr", "improvement", "omission", "hallucination")
for scale in scales:
    print(f"\n{scale}, means over the {len(test)} test AOIs:\n")
    print("| method | uint8 PSNR | PSNR ρ R | PSNR ρ G | PSNR ρ B | PSNR ρ NIR | LR MAE | LR SAM° | NDVI MAE vs inputs "
          "| NDVI MAE vs target | improv. | omission | halluc. |")
    print("|---|" + "---|" * len(cols))
    for name, r in res.items():
        vals = [np.mean(list(r.values(c, scale).values())) for c in cols]
        print(f"| {name} | " + " | ".join(f"{v:.4f}" if c in ("cons_mae", "ndvi_mae", "ndvi_mae_hr") else f"{v:.2f}" for c, v in zip(cols, vals, strict=True)) + " |")
    print("\nPaired per-AOI deltas (95 % bootstrap CI):\n")
    for a, b in (("four", "rgb"), ("four-product", "rgb-product"), ("four", "median")):
        for c in ("psnr", "psnr_refl_nir", "ndvi_mae_hr"):
            d = paired_deltas(res[a].values(c, scale), res[b].values(c, scale))
            print(f"- {a} - {b}, {c}: {d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]")
if "x4" in scales:
    print("\nx4 per AOI, uint8 PSNR / PSNR ρ NIR:\n")
    print("| AOI | " + " | ".join(res) + " |")
    print("|---|" + "---|" * len(res))
    for aoi in test:
        cells = [f"{r.values('psnr', 'x4')[aoi]:.2f} / {r.values('psnr_refl_nir', 'x4')[aoi]:.2f}" for r in res.values()]
        print(f"| {aoi} | " + " | ".join(cells) + " |")
assert all(math.isfinite(v) for v in res["four"].values("psnr_refl_nir", next(iter(scales))).values())
