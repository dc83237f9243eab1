"""The store's batched write and read paths give what xarray's own writes and reads give, to the byte."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from icechunk.xarray import to_icechunk
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from stliif.sources.worldstrat import list_aois, read_aoi
from stliif.store import PACK_ENCODING, VERSION_ATTR, ArtifactStore
from stliif.store_codec import encoded as _encoded


def _keys(store: ArtifactStore, session, path: str) -> dict[str, bytes]:
    """Every key under ``path`` (relative to it) and its bytes."""
    src, proto = session.store, default_buffer_prototype()

    async def get() -> dict[str, bytes]:
        keys = [k async for k in src.list_prefix(f"{path}/")]
        values = await asyncio.gather(*(src.get(k, prototype=proto) for k in keys))
        return {k[len(path) + 1:]: v.to_bytes() for k, v in zip(keys, values, strict=True)}

    return sync(get())


def _cube() -> xr.Dataset:
    rng = np.random.default_rng(3)
    dn = rng.integers(0, 12000, (3, 2, 6, 5)).astype(np.uint16)
    ref = dn.astype(np.float32) * np.float32(1e-4)
    ref[dn == 0] = np.nan
    ds = xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), ref),
            "clm": (("time", "y", "x"), rng.integers(0, 2, (3, 6, 5)).astype(np.uint8)),
            "empty": (("time", "y", "x"), np.zeros((3, 6, 5), np.uint8)),  # chunks of fill: no key
        },
        coords={
            "time": np.array(["2020-01-01", "2020-01-06", "2020-02-01"], dtype="datetime64[ns]"),
            "band": ["B02", "B03"], "y": np.arange(6.0), "x": np.arange(5.0),
            "cloud_cover": ("time", np.array([1.5, np.nan, 3.0], np.float32)),
        },
        attrs={"aoi": "a", "bounds": [np.float64(1.0), 2.0], "n": np.int64(3)},
    )
    ds["reflectance"].attrs["nodata"] = "NaN"
    ds["reflectance"].encoding[PACK_ENCODING] = {"dtype": "uint16", "scale_factor": 1e-4, "fill": 0}
    return ds.rio.write_crs("EPSG:4326")


@pytest.mark.parametrize("chunks", [{}, {"y": 4, "x": 2}])
def test_write_gives_the_keys_and_bytes_to_icechunk_gives(tmp_path: Path, chunks: dict[str, int]) -> None:
    """Whole and edge chunks (padded with the fill value), chunks of fill value (no key), NaN."""
    ds = _cube()
    nan = np.full((3, 6, 5), np.nan, np.float32)
    nan[1, 5, 4] = -0.0  # one chunk holds a value; the others are all fill value
    ds["nan"] = (("time", "y", "x"), nan)
    ds["count"] = (("y", "x"), np.arange(30, dtype=np.int32).reshape(6, 5))
    store = ArtifactStore.open(str(tmp_path / "s"))
    session = store.repo.writable_session("main")
    attrs = {VERSION_ATTR: "k", "stliif:stage": "import"}
    to_icechunk(_encoded(ds, attrs, chunks), session, group="old/a", mode="w")
    store._write(session, "raw/a", ds, "k", "import", chunks)
    old, new = _keys(store, session, "old/a"), _keys(store, session, "raw/a")
    assert "empty/c/0/0/0" not in new and "reflectance/c/0/0/0/0" in new
    assert ("nan/c/1/1/2" if chunks else "nan/c/1/0/0") in new and "nan/c/0/0/0" not in new
    assert sorted(new) == sorted(old)
    assert all(new[k] == old[k] for k in old), [k for k in old if new[k] != old[k]]
    assert zarr.open_group(session.store, path="raw", mode="r").attrs.asdict() == {}


def test_rewrite_replaces_the_group_and_keeps_parents_and_siblings(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    ds = _cube()
    store.commit({"raw/a": ds, "raw/b": ds}, stage="import", params={})
    root_attrs = zarr.open_group(store._session(None).store, mode="r").attrs.asdict()
    smaller = ds.drop_vars("clm").isel(time=[0])
    store.commit({"raw/a": smaller}, stage="import", params={"v": 2})
    a, b = store.read("raw/a", load=True), store.read("raw/b", load=True)
    assert "clm" not in a and a.sizes["time"] == 1 and "clm" in b and b.sizes["time"] == 3
    assert zarr.open_group(store._session(None).store, mode="r").attrs.asdict() == root_attrs


def test_loaded_read_is_the_lazy_read(tmp_path: Path) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"raw/a": _cube()}, stage="import", params={})
    loaded, lazy = store.read("raw/a", load=True), store.read("raw/a").load()
    xr.testing.assert_identical(loaded, lazy)
    assert loaded["reflectance"].dtype == np.float32 and loaded.rio.crs == lazy.rio.crs
    with pytest.raises(Exception, match="no artifact"):
        store.read("raw/missing", load=True)


def test_dask_backed_datasets_stream_to_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lazy dataset (a tiled render) is not gathered in memory: it goes chunk by chunk through
    to_icechunk, and reads back as the in-memory write of the same values does."""
    import stliif.store as store_mod

    ds = _cube().drop_vars("reflectance")
    store = ArtifactStore.open(str(tmp_path / "s"))
    store.commit({"raw/eager": ds}, stage="import", params={})
    calls: list[str] = []
    monkeypatch.setattr(store_mod, "put_group", lambda dst, src, path: calls.append(path))
    store.commit({"raw/lazy": ds.chunk({"time": 1})}, stage="import", params={})
    assert calls == []
    xr.testing.assert_identical(store.read("raw/lazy", load=True), store.read("raw/eager", load=True))


