"""Import of a clipped L1C product the size of a city: 15 x 17 km, 4 bands at 10 m.

Usage::

    PYTHONPATH=. .venv/bin/python bench/import_safe.py [--zip]

Writes the product with the SAFE fixture generator (tests/fixtures/safe/make_safe.py: real layout,
lossless JPEG 2000 in 1024 px tiles), then times :func:`stliif.ingest.run_import` into a fresh
local store (the library call, without the Prefect flow or the command's server) and checks
the values read back against the written DN.
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

import numpy as np  # noqa: E402

from stliif.config import ImportSpec, StoreSpec  # noqa: E402
from stliif.ingest import run_import  # noqa: E402
from stliif.store import ArtifactStore  # noqa: E402
from tests.fixtures.safe.make_safe import expected_dn, make_safe  # noqa: E402

SIZE_M = (15_000, 17_040)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", action="store_true", help="Import the product as a .zip.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        product = make_safe(Path(tmp), level="L1C", bands=("B02", "B03", "B04", "B08"), zipped=args.zip,
                            size_m=SIZE_M)
        t1 = time.perf_counter()
        store = ArtifactStore.open(StoreSpec(uri=f"{tmp}/store"))
        result = run_import(store, ImportSpec(source=str(product), aoi="city", quicklooks=None))
        t2 = time.perf_counter()
        cube = store.read("raw/city", load=True)
        dn = expected_dn("B04", size_m=SIZE_M)
        refl = cube["reflectance"].sel(band="B04").values[0]
        want = np.where(dn == 0, np.nan, dn.astype(np.float32) * np.float32(1e-4) - np.float32(0.1))
        same = bool(np.allclose(refl, want, equal_nan=True))
        print(f"cores {os.cpu_count()}, product {'zip' if args.zip else 'folder'} {cube.sizes['x']}x{cube.sizes['y']} px, "
              f"4 bands: write {t1 - t0:.1f} s, run_import {t2 - t1:.1f} s ({result.status}), values equal: {same}")


if __name__ == "__main__":
    main()
