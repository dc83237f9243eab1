"""Protocol P table for the interpolation baselines.

Usage::

    .venv/bin/python bench/paper_baselines.py [--data PATH] [--no-ssim] [--json OUT.json]

Prints per-AOI and mean PSNR / SSIM at x2 / x4 / x6 on the study's 10 test AOIs for
per-frame bicubic (the study's baseline, scored per frame), temporal median + bicubic, temporal
median + 3x4 affine colour map (fitted on the 21 training AOIs), and temporal linear
interpolation to the HR date + bicubic; then paired per-AOI deltas against per-frame bicubic with
a bootstrap 95 % CI, and the deviation of per-frame bicubic from the study's table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.evaluation import (  # noqa: E402
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    EvalResult,
    evaluate_paper,
    load_paper_samples,
    paired_deltas,
    paper_train_aois,
)
from stliif.models.baselines import (  # noqa: E402
    ColourMap,
    median_bicubic,
    per_frame_bicubic,
    temporal_linear,
)

# The study's per-frame bicubic PSNR (data README), x2 / x4 / x6.
STUDY_BICUBIC_PSNR = {
    "Amnesty_POI-13-1-1": (22.36, 21.52, 21.25),
    "Landcover-31746": (24.97, 24.02, 23.76),
    "Landcover-769356": (22.24, 21.73, 21.58),
    "Landcover-769486": (24.60, 23.71, 23.42),
    "Landcover-771536": (22.20, 21.63, 21.45),
    "Landcover-1865521": (23.56, 22.89, 22.65),
    "UNHCR-7977": (22.12, 21.46, 21.26),
    "UNHCR-NERs009694": (23.47, 22.79, 22.56),
    "UNHCR-NGAs036019": (23.07, 22.68, 22.54),
    "UNHCR-THAs001547": (21.72, 21.36, 21.21),
}


def _default_data() -> Path:
    return Path(os.environ.get("STLIIF_DATA", REPO.parent / "shared/data/worldstrat-subset"))


def _table(results: list[EvalResult], metric: str, fmt: str) -> str:
    scales = list(PAPER_SCALES)
    head = f"{'AOI':<20}" + "".join(f" | {r.name:^26}" for r in results)
    sub = f"{'':<20}" + "".join(" | " + " ".join(f"{s:>8}" for s in scales) for _ in results)
    lines = [head, sub, "-" * len(sub)]
    values = {r.name: {s: r.values(metric, s) for s in scales} for r in results}
    for aoi in results[0].aois:
        row = f"{aoi:<20}"
        for r in results:
            row += " | " + " ".join(f"{values[r.name][s][aoi]:>8{fmt}}" for s in scales)
        lines.append(row)
    lines.append("-" * len(sub))
    row = f"{'mean':<20}"
    for r in results:
        row += " | " + " ".join(f"{r.means[s][metric]:>8{fmt}}" for s in scales)
    lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=_default_data(), help="WorldStrat subset root")
    parser.add_argument("--no-ssim", action="store_true", help="skip SSIM (the slow part)")
    parser.add_argument("--json", type=Path, default=None, help="also write all records here")
    args = parser.parse_args(argv)
    root = args.data
    do_ssim = not args.no_ssim

    t0 = time.perf_counter()
    samples = load_paper_samples(root, PAPER_TEST_AOIS, with_dates=True)
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    train_aois = paper_train_aois(root)
    train = load_paper_samples(root, train_aois)
    cmap = ColourMap.fit((s.frames, s.target) for s in train.values())
    t_fit = time.perf_counter() - t0

    predictors = [
        ("bicubic/frame", per_frame_bicubic),
        ("median+bicubic", median_bicubic),
        ("median+colour", cmap.predictor()),
        ("linear-t+bicubic", temporal_linear),
    ]
    results = [
        evaluate_paper(p, root, samples=samples, ssim=do_ssim, name=name) for name, p in predictors
    ]
    base = results[0]

    print(f"Protocol P: {len(PAPER_TEST_AOIS)} test AOIs, scales {PAPER_SCALES}, data {root}")
    print(f"Colour map fitted on {len(train_aois)} training AOIs ({cmap.n_pixels} LR pixels):")
    for row in cmap.matrix:
        print("   [" + " ".join(f"{v:9.4f}" for v in row) + "]")
    print("\nPSNR (dB)")
    print(_table(results, "psnr", ".2f"))
    if do_ssim:
        print("\nSSIM (Gaussian 11 / sigma 1.5 / K1 0.01 / K2 0.03, channel mean)")
        print(_table(results, "ssim", ".4f"))
    print("\nMSE")
    print(_table(results, "mse", ".2f"))

    metrics = ["psnr", *(["ssim"] if do_ssim else [])]
    print("\nPaired per-AOI deltas vs per-frame bicubic (mean [bootstrap 95% CI], n=10):")
    for r in results[1:]:
        for m in metrics:
            cells = [
                f"{s}: {paired_deltas(r.values(m, s), base.values(m, s))}" for s in PAPER_SCALES
            ]
            print(f"  {r.name:<17} {m:<5} " + "   ".join(cells))

    dev = max(
        abs(base.values("psnr", s)[aoi] - STUDY_BICUBIC_PSNR[aoi][k])
        for k, s in enumerate(PAPER_SCALES)
        for aoi in PAPER_TEST_AOIS
    )
    print(f"\nPer-frame bicubic vs the study's table: max |PSNR deviation| = {dev:.4f} dB")
    print(f"Timings: load test {t_load:.1f} s, load train + fit colour map {t_fit:.1f} s")
    for r in results:
        print(f"  {r.name:<17} predict + score{' (with SSIM)' if do_ssim else ''}: {r.seconds:.1f} s")

    if args.json is not None:
        payload = {
            "colour_map": cmap.to_dict(),
            "results": [{"name": r.name, "records": r.records, "means": r.means} for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
