"""Benchmark: how exactly ``adapt_paper`` reproduces the study's ``temporal_subset`` PNGs.

Usage::

    .venv/bin/python bench/paper_histogram.py [--data PATH]

For each AOI it adapts the 5 revisits of ``reference/study_temporal_selection.csv`` (in
chronological order, like ``1..5.png``) to the AOI's reference revisit and prints the share of
uint8 values within +-1 DN of the PNGs and the share exactly equal, then the overall shares, the
worst AOI and the wall time. Exit status 1 when the overall +-1 share is below 0.99.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stliif.preprocess.histogram import PAPER_REFERENCE_REVISIT, adapt_paper  # noqa: E402
from stliif.sources.worldstrat import find_aoi_files, list_aois, read_lr  # noqa: E402


def study_selection(root: Path) -> dict[str, list[int]]:
    """Revisit numbers the study selected per AOI (``selected_revisits`` column)."""
    with open(root / "reference" / "study_temporal_selection.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["aoi"]: [int(n) for n in r["selected_revisits"].split(",")] for r in rows}


def compare_aoi(root: Path, aoi: str, revisits: list[int]) -> tuple[int, int, int]:
    """(values, values within +-1, values equal) of one AOI's 5 frames against the PNGs."""
    lr = read_lr(find_aoi_files(root, aoi))
    frames = adapt_paper(lr, reference_revisit=PAPER_REFERENCE_REVISIT[aoi], revisits=revisits)
    total = near = equal = 0
    for k in range(frames.sizes["time"]):
        png = np.asarray(Image.open(root / "reference" / "temporal_subset" / aoi / f"{k + 1}.png"))
        ours = frames.isel(time=k).transpose("y", "x", "band").values
        if ours.shape != png.shape:
            raise SystemExit(f"{aoi} frame {k + 1}: shape {ours.shape} != PNG {png.shape}")
        diff = np.abs(ours.astype(np.int16) - png.astype(np.int16))
        total += diff.size
        near += int((diff <= 1).sum())
        equal += int((diff == 0).sum())
    return total, near, equal


def main(argv: list[str] | None = None) -> int:
    default = os.environ.get("STLIIF_DATA", str(REPO.parent / "shared/data/worldstrat-subset"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(default), help="WorldStrat subset root")
    args = parser.parse_args(argv)
    root = args.data
    selection = study_selection(root)
    start = time.perf_counter()
    total = near = equal = 0
    per_aoi = {}
    print(f"{'AOI':24s} {'ref':>4s} {'within1':>9s} {'exact':>9s}")
    for aoi in list_aois(root):
        if aoi not in selection:
            continue
        t, n, e = compare_aoi(root, aoi, selection[aoi])
        per_aoi[aoi] = n / t
        total, near, equal = total + t, near + n, equal + e
        print(f"{aoi:24s} {PAPER_REFERENCE_REVISIT[aoi]:4d} {n / t:9.6f} {e / t:9.6f}")
    wall = time.perf_counter() - start
    worst = min(per_aoi, key=per_aoi.__getitem__)
    print(f"overall ({len(per_aoi)} AOIs, {5 * len(per_aoi)} frames, {total} values): "
          f"within +-1 {near / total:.6f}, exact {equal / total:.6f} "
          f"({total - near} values off by >1, {total - equal} values differing)")
    print(f"worst AOI: {worst} within +-1 {per_aoi[worst]:.6f}")
    print(f"wall time: {wall:.2f} s")
    return 0 if near / total >= 0.99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
