"""A city from local files, as a new user brings it: a clipped L1C product of 15 x 17 km (4 bands
at 10 m) imported, masked and cut into 10 district crops, then one district rendered at x4.

Usage::

    PYTHONPATH=. .venv/bin/python bench/local_city.py [--model models/record]

The product is written by the SAFE fixture generator (tests/fixtures/safe/make_safe.py: real
layout, JPEG 2000 band files), the districts as a zipped 10-feature shapefile (a 2 x 5 grid over
the product, non-ASCII names, :func:`stliif.testing.districts_zip`). Timed with the library calls the commands run (no Prefect server):
``run_import``, the ``mask`` stage, ``run_crop(each=...)``, ``run_render`` of one district.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import rasterio  # noqa: E402

from stliif.config import ImportSpec, StoreSpec  # noqa: E402
from stliif.ingest import run_import  # noqa: E402
from stliif.render import run_render  # noqa: E402
from stliif.stages import run_crop, run_stage  # noqa: E402
from stliif.store import ArtifactStore  # noqa: E402
from stliif.testing import districts_zip  # noqa: E402
from tests.fixtures.safe.make_safe import make_safe  # noqa: E402

SIZE_M = (15_000, 17_040)
NAMES = ["Ciutat Vella", "Eixample", "Sants-Montjuïc", "Les Corts", "Sarrià-Sant Gervasi",
         "Gràcia", "Horta-Guinardó", "Nou Barris", "Sant Andreu", "Sant Martí"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(REPO / "models" / "record"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        product = make_safe(tmp_path, level="L1C", bands=("B02", "B03", "B04", "B08"), size_m=SIZE_M)
        store = ArtifactStore.open(StoreSpec(uri=f"{tmp}/store"))
        t0 = time.perf_counter()
        imp = run_import(store, ImportSpec(source=str(product), aoi="city", quicklooks=None))
        t1 = time.perf_counter()
        mask = run_stage(store, "mask", "city", data=tmp)
        t2 = time.perf_counter()
        cube = store.read("raw/city")
        zpath = districts_zip(cube.rio.bounds(), str(cube.rio.crs), NAMES, tmp_path, inset=50)
        t3 = time.perf_counter()
        crops = run_crop(store, "raw/city", "districts", polygon=str(zpath), each="NAME")
        t4 = time.perf_counter()
        aoi = "crop/raw/city/districts/gracia"
        day = str(cube["time"].values[0])[:10]
        rendered = run_render(store, aoi, args.model, date=day, scale=4, out_dir=tmp_path / "out")
        t5 = time.perf_counter()
        cog = next(p for p in rendered["files"] if str(p).endswith(".tif"))
        with rasterio.open(cog) as src:
            desc = f"{src.width}x{src.height} px, {src.crs}, nodata {src.nodata}"
        print(f"cores {os.cpu_count()}, product {cube.sizes['x']}x{cube.sizes['y']} px, 4 bands, L1C")
        print(f"import {t1 - t0:.1f} s ({imp.status}), mask {t2 - t1:.1f} s ({mask.status}), "
              f"10 district crops {t4 - t3:.1f} s ({len(crops.artifacts)} committed): "
              f"total {t1 - t0 + t2 - t1 + t4 - t3:.1f} s")
        print(f"render {aoi} at x4 on {day}: {t5 - t4:.1f} s, COG {desc}")


if __name__ == "__main__":
    main()