@pytest.mark.integration
def test_real_aoi_reads_as_xarray_reads_the_old_write(worldstrat: Path, tmp_path: Path) -> None:
    """A real AOI written by to_icechunk (the code before issue 20's batched writes, Zarr's default
    compressor) and by the store: both read back identical, and identical to the source."""
    aoi = list_aois(worldstrat)[0]
    lr, _ = read_aoi(worldstrat, aoi)
    store = ArtifactStore.open(str(tmp_path / "s"))
    session = store.repo.writable_session("main")
    old = _encoded(lr, {VERSION_ATTR: "k", "stliif:stage": "import"}, {})
    for var in old.variables.values():
        var.encoding.pop("compressors", None)
    to_icechunk(old, session, group=f"raw/old-{aoi}", mode="w")
    store._write(session, f"raw/{aoi}", lr, "k", "import", {})
    session.commit("both")
    a, b = store.read(f"raw/old-{aoi}", load=True), store.read(f"raw/{aoi}", load=True)
    xr.testing.assert_identical(a, b)
    for var in lr.data_vars:
        assert np.array_equal(b[var].values.view(np.uint8), lr[var].values.view(np.uint8)), var


@pytest.mark.integration
def test_real_aoi_writes_the_keys_and_bytes_xarray_writes(worldstrat: Path, tmp_path: Path) -> None:
    """The store's own writer (one batch of writes per phase) gives every key and byte that
    xarray's ``to_zarr`` (through ``to_icechunk``) gives for a real AOI's LR cube and HR images."""
    aoi = list_aois(worldstrat)[0]
    lr, hr = read_aoi(worldstrat, aoi)
    store = ArtifactStore.open(str(tmp_path / "s"))
    session = store.repo.writable_session("main")
    attrs = {VERSION_ATTR: "k", "stliif:stage": "import"}
    for name, ds in {"raw": lr, "pan": hr.pan.to_dataset(), "rgbn": hr.rgbn.to_dataset()}.items():
        to_icechunk(_encoded(ds, attrs, {}), session, group=f"old/{name}", mode="w")
        store._write(session, f"new/{name}", ds, "k", "import", {})
        old, new = _keys(store, session, f"old/{name}"), _keys(store, session, f"new/{name}")
        assert sorted(new) == sorted(old) and len(new) > 3, name
        assert all(new[k] == old[k] for k in old), [k for k in old if new[k] != old[k]]
