"""A user's own city end to end through the command line: a local L1C product -> mask -> a crop per
district (a zipped shapefile) -> one district rendered as a COG, checked as QGIS would read it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)

from stliif.store import ArtifactStore
from stliif.testing import districts_zip
from tests.fixtures.safe.make_safe import make_safe

pytestmark = pytest.mark.services  # every command starts its Prefect server

STLIIF = Path(sys.executable).with_name("stliif")
NAMES = ["Sarrià-Sant Gervasi", "Gràcia", "Horta-Guinardó", "Sant Martí"]


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
    assert out.returncode == 0, f"stliif {' '.join(args)}: {out.stderr[-3000:]}"
    return out


def test_local_product_to_district_cog(tmp_path: Path) -> None:
    product = make_safe(tmp_path / "in", level="L1C", bands=("B02", "B03", "B04", "B08"), zipped=True)
    store = str(tmp_path / "store")
    _run(tmp_path, "import", str(product), "--aoi", "city", "--store", store)
    _run(tmp_path, "etl", "--stage", "mask", "--aoi", "city", "--store", store)
    st = ArtifactStore.open(store, create=False)
    cube = st.read("raw/city", load=True)
    assert cube.attrs["processing_level"] == "L1C" and "top-of-atmosphere" in cube.attrs["reflectance_units"]
    assert st.version("mask/city") is not None
    zpath = districts_zip(cube.rio.bounds(), str(cube.rio.crs), NAMES, tmp_path)
    _run(tmp_path, "crop", "raw/city", "districts", "--polygon", str(zpath), "--each", "NAME", "--store", store)
    st = ArtifactStore.open(store, create=False)
    crops = sorted(st.list("crop/raw/city/districts"))
    assert crops == sorted(f"crop/raw/city/districts/{s}" for s in
                           ("sarria-sant-gervasi", "gracia", "horta-guinardo", "sant-marti"))  # fmt: skip
    aoi = "crop/raw/city/districts/gracia"
    day = str(cube["time"].values[0])[:10]
    out = _run(tmp_path, "render", "--aoi", aoi, "--date", day, "--scale", "4", "--model", "median",
               "--min-clear", "0", "--out", str(tmp_path / "out"), "--store", store)
    cog = next((tmp_path / "out").rglob("*.tif"))
    crop = st.read(aoi, load=True)
    with rasterio.open(cog) as src:
        assert src.crs.to_string() == str(cube.rio.crs)
        assert np.allclose(tuple(src.bounds), crop.rio.bounds(), atol=1e-6)
        assert (src.width, src.height) == (4 * crop.sizes["x"], 4 * crop.sizes["y"])
        assert math.isnan(src.nodata)
        data = src.read()
    assert np.isfinite(data).mean() > 0.9  # the district is rendered; only its edge is outside
    assert "at revisit" in out.stdout  # the product's own day: 0 days from it
