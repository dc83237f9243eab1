"""Four-band product renders of a checkpoint (default: the checkpoint of record) at x4, each test
AOI at its HR date (docs/results.md, "Four bands"): consistency with the inputs per band and the
NDVI check (block-mean NDVI of the render against the inputs'), and where the NIR comes from.

Usage: PYTHONPATH=. .venv/bin/python bench/four_bands.py /path/to/worldstrat-subset [CHECKPOINT]
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from stliif.consistency import ndvi
from stliif.cubes import read_cube
from stliif.evaluation.paper import PAPER_TEST_AOIS, load_paper_dates
from stliif.models.baselines import blend_in_time
from stliif.render import run_render
from stliif.stages import run_stage
from stliif.store import ArtifactStore

data = Path(sys.argv[1])
model = sys.argv[2] if len(sys.argv) > 2 else "models/record"
with tempfile.TemporaryDirectory() as tmp:
    st = ArtifactStore.open(str(Path(tmp) / "store"))
    print("| AOI, date | mean abs error | bias R / G / B / NIR | input NDVI (mean) | NDVI mean abs error | NIR |")
    print("|---|---|---|---|---|---|")
    for aoi in PAPER_TEST_AOIS:
        for stage in ("import", "mask"):
            run_stage(st, stage, aoi, data=str(data))
        date = str(load_paper_dates(data, aoi)[1])[:10]
        res = run_render(st, aoi, model, date=date, scale=4, out_dir=Path(tmp) / "out",
                         allow_far=aoi == "UNHCR-7977")
        a = res["attrs"]
        cube = read_cube(st, aoi, load=True)
        days = [str(t)[:10] for t in cube["time"].values]
        frames = cube["reflectance"].isel(time=[days.index(d) for d in a["revisits"]]).sel(band=["B04", "B08"])
        lr = blend_in_time(frames.transpose("time", "y", "x", "band").values,
                           np.array(a["revisits"], dtype="datetime64[s]"), np.datetime64(date))
        bias = " / ".join(f"{b:+.5f}" for b in a["consistency_bias"])
        nd = float(np.nanmean(ndvi(lr[..., 0], lr[..., 1])))
        print(f"| {aoi}, {date} | {a['consistency_mae']:.5f} | {bias} | {nd:.3f} | {a['consistency_ndvi_mae']:.4f} | {'model' if a['nir_source'] == 'model' else 'inputs'} |",
              flush=True)
