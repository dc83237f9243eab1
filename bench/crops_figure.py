"""Crops of a checkpoint beside median + colour map on protocol P's test AOIs (issue 19's figure).

Usage::

    PYTHONPATH=. .venv/bin/python bench/crops_figure.py [--model models/record] [--scale x4]
        [--crop 192] [--out docs/figures/p_crops_x4_vs_median_colour.png]

Rows: the test AOIs where the model's PSNR minus median + colour map's is highest, at the
median and lowest at ``--scale`` (chosen by that rule, not by eye). Columns: the middle input
frame (nearest), median + colour map (colour map fitted on the paper split's training AOIs, as
``stliif evaluate`` fits it), the model, the HR target; a centre crop of ``--crop`` output pixels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stliif.config import default_data_root  # noqa: E402
from stliif.evaluation.paper import (  # noqa: E402
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    fit_colour_map_paper,
    load_paper_samples,
    paper_train_aois,
    score_image,
)
from stliif.models.predictor import get_predictor  # noqa: E402


def centre(img: np.ndarray, c: int) -> np.ndarray:
    h, w = img.shape[:2]
    y0, x0 = (h - c) // 2, (w - c) // 2
    return img[y0 : y0 + c, x0 : x0 + c]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--model", default=str(REPO / "models" / "record" / "best.pt"))
    ap.add_argument("--scale", default="x4", choices=list(PAPER_SCALES))
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "p_crops_x4_vs_median_colour.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = PAPER_SCALES[args.scale]
    samples = load_paper_samples(args.data, PAPER_TEST_AOIS, with_dates=True)
    median_colour = get_predictor("median-colour", colour_map=fit_colour_map_paper(args.data, paper_train_aois(args.data)))
    model = get_predictor(args.model, protocol="paper")
    out: dict[str, dict[str, np.ndarray]] = {}
    delta: dict[str, float] = {}
    for aoi, s in samples.items():
        target = s.target_at(size)
        out[aoi] = {
            "median + colour map": np.asarray(median_colour(s.frames, size=size)),
            "model": np.asarray(model(s.frames, size=size, dates=s.dates, target_date=s.hr_date)),
        }
        psnr = {k: score_image(v, target, ssim=False)["psnr"] for k, v in out[aoi].items()}
        delta[aoi] = psnr["model"] - psnr["median + colour map"]
        print(f"{aoi:22s} model - median + colour map: {delta[aoi]:+.2f} dB", flush=True)
    ranked = sorted(delta, key=lambda a: delta[a])
    rows = [ranked[-1], ranked[(len(ranked) - 1) // 2], ranked[0]]
    name = Path(args.model).parent.name if Path(args.model).name == "best.pt" else Path(args.model).stem
    fig, axes = plt.subplots(len(rows), 4, figsize=(12.8, 3.4 * len(rows)), squeeze=False)
    for r, aoi in enumerate(rows):
        s = samples[aoi]
        frame = s.frames[s.frames.shape[0] // 2]
        panels = {
            "input (middle frame, nearest)": np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.NEAREST)),
            "median + colour map": out[aoi]["median + colour map"],
            f"{name} ({delta[aoi]:+.2f} dB)": out[aoi]["model"],
            "HR target": s.target_at(size),
        }
        for ax, (title, img) in zip(axes[r], panels.items(), strict=True):
            ax.imshow(centre(img, args.crop), interpolation="nearest")
            ax.set_title(f"{aoi}: {title}" if ax is axes[r][0] else title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"Protocol P, {args.scale}, centre {args.crop} px: test AOIs with the highest, median and lowest "
                 f"PSNR gain over median + colour map", fontsize=10)  # fmt: skip
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=72)
    print(f"{args.out}: rows {', '.join(rows)}")


if __name__ == "__main__":
    main()
