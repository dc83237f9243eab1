"""A folder of loose band files (GeoTIFF, COG, JPEG 2000) with their dates, into raw/<aoi>."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stliif.config import ImportSpec, StoreSpec
from stliif.errors import InvalidInputError
from stliif.ingest import read_source, run_import, source_kind
from stliif.raw_schema import check_raw
from stliif.store import ArtifactStore
from tests.fixtures.files.make_band_folder import BANDS, DATES, expected_dn, make_band_folder


def _expected(band: str, k: int, offset: float, factor: int = 1) -> np.ndarray:
    dn = expected_dn(band, k)
    if factor > 1:
        dn = np.repeat(np.repeat(dn, factor, 0), factor, 1)
    out = dn.astype(np.float32) * np.float32(1e-4) + np.float32(offset)
    out[dn == 0] = np.nan
    return out


def test_band_folder_import_values_dates_and_provenance(tmp_path: Path) -> None:
    folder = make_band_folder(tmp_path / "bands")
    assert source_kind(str(folder)) == "files"
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    spec = ImportSpec(source=os.path.relpath(folder), aoi="loose", bands=list(BANDS), offset=-0.1, level="L1C",
                      resampling="nearest", quicklooks=None)
    result = run_import(store, spec)
    assert result.status == "committed" and result.dates == [f"{d:%Y-%m-%d}" for d in DATES]
    cube = store.read("raw/loose", load=True)
    check_raw(cube, provenance=True)
    for k in range(2):
        for band in ("B02", "B03", "B08"):
            np.testing.assert_allclose(cube["reflectance"].sel(band=band).values[k], _expected(band, k, -0.1), rtol=1e-6)
        np.testing.assert_allclose(cube["reflectance"].sel(band="B11").values[k], _expected("B11", k, -0.1, 2), rtol=1e-6)
    assert cube["source_kind"].values.tolist() == ["files", "files"]
    assert cube["cloud_mask"].values.tolist() == ["none", "none"]
    assert cube.attrs["processing_level"] == "L1C"


def test_band_folder_bad_input(tmp_path: Path) -> None:
    folder = make_band_folder(tmp_path / "bands")
    with pytest.raises(InvalidInputError, match="declares no scale or offset: give the offset"):
        read_source(str(folder), ["B02"])
    with pytest.raises(InvalidInputError, match="2023-06-01 has no file for band B04"):
        read_source(str(folder), ["B02", "red"], offset=0.0)
    (folder / "2023-06-11" / "B02.tif").rename(folder / "2023-06-11" / "blue.tif")
    (folder / "T31TDF_20230601T103021_B02.tif").rename(folder / "2023-06-11_B02.tif")
    (folder / "2023-06-11" / "blue.tif").replace(folder / "2023-06-11" / "x_blue.tif")
    with pytest.raises(InvalidInputError, match="two files for B02 on 2023-06-11"):
        read_source(str(folder), ["B02"], offset=0.0)
    undated = tmp_path / "undated"
    undated.mkdir()
    (folder / "2023-06-11" / "B03.tif").rename(undated / "B03.tif")
    with pytest.raises(InvalidInputError, match="no band file named with a date and a band"):
        read_source(str(undated), ["B03"], offset=0.0)


def test_a_cube_without_rgb_gets_no_quicklook(tmp_path: Path) -> None:
    from stliif.quicklook import write_quicklooks

    folder = make_band_folder(tmp_path / "bands")
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    run_import(store, ImportSpec(source=str(folder), aoi="nir", bands=["nir", "B11"], offset=0.0, quicklooks=None))
    files = write_quicklooks(store.read("raw/nir", load=True), tmp_path / "ql")
    assert files == {"rgb": [], "clouds": [], "sheet": [], "dem": []} and not (tmp_path / "ql").exists()
