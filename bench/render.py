"""Seconds per rendered megapixel with the checkpoint of record, on 2 cores.

Usage::

    .venv/bin/python bench/render.py [--data PATH] [--aoi Landcover-14956] [--threads 2]

Renders one AOI's LR cube (read from the WorldStrat files) at its HR date at several scales and
prints the wall time, the output size and seconds per megapixel (3-band RGB output), plus the
time of one 1054 x 1054 protocol-P prediction from 5 frames.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stliif.config import default_data_root, default_model  # noqa: E402
from stliif.render import load_predictor, render  # noqa: E402
from stliif.sources.worldstrat import find_aoi_files, read_lr  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--aoi", default="Landcover-14956")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cube = read_lr(find_aoi_files(args.data or default_data_root(), args.aoi))
    model = load_predictor(default_model())
    date = str(cube.attrs["hr_date"])[:10]
    render(model, cube, date, scale=1)  # warm-up
    print(f"{args.aoi}: LR {cube.sizes['y']} x {cube.sizes['x']} px, date {date}, {args.threads} threads")
    for scale in (2, 4, 6, 8):
        t0 = time.perf_counter()
        da = render(model, cube, date, scale=scale)
        dt = time.perf_counter() - t0
        mp = da.sizes["y"] * da.sizes["x"] / 1e6
        print(f"x{scale}: {da.sizes['y']} x {da.sizes['x']} px ({mp:.2f} MP) in {dt:.2f} s = {dt / mp:.2f} s/MP")
    frames = np.random.default_rng(0).integers(0, 255, (5, 176, 176, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    model(frames, size=1054)
    print(f"protocol P x6 (5 frames of 176 px -> 1054 x 1054): {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
