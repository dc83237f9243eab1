"""The read cache: loaded artifacts served from memory only while no commit has touched them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import stliif.store
from stliif.store import ArtifactStore
from stliif.store_cache import ReadCache


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> ReadCache:
    fresh = ReadCache(1 << 30)
    monkeypatch.setattr(stliif.store, "read_cache", fresh)
    return fresh


def _ds(value: float, n: int = 4) -> xr.Dataset:
    data = np.full((2, n, n), value, dtype=np.float32)
    return xr.Dataset({"v": (("time", "y", "x"), data)}, attrs={"note": f"value {value}"})


def _commit(store: ArtifactStore, path: str, value: float, *, force: bool = True) -> None:
    store.commit({path: _ds(value)}, stage="test", params={"path": path}, force=force)


def test_hit_is_a_copy_of_the_uncached_read(tmp_path: Path, cache: ReadCache) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    _commit(store, "raw/a", 1.0)
    first = store.read("raw/a", load=True, cache=True)
    assert (cache.hits, cache.misses) == (0, 1)
    first["v"].values[:] = -5.0  # the caller's copy; the cache keeps its own
    first.attrs["note"] = "changed"
    again = store.read("raw/a", load=True, cache=True)
    assert (cache.hits, cache.misses) == (1, 1)
    xr.testing.assert_identical(again, store.read("raw/a", load=True))
    assert float(again["v"].max()) == 1.0 and again.attrs["note"] == "value 1.0"
    store.read("raw/a", load=True)  # without cache=True: neither asked nor counted
    assert (cache.hits, cache.misses) == (1, 1)


def test_commits_elsewhere_keep_the_entry(tmp_path: Path, cache: ReadCache) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    _commit(store, "raw/a", 1.0)
    store.read("raw/a", load=True, cache=True)
    _commit(store, "raw/b", 2.0)
    _commit(store, "raw/ab", 3.0)  # a name that starts with the cached one's
    assert float(store.read("raw/a", load=True, cache=True)["v"].max()) == 1.0
    assert cache.hits == 1


def test_a_rewrite_by_another_writer_is_never_served_stale(tmp_path: Path, cache: ReadCache) -> None:
    """Another process (here another store object) rewrites the artifact under the same run key
    (``force``) with other values: the next cached read gives the new values."""
    store = ArtifactStore.open(str(tmp_path / "s"))
    _commit(store, "raw/a", 1.0)
    assert float(store.read("raw/a", load=True, cache=True)["v"].max()) == 1.0
    other = ArtifactStore.open(str(tmp_path / "s"))
    other.commit({"raw/a": _ds(7.0)}, stage="test", params={"path": "raw/a"}, force=True)
    assert store.version("raw/a") == other.version("raw/a")  # the same run key, other content
    assert float(store.read("raw/a", load=True, cache=True)["v"].max()) == 7.0
    assert cache.hits == 0
    assert float(store.read("raw/a", load=True, cache=True)["v"].max()) == 7.0
    assert cache.hits == 1


def test_an_older_ref_and_a_rebuilt_store_are_misses(tmp_path: Path, cache: ReadCache) -> None:
    store = ArtifactStore.open(str(tmp_path / "s"))
    _commit(store, "raw/a", 1.0)
    old = store.snapshot_id()
    _commit(store, "raw/a", 2.0)
    assert float(store.read("raw/a", load=True, cache=True)["v"].max()) == 2.0
    assert float(store.read("raw/a", ref=old, load=True, cache=True)["v"].max()) == 1.0  # not a descendant
    # The store deleted and rebuilt at the same path, the same artifact path, other values.
    shutil.rmtree(tmp_path / "s")
    rebuilt = ArtifactStore.open(str(tmp_path / "s"))
    _commit(rebuilt, "raw/a", 9.0)
    assert float(rebuilt.read("raw/a", load=True, cache=True)["v"].max()) == 9.0
    assert cache.hits == 0


def test_the_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = ReadCache(2 * _ds(0.0).nbytes)
    monkeypatch.setattr(stliif.store, "read_cache", small)
    store = ArtifactStore.open(str(tmp_path / "s"))
    for name in "abc":
        _commit(store, f"raw/{name}", 1.0)
        store.read(f"raw/{name}", load=True, cache=True)
    store.read("raw/a", load=True, cache=True)  # the least recently used: gone
    store.read("raw/c", load=True, cache=True)
    assert (small.hits, small.misses) == (1, 4)
    off = ReadCache(0)
    monkeypatch.setattr(stliif.store, "read_cache", off)
    store.read("raw/c", load=True, cache=True)
    store.read("raw/c", load=True, cache=True)
    assert off.hits == 0


def test_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stliif.store_cache import _max_bytes

    monkeypatch.setenv("STLIIF_READ_CACHE_MB", "5")
    assert _max_bytes() == 5 * 2**20
    monkeypatch.setenv("STLIIF_READ_CACHE_MB", "0")
    assert _max_bytes() == 0
    monkeypatch.delenv("STLIIF_READ_CACHE_MB")
    assert 0 < _max_bytes() <= 2 * 2**30
