"""Compact storage: reflectance as the source's uint16 DN with a CF scale factor, read back to the bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from stliif.sources.worldstrat import list_aois, read_aoi
from stliif.stages import run_stage
from stliif.store import PACK_ENCODING, ArtifactStore

SCALE = float(np.float32(1e-4))


def _cube(dn: np.ndarray, *, pack: dict | None = None) -> xr.Dataset:
    ref = dn.astype(np.float32) * np.float32(SCALE)
    ref[dn == 0] = np.nan
    times = np.array(["2020-01-01", "2020-01-06"], dtype="datetime64[ns]")
    ds = xr.Dataset({"reflectance": (("time", "band", "y", "x"), ref)}, coords={"time": times})
    ds["reflectance"].attrs["nodata"] = "NaN"
    ds["reflectance"].encoding[PACK_ENCODING] = pack or {"dtype": "uint16", "scale_factor": SCALE, "fill": 0}
    return ds


def _stored(store: ArtifactStore, path: str, var: str) -> zarr.Array:
    return zarr.open_group(store._session(None).store, path=path, mode="r")[var]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).view(np.uint32)


def test_packed_reflectance_reads_back_to_the_bit(tmp_path: Path) -> None:
    dn = np.random.default_rng(0).integers(0, 12000, (2, 3, 5, 4)).astype(np.uint16)
    ds = _cube(dn)
    store = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"raw/a": ds}, stage="import", params={})
    arr = _stored(store, "raw/a", "reflectance")
    assert arr.dtype == np.uint16 and arr.attrs["scale_factor"] == SCALE  # CF, as the source has it
    assert arr.chunks == (1, 3, 5, 4)  # one chunk per date, as the float cubes
    assert np.array_equal(arr[:], dn)
    for load in (True, False):
        back = store.read("raw/a", load=load)["reflectance"]
        assert back.dtype == np.float32 and back.attrs == {"nodata": "NaN"}
        assert np.array_equal(_bits(back.values), _bits(ds["reflectance"].values))  # NaN where DN 0 too


def test_values_that_do_not_pack_losslessly_stay_float(tmp_path: Path) -> None:
    ds = _cube(np.full((2, 1, 2, 2), 7, np.uint16))
    ds["reflectance"][0, 0, 0, 0] = 0.123456  # not a DN x 1e-4
    store = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"raw/a": ds}, stage="import", params={})
    assert _stored(store, "raw/a", "reflectance").dtype == np.float32
    assert np.array_equal(_bits(store.read("raw/a", load=True)["reflectance"].values), _bits(ds["reflectance"].values))


def test_old_float_stores_still_read(tmp_path: Path) -> None:
    ds = _cube(np.arange(1, 17, dtype=np.uint16).reshape(2, 2, 2, 2))
    del ds["reflectance"].encoding[PACK_ENCODING]  # as every cube was written before packing
    store = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"raw/a": ds}, stage="import", params={})
    assert _stored(store, "raw/a", "reflectance").dtype == np.float32
    back = store.read("raw/a", load=True)["reflectance"]
    assert back.dtype == np.float32 and np.array_equal(_bits(back.values), _bits(ds["reflectance"].values))


@pytest.mark.integration
def test_real_aois_import_packed_and_identical(worldstrat: Path, tmp_path: Path) -> None:
    """Every AOI of the shared subset: stored as uint16, read back as read_aoi gives it, to the bit."""
    store = ArtifactStore.open(str(tmp_path / "s"))
    for aoi in list_aois(worldstrat):
        lr, _ = read_aoi(worldstrat, aoi)
        run_stage(store, "import", aoi, data=worldstrat)
        assert _stored(store, f"raw/{aoi}", "reflectance").dtype == np.uint16, aoi
        back = store.read(f"raw/{aoi}", load=True)
        for var in lr.data_vars:
            assert back[var].dtype == lr[var].dtype and back[var].attrs == lr[var].attrs, (aoi, var)
            assert np.array_equal(back[var].values.view(np.uint8), lr[var].values.view(np.uint8)), (aoi, var)
