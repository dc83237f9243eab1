"""WorldStrat reader on the shared real data, and its errors on broken copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from stliif.errors import DataAccessError, InvalidInputError
from stliif.sources.worldstrat import (
    BANDS,
    find_aoi_files,
    list_aois,
    read_aoi,
    read_metadata,
    source_fingerprint,
)


def test_lists_the_31_aois(worldstrat: Path) -> None:
    aois = list_aois(worldstrat)
    assert len(aois) == 31
    assert "Amnesty_POI-13-1-1" in aois and "UNHCR-THAs001547" in aois


def test_amnesty_names_with_spaces_and_no_scl(worldstrat: Path) -> None:
    files = find_aoi_files(worldstrat, "Amnesty_POI-13-1-1")
    assert [r.n for r in files.revisits] == list(range(1, 9))
    assert " " in files.revisits[0].masks["CLM"].name  # real name kept, found via normalisation
    assert "_" in files.revisits[0].data.name
    assert all(r.masks["SCL"] is None for r in files.revisits)
    lr, hr = read_aoi(worldstrat, "Amnesty_POI-13-1-1")
    assert "scl" not in lr and "clm" in lr
    assert lr.attrs["hr_date"] == "2020-11-11"


def test_landcover_cube_dims_dates_and_reflectance(worldstrat: Path) -> None:
    lr, hr = read_aoi(worldstrat, "Landcover-770156")
    assert lr["reflectance"].dims == ("time", "band", "y", "x")
    assert lr.sizes["time"] == 16 and list(lr["band"].values) == list(BANDS)
    assert np.all(np.diff(lr["time"].values.astype("int64")) >= 0), "sorted by date"
    assert sorted(lr["revisit"].values.tolist()) == list(range(1, 17))
    # Reflectance is DN * 1e-4: compare one pixel with the raw file.
    n = int(lr["revisit"].values[0])
    path = find_aoi_files(worldstrat, "Landcover-770156").revisits[n - 1].data
    with rasterio.open(path) as src:
        dn = src.read(4, window=((10, 11), (20, 21)))[0, 0]
    assert lr["reflectance"].sel(band="B04").values[0, 10, 20] == pytest.approx(dn * 1e-4, rel=1e-6)
    assert lr.attrs["IPCC"] and isinstance(lr.attrs["bounds"], list)
    # HR georeferenced on the LR footprint.
    assert hr.pan.shape == (1054, 1054) and hr.rgbn.shape == (4, 263, 263)
    assert np.allclose(hr.pan.rio.bounds(), lr.rio.bounds())
    assert hr.rgbn.rio.crs.to_epsg() == 4326


def test_unhcr_7977_hr_date_far_before_revisits(worldstrat: Path) -> None:
    lr, _ = read_aoi(worldstrat, "UNHCR-7977")
    gap = (lr["time"].values.min() - np.datetime64(lr.attrs["hr_date"])) / np.timedelta64(1, "D")
    assert gap > 800


def test_metadata_dialects(worldstrat: Path) -> None:
    a = read_metadata(find_aoi_files(worldstrat, "Amnesty_POI-6-3-3").revisits[0].metadata)
    b = read_metadata(find_aoi_files(worldstrat, "Landcover-14956").revisits[0].metadata)
    for m in (a, b):
        assert {"date", "hr_date", "delta_days", "cloud_cover"} <= set(m)
    assert "lat" in b and "lat" not in a


def test_float32_release_encoding_is_accepted(small_dataset: Path) -> None:
    files = find_aoi_files(small_dataset, "Landcover-14956")
    before, _ = read_aoi(small_dataset, "Landcover-14956")
    for r in files.revisits:  # rewrite as the release stores it: float32 reflectance
        with rasterio.open(r.data) as src:
            data, profile = src.read().astype(np.float32) * 1e-4, src.profile
        profile.update(dtype="float32", nodata=None)
        with rasterio.open(r.data, "w", **profile) as dst:
            dst.write(data)
    after, _ = read_aoi(small_dataset, "Landcover-14956")
    assert after["reflectance"].dtype == np.float32
    np.testing.assert_allclose(after["reflectance"].values, before["reflectance"].values, rtol=1e-6)


def test_fingerprint_changes_when_a_file_changes(small_dataset: Path) -> None:
    files = find_aoi_files(small_dataset, "Landcover-14956")
    before = source_fingerprint(files)
    assert source_fingerprint(find_aoi_files(small_dataset, "Landcover-14956")) == before
    meta = files.revisits[0].metadata
    meta.write_text(meta.read_text() + " ")
    assert source_fingerprint(find_aoi_files(small_dataset, "Landcover-14956")) != before


def test_missing_file_is_named(small_dataset: Path) -> None:
    files = find_aoi_files(small_dataset, "Landcover-14956")
    files.revisits[2].masks["CLM"].unlink()
    with pytest.raises(DataAccessError, match="Landcover-14956-3-CLM.tiff"):
        find_aoi_files(small_dataset, "Landcover-14956")


def test_corrupted_raster_is_named(small_dataset: Path) -> None:
    path = find_aoi_files(small_dataset, "Landcover-14956").revisits[1].data
    path.write_bytes(path.read_bytes()[:2000])  # truncated
    with pytest.raises(DataAccessError, match="Landcover-14956-2-L2A_data.tiff"):
        read_aoi(small_dataset, "Landcover-14956")


def test_unreadable_metadata_is_named(small_dataset: Path) -> None:
    meta = find_aoi_files(small_dataset, "Amnesty_POI-13-1-1").revisits[0].metadata
    meta.write_text("{not json")
    with pytest.raises(DataAccessError, match="unreadable metadata"):
        read_aoi(small_dataset, "Amnesty_POI-13-1-1")


def test_empty_aoi_folder_and_bad_names(small_dataset: Path) -> None:
    shutil.rmtree(small_dataset / "lr_dataset/Landcover-14956/L2A")
    (small_dataset / "lr_dataset/Landcover-14956/L2A").mkdir()
    with pytest.raises(DataAccessError, match="no '<AOI>-<n>-L2A_data.tiff'"):
        find_aoi_files(small_dataset, "Landcover-14956")
    with pytest.raises(InvalidInputError, match="unknown AOI"):
        find_aoi_files(small_dataset, "Nowhere-1")
    with pytest.raises(InvalidInputError):
        find_aoi_files(small_dataset, "../etc")
    with pytest.raises(InvalidInputError, match="not a WorldStrat dataset"):
        list_aois(small_dataset / "lr_dataset")
