"""Product mode against paper mode on the 10 test AOIs at x4, at their HR dates, through the store.

For each AOI: import and mask it into a store, render the checkpoint of record at the HR date
at x4 in both modes, average each render over 4 x 4 blocks back to the 10 m grid and compare
it with (a) the nearest revisit (the measurement of issue 18) and (b) the time-interpolated
inputs (the product-mode target, the render's ``consistency_*`` tags).

Usage: PYTHONPATH=. .venv/bin/python bench/product_mode.py STORE_DIR OUT_DIR [AOI ...] > table.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rasterio

from stliif.consistency import degrade
from stliif.cubes import read_cube
from stliif.errors import InvalidInputError
from stliif.evaluation.paper import PAPER_TEST_AOIS, load_paper_dates
from stliif.render import run_render
from stliif.render.request import RGB_BANDS
from stliif.stages import run_stage
from stliif.store import ArtifactStore

DATA = "/work/shared/data/worldstrat-subset"


def nearest_revisit(cube, date: np.datetime64, used: list[str]) -> np.ndarray:
    days = [str(t)[:10] for t in cube["time"].values]
    gaps = [abs((np.datetime64(d) - date.astype("datetime64[D]")).astype(int)) for d in used]
    t = days.index(used[int(np.argmin(gaps))])
    refl = cube["reflectance"].isel(time=t).sel(band=list(RGB_BANDS)).transpose("y", "x", "band")
    return np.asarray(refl.values, np.float64)


def compare(render: np.ndarray, ref: np.ndarray) -> tuple[float, list[float], float]:
    deg = degrade(render, ref.shape[:2])
    ok = np.isfinite(deg).all(axis=2) & np.isfinite(ref).all(axis=2)
    d, r = deg[ok], ref[ok]
    return float(np.abs(d - r).mean()), [float(v) for v in (d - r).mean(axis=0)], float(np.corrcoef(d.ravel(), r.ravel())[0, 1])


def main() -> None:
    store = ArtifactStore.open(sys.argv[1])
    out = Path(sys.argv[2])
    aois = sys.argv[3:] or list(PAPER_TEST_AOIS)
    print("| AOI, date | mode | vs nearest revisit: MAE | bias R / G / B | corr | vs time-interpolated inputs: MAE | bias R / G / B | SAM deg | shift px |")
    print("|---|---|---|---|---|---|---|---|---|")
    for aoi in aois:
        for stage in ("import", "mask"):
            run_stage(store, stage, aoi, data=DATA)
        date = load_paper_dates(DATA, aoi)[1]
        cube = read_cube(store, aoi, load=True)
        far = False
        for mode in ("paper", "product"):
            try:
                res = run_render(store, aoi, "models/record", date=str(date)[:10], scale=4, out_dir=out / mode, mode=mode,
                                 allow_far=far)  # fmt: skip
            except InvalidInputError:  # the HR date is beyond the temporal support: rendered anyway, flagged
                far = True
                res = run_render(store, aoi, "models/record", date=str(date)[:10], scale=4, out_dir=out / mode, mode=mode,
                                 allow_far=True)  # fmt: skip
            with rasterio.open(res["files"][0]) as src:
                img = src.read().transpose(1, 2, 0).astype(np.float64)
            a = res["attrs"]
            mae, bias, corr = compare(img, nearest_revisit(cube, date, a["revisits"]))
            b = " / ".join(f"{v:+.4f}" for v in bias)
            tb = " / ".join(f"{v:+.4f}" for v in a["consistency_bias"])
            flag = f" ({a['nearest_revisit_days']:.0f} days from a revisit, --allow-far)" if far else ""
            print(f"| {aoi}, {str(date)[:10]}{flag} | {mode} | {mae:.4f} | {b} | {corr:.3f} | {a['consistency_mae']:.4f} | {tb} | "
                  f"{a['consistency_sam_deg']:.2f} | {a['consistency_shift_px']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
