"""A process-wide cache of loaded artifacts that is exact across commits.

The ETL's stages read the same inputs again and again: ``raw/<aoi>`` is read by mask, by subset
(both modes) and by histogram (both modes), ``mask/<aoi>`` by subset and histogram. A stage that
asks for it (``ArtifactStore.read(..., load=True, cache=True)``) gets a copy of what an earlier
read of the same artifact in this process decoded, instead of fetching and decoding it again.

A hit is never stale: an entry remembers the snapshot it was read at, and it is served at another
snapshot only when the repository's own diff between the two (``Repository.diff``: every group,
array and chunk created, updated or deleted by the commits in between) touches nothing at or
under the artifact's path, nor deletes a group above it. A snapshot that is not a descendant of the
entry's (another branch, an older ref, a store rebuilt at the same path) is a miss. Entries are
keyed by the repository's identity and location, and the cache is bounded in bytes
(least recently used out first; ``STLIIF_READ_CACHE_MB``, default an eighth of the memory up
to 2048, 0 turns it off).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable

import icechunk
import xarray as xr

__all__ = ["ReadCache", "read_cache"]

_DIFF_MEMO = 64


class ReadCache:
    """Loaded Datasets keyed by (repository, path), each valid at the snapshot it was read at."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._entries: OrderedDict[tuple[Hashable, str], tuple[str, xr.Dataset, int]] = OrderedDict()
        self._changes: OrderedDict[tuple[Hashable, str, str], frozenset[str] | None] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, repo: icechunk.Repository, key: Hashable, path: str, snapshot: str) -> xr.Dataset | None:
        """A copy of ``path`` as read at ``snapshot``, or ``None`` when not cached (or changed)."""
        with self._lock:
            entry = self._entries.get((key, path))
        if entry is None or not self.max_bytes:
            self.misses += 1
            return None
        read_at, ds, _ = entry
        if read_at != snapshot:
            changed = self._changed(repo, key, read_at, snapshot)
            if changed is None or _touched(path, changed):
                self._drop((key, path))
                self.misses += 1
                return None
        with self._lock:
            if (key, path) in self._entries:  # valid at ``snapshot`` too: later diffs start there
                self._entries[(key, path)] = (snapshot, ds, entry[2])
                self._entries.move_to_end((key, path))
        self.hits += 1
        return ds.copy(deep=True)

    def put(self, key: Hashable, path: str, snapshot: str, ds: xr.Dataset) -> None:
        """Remember a copy of the loaded ``ds``, read at ``snapshot``."""
        size = int(ds.nbytes)
        if size > self.max_bytes:
            return
        copy = ds.copy(deep=True)
        with self._lock:
            old = self._entries.pop((key, path), None)
            self._bytes += size - (old[2] if old else 0)
            self._entries[(key, path)] = (snapshot, copy, size)
            while self._bytes > self.max_bytes:
                _, (_, _, n) = self._entries.popitem(last=False)
                self._bytes -= n

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self._changes.clear()
            self._bytes = 0

    def _drop(self, k: tuple[Hashable, str]) -> None:
        with self._lock:
            old = self._entries.pop(k, None)
            if old:
                self._bytes -= old[2]

    def _changed(self, repo: icechunk.Repository, key: Hashable, old: str, new: str) -> frozenset[str] | None:
        """Every node path the commits from ``old`` to ``new`` touched (``None``: ``new`` does not
        descend from ``old``)."""
        memo = (key, old, new)
        with self._lock:
            if memo in self._changes:
                return self._changes[memo]
        try:
            d = repo.diff(from_snapshot_id=old, to_snapshot_id=new)
        except icechunk.IcechunkError:
            changed = None
        else:
            nodes = frozenset().union(
                d.new_groups, d.new_arrays, d.deleted_arrays, d.updated_groups, d.updated_arrays, d.updated_chunks
            )
            changed = nodes | {g.rstrip("/") + "/" for g in d.deleted_groups}  # "/": deleted with all under it
        with self._lock:
            self._changes[memo] = changed
            while len(self._changes) > _DIFF_MEMO:
                self._changes.popitem(last=False)
        return changed


def _touched(path: str, changed: frozenset[str]) -> bool:
    """Whether a change at any of ``changed`` (absolute node paths; a deleted group's with a
    trailing ``/``) can alter artifact ``path``: the node itself, anything under it, or a group
    above it deleted."""
    node = "/" + path.strip("/")
    return any(
        p.rstrip("/") == node or p.startswith(node + "/") or (p.endswith("/") and node.startswith(p)) for p in changed
    )


def _max_bytes() -> int:
    """``STLIIF_READ_CACHE_MB``, or an eighth of the machine's memory up to 2 GiB: a batch of
    the ETL flow (64 AOIs, ~11 MB of LR cube and masks each) on each of three threads."""
    value = os.environ.get("STLIIF_READ_CACHE_MB")
    if value is not None:
        try:
            return max(0, int(float(value) * 2**20))
        except ValueError:
            pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 * 2**30
    return min(2 * 2**30, memory // 8)


read_cache = ReadCache(_max_bytes())
"""The process's cache, used by :meth:`stliif.store.ArtifactStore.read` with ``cache=True``."""
