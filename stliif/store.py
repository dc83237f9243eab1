"""Versioned artifact store on Icechunk: every stage commits once, with lineage.

Artifacts are Zarr groups (``raw/<aoi>``, ``mask/<aoi>``, ``splits/<name>``, ...) holding either
an xarray Dataset or a JSON document (in the group's attributes). Every artifact carries the
``run key`` of the stage run that wrote it in its attributes (``stliif:version``); downstream run
keys are computed from these versions, so a refresh of one AOI changes only that AOI's keys.

A commit's metadata records: stage, run key, parameter hash, input artifact versions, the
snapshot the inputs were read at, the code version, the run id and the artifacts written.
On local disk one committer at a time holds a file lock (Icechunk local storage can lose
concurrent commits); on S3 Icechunk's conflict detection rebases non-overlapping commits.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import icechunk
import xarray as xr
import zarr
from icechunk.xarray import to_icechunk

import stliif
from stliif.config import StoreSpec
from stliif.errors import InvalidInputError, StoreError, StoreLockTimeout
from stliif.location import check_location
from stliif.names import validate_artifact_path, validate_ref_name
from stliif.store_cache import read_cache
from stliif.store_codec import (
    PACK_ENCODING,
    PACKED_ATTR,
    encoded,
    fetch_group,
    put_group,
    unpack,
    write_group,
)

__all__ = ["PACKED_ATTR", "PACK_ENCODING", "ArtifactStore", "CommitBatch", "CommitInfo", "CommitResult", "run_key"]

VERSION_ATTR = "stliif:version"
JSON_ATTR = "stliif:json"
STORE_ID_ATTR = "stliif:store_id"
_THREAD_LOCK = threading.Lock()


def run_key(stage: str, params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """Content key of a stage run: stage, parameters, input artifact versions, code version
    (:func:`stliif.code_version`: the source's fingerprint, so code edits invalidate it)."""
    doc = {"stage": stage, "params": params, "inputs": dict(inputs), "code": stliif.code_version()}
    blob = json.dumps(doc, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


@dataclass(frozen=True)
class CommitInfo:
    """One snapshot in a branch's history."""

    snapshot_id: str
    message: str
    written_at: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> builtins.list[dict[str, Any]]:
        """The stage runs this commit holds: a batch commit's ``runs``, or the commit's own one
        (none for the store's creation or a commit of parent groups)."""
        if self.metadata.get("runs"):
            return [dict(r) for r in self.metadata["runs"]]
        if "run_key" in self.metadata:
            return [{k: self.metadata.get(k) for k in ("run_key", "params", "inputs", "artifacts")}]
        return []

    def run_of(self, path: str) -> dict[str, Any] | None:
        """The run that wrote ``path`` in this commit (``run_key``, ``params``, ``inputs``,
        ``artifacts``): its entry of a batch commit's ``runs``, or the commit's own fields;
        None when the commit did not write ``path``."""
        for run in self.metadata.get("runs") or []:
            if path in (run.get("artifacts") or []):
                return dict(run)
        if path in (self.metadata.get("artifacts") or []):
            return {k: self.metadata.get(k) for k in ("run_key", "params", "inputs", "artifacts")}
        return None


@dataclass(frozen=True)
class CommitResult:
    """Outcome of :meth:`ArtifactStore.commit`: ``created`` is False when the run was a no-op."""

    snapshot_id: str
    run_key: str
    created: bool
    artifacts: tuple[str, ...]


class _FileLock:
    """An exclusive ``flock`` on a file, acquired with a timeout (threads and processes)."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout
        try:
            fh = open(self.path, "a+")  # closed by the with below
        except OSError as err:
            raise StoreError(f"cannot take the commit lock {str(self.path)!r}: {err.strerror}") from err
        with _THREAD_LOCK, fh:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreLockTimeout(
                            f"commit lock {self.path} held by another process for over "
                            f"{self.timeout:.0f} s; retry later or remove a stale lock holder"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _storage(spec: StoreSpec) -> icechunk.Storage:
    """The Icechunk storage of a location that :func:`check_location` accepted."""
    if spec.is_s3:
        parts = urlsplit(spec.uri)
        # Icechunk's AWS client logs its credential-chain warnings to stdout: errors only.
        icechunk.set_logs_filter("error")
        return icechunk.s3_storage(
            bucket=parts.netloc,
            prefix=parts.path.strip("/") or None,
            region=spec.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint_url=spec.endpoint_url,
            allow_http=spec.allow_http,
            force_path_style=spec.endpoint_url is not None,
            from_env=True,
        )
    # One committer at a time is enforced by our lock, so Icechunk's warning about concurrent
    # commits on local storage does not apply.
    icechunk.set_logs_filter("icechunk::storage::object_store=error,icechunk=warn")
    return icechunk.local_filesystem_storage(str(Path(spec.uri).expanduser().resolve()))


class ArtifactStore:
    """A versioned store of stage artifacts on an Icechunk repository.

    Open with :meth:`open`. Read with :meth:`read` / :meth:`read_json` at a branch, tag or
    snapshot id (``ref``); write with :meth:`commit`, which is idempotent per run key.
    """

    def __init__(self, repo: icechunk.Repository, spec: StoreSpec, *, lock_timeout: float = 600.0):
        self.repo, self.spec = repo, spec
        self._sessions: dict[str, icechunk.Session] = {}
        self._versions: dict[tuple[str, str], str | None] = {}  # (snapshot, path) -> version
        self._lock = (
            None
            if spec.is_s3
            else _FileLock(Path(spec.uri).expanduser().resolve() / "stliif.lock", lock_timeout)
        )

    @classmethod
    def open(cls, spec: StoreSpec | str | None = None, *, create: bool = True) -> ArtifactStore:
        """Open (by default creating) the repository described by ``spec`` (or a uri string)."""
        if spec is None:
            spec = StoreSpec()
        elif isinstance(spec, str):
            spec = StoreSpec(uri=spec)
        validate_ref_name(spec.branch)
        check_location(spec, create=create)
        try:
            storage = _storage(spec)
            created = False
            if icechunk.Repository.exists(storage):
                repo = icechunk.Repository.open(storage)
            elif not create:
                raise StoreError(f"no store at {spec.uri!r}: check the path, or run a stage that creates it")
            else:
                repo, created = icechunk.Repository.open_or_create(storage), True
        except icechunk.IcechunkError as err:
            # The message can name the bucket and endpoint, never the credentials.
            raise StoreError(f"cannot open store {spec.uri!r}: {_reason(err)}") from err
        if created:
            _write_identity(repo)
        store = cls(repo, spec)
        if spec.branch not in repo.list_branches():
            main = repo.lookup_branch("main")
            repo.create_branch(spec.branch, main)
        return store

    @functools.cached_property
    def store_id(self) -> str:
        """The repository's own identity: an id written into it when it was created (stores made
        before that have their first snapshot's id). A store deleted and rebuilt at the same
        path has a new one, so nothing keyed on it can outlive the repository it describes."""
        try:
            root = zarr.open_group(self._session("main").store, mode="r")
            value = root.attrs.get(STORE_ID_ATTR)
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
            value = None
        if value:
            return str(value)
        *_, first = self.repo.ancestry(branch="main")
        return str(first.id)

    # -- refs ---------------------------------------------------------------------------------
    def _session(self, ref: str | None) -> icechunk.Session:
        """A read-only session at ``ref``; sessions are cached per snapshot (they are immutable)."""
        ref = ref or self.spec.branch
        try:
            snap = self._lookup(ref)
            if snap not in self._sessions:
                if len(self._sessions) > 8:
                    self._sessions.clear()
                self._sessions[snap] = self.repo.readonly_session(snapshot_id=snap)
            return self._sessions[snap]
        except icechunk.IcechunkError as err:
            raise InvalidInputError(f"unknown branch, tag or snapshot {ref!r}") from err

    def _lookup(self, ref: str) -> str:
        """The snapshot id of ``ref``: a branch, else a tag, else ``ref`` itself (one lookup
        when it is a branch, without listing the branches)."""
        for lookup in (self.repo.lookup_branch, self.repo.lookup_tag):
            try:
                return str(lookup(ref))
            except icechunk.IcechunkError:
                continue
        return ref

    def snapshot_id(self, ref: str | None = None) -> str:
        """Snapshot id that ``ref`` (default: the spec's branch) points at."""
        return self._session(ref).snapshot_id

    def branches(self) -> list[str]:
        """Branch names, sorted."""
        return sorted(self.repo.list_branches())

    def tags(self) -> list[str]:
        """Tag names, sorted."""
        return sorted(self.repo.list_tags())

    def tag(self, name: str, ref: str | None = None) -> str:
        """Tag the snapshot ``ref`` points at; returns its snapshot id."""
        snap = self.snapshot_id(ref)
        self.repo.create_tag(validate_ref_name(name), snap)
        return snap

    def create_branch(self, name: str, ref: str | None = None) -> str:
        """Create branch ``name`` at ``ref``; returns its snapshot id."""
        snap = self.snapshot_id(ref)
        self.repo.create_branch(validate_ref_name(name), snap)
        return snap

    def log(self, ref: str | None = None, *, limit: int | None = None) -> list[CommitInfo]:
        """History of ``ref``, newest first."""
        ref = ref or self.spec.branch
        if ref in self.repo.list_branches():
            it = self.repo.ancestry(branch=ref)
        elif ref in self.repo.list_tags():
            it = self.repo.ancestry(tag=ref)
        else:
            it = self.repo.ancestry(snapshot_id=ref)
        out = []
        for info in it:
            out.append(
                CommitInfo(info.id, info.message, info.written_at.isoformat(), dict(info.metadata))
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    # -- reading ------------------------------------------------------------------------------
    def list(self, prefix: str = "", *, ref: str | None = None) -> list[str]:
        """Artifact paths (groups carrying a version) under ``prefix``, sorted (``[]`` when empty)."""
        try:
            root = zarr.open_group(self._session(ref).store, mode="r")
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
            return []  # a repository with no commit of artifacts yet has no root group
        out: list[str] = []

        def walk(group: zarr.Group, path: str) -> None:
            if VERSION_ATTR in group.attrs:
                out.append(path)
                return
            for name, child in group.groups():
                walk(child, f"{path}/{name}" if path else name)

        try:
            start = root[prefix] if prefix else root
        except KeyError:
            return []
        if isinstance(start, zarr.Group):
            walk(start, prefix.strip("/"))
        return sorted(out)

    def _group(self, path: str, ref: str | None, store: Any = None) -> zarr.Group:
        """The group at ``path`` at ``ref``, opened in ``store`` (default: the session's at ``ref``)."""
        where = self._session(ref).store if store is None else store
        group = _open_group(where, validate_artifact_path(path))
        if group is None:
            raise StoreError(f"no artifact {path!r} at {ref or self.spec.branch!r}")
        return group

    def version(self, path: str, *, ref: str | None = None) -> str | None:
        """Version (run key) of the artifact at ``path``, or None when it does not exist.
        Remembered per snapshot (a snapshot never changes; ``ref`` is resolved every time)."""
        session = self._session(ref)
        key = (session.snapshot_id, validate_artifact_path(path))
        if key not in self._versions:
            if len(self._versions) > 100_000:
                self._versions.clear()
            group = _open_group(session.store, key[1])
            value = None if group is None else group.attrs.get(VERSION_ATTR)
            self._versions[key] = str(value) if value is not None else None
        return self._versions[key]

    def attrs(self, path: str, *, ref: str | None = None) -> dict[str, Any]:
        """The attributes of the artifact at ``path`` (a Dataset's ``attrs``), without opening
        its arrays."""
        group = self._group(path, ref)
        return dict(group.attrs)

    def read(self, path: str, *, ref: str | None = None, load: bool = False, cache: bool = False) -> xr.Dataset:
        """Open the Dataset artifact at ``path`` (lazy, dask-backed unless ``load``).

        With ``load`` every stored key of the artifact is fetched from the repository at once
        (:func:`stliif.store_codec.fetch_group`) and decoded from memory: the same bytes read by
        the same reader, without a round trip to the repository per array and chunk. With
        ``load`` and ``cache`` as well, an artifact this process has read before, and that no
        commit since has touched, is a copy from memory (:mod:`stliif.store_cache`)."""
        session = self._session(ref)
        cached = load and cache
        if cached:
            key = (self.store_id, self.spec.uri)
            hit = read_cache.get(self.repo, key, path, session.snapshot_id)
            if hit is not None:
                return hit
        store: Any = session.store
        if load:  # nothing fetched: an empty store, where _group reports the artifact missing
            fetched = fetch_group(session.store, validate_artifact_path(path))
            store = zarr.storage.MemoryStore() if fetched is None else fetched
        group = self._group(path, ref, store)
        packed = [name for name, arr in group.arrays() if PACKED_ATTR in arr.attrs]
        ds = xr.open_zarr(
            store, group=path, consolidated=False, decode_coords="all",
            chunks=None if load else {}, mask_and_scale=dict.fromkeys(packed, False) if packed else True,
        )
        for name in packed:
            ds[name] = unpack(ds[name])
        if not load:
            return ds
        ds = ds.load()
        if cached:
            read_cache.put(key, path, session.snapshot_id, ds)
        return ds

    def read_json(self, path: str, *, ref: str | None = None) -> Any:
        """The JSON document stored at ``path``."""
        group = self._group(path, ref)
        if JSON_ATTR not in group.attrs:
            raise StoreError(f"artifact {path!r} holds a dataset, not a JSON document")
        return group.attrs[JSON_ATTR]

    # -- writing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._lock is None:
            yield
        else:
            with self._lock.hold():
                yield

    def commit(
        self,
        artifacts: Mapping[str, xr.Dataset | Mapping[str, Any] | builtins.list[Any]],
        *,
        stage: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
        run_id: str | None = None,
        message: str | None = None,
        force: bool = False,
        chunks: Mapping[str, int] | None = None,
    ) -> CommitResult:
        """Write ``artifacts`` (path -> Dataset or JSON document) and commit them once.

        The run key is derived from ``stage``, ``params`` and ``inputs`` (input artifact path ->
        version). When every artifact already carries that key, nothing is written and the
        current snapshot is returned with ``created=False`` (unless ``force``). Datasets are
        stored one chunk per time step, other dimensions whole, except those ``chunks`` sizes
        (e.g. ``{"y": 1024, "x": 1024}``: a large render, one chunk per tile).
        """
        paths = tuple(validate_artifact_path(p) for p in artifacts)
        with self._locked():  # held from the version check to the commit: a same-key writer waits, then finds it done
            run = CommitBatch(self, stage, run_id=run_id, message=message or f"{stage}: {', '.join(paths)}")
            key, wrote = run.add(artifacts, params=params, inputs=inputs, force=force, chunks=chunks)
            if wrote:
                run.commit(lock=False)
        return CommitResult(run.snapshot_id, key, wrote, paths)

    @contextlib.contextmanager
    def batch(self, stage: str, *, run_id: str | None = None, message: str | None = None) -> Iterator[CommitBatch]:
        """A batch of runs of ``stage`` (one per AOI, say) committed together, once, on leaving
        the ``with`` block (see :class:`CommitBatch`); nothing when no run wrote anything, or when
        the block raised (then nothing is committed: re-run)."""
        batch = CommitBatch(self, stage, run_id=run_id, message=message)
        yield batch
        batch.commit()

    def ensure_groups(self, groups: Iterable[str]) -> None:
        """Commit ``groups`` (and their parents) on their own, those missing at the branch's head.

        Batches writing sibling artifacts at once (``mask/<aoi>``) must find their parent group
        (``mask``) there: two sessions that both create it cannot be rebased onto each other
        (Icechunk sees two new nodes at one path).
        """
        parents = sorted({"/".join(g.split("/")[:i]) for g in map(validate_artifact_path, groups)
                          for i in range(1, g.count("/") + 2)})  # fmt: skip
        for _ in range(5):  # another writer may create them meanwhile (S3 has no lock)
            head = self._session(None).store
            missing = [g for g in parents if _open_group(head, g) is None]
            if not missing:
                return
            with self._locked():
                session = self.repo.writable_session(self.spec.branch)
                for group in missing:
                    zarr.open_group(session.store, path=group, mode="a")
                if not session.has_uncommitted_changes:
                    return
                try:
                    session.commit(f"groups: {', '.join(missing)}", metadata={"stage": "groups", "groups": missing},
                                   rebase_with=icechunk.ConflictDetector())  # fmt: skip
                    return
                except (icechunk.ConflictError, icechunk.RebaseFailedError):
                    continue
                except icechunk.IcechunkError as err:
                    raise StoreError(f"creating groups {missing} failed: {_reason(err)}") from err
        raise StoreError(f"creating groups {parents} failed: the branch kept moving")

    @staticmethod
    def _write(session: icechunk.Session, path: str, obj: Any, key: str, stage: str, chunks: Mapping[str, int]) -> None:
        attrs = {VERSION_ATTR: key, "stliif:stage": stage}
        if isinstance(obj, xr.Dataset):
            ds = encoded(obj, attrs, chunks)
            if any(v.chunks is not None for v in ds.variables.values()):
                # dask-backed (a tiled render): streamed chunk by chunk, never whole in memory
                to_icechunk(ds, session, group=path, mode="w")
                return
            # In memory already: written into memory (xarray's encoding, a few batches of writes),
            # then its keys copied to the session at once, as to_icechunk would have written them
            # one by one: faster than either writing straight into the session (docs/benchmarks.md).
            mem = zarr.storage.MemoryStore()
            write_group(mem, path, ds)
            put_group(session.store, mem, path)
        else:
            group = zarr.open_group(session.store, path=path, mode="w")
            group.attrs.update({**attrs, JSON_ATTR: json.loads(json.dumps(obj, default=str))})


class CommitBatch:
    """Runs of one stage written into one writable session and committed once
    (:meth:`ArtifactStore.batch`): the commit count of a stage run does not grow with its AOIs.

    Each run keeps its own run key (in its artifacts' ``stliif:version``) and its lineage: the
    commit's ``runs`` metadata lists every run's key, parameters, inputs and artifacts (a batch of
    one run records them at the top level too, as :meth:`ArtifactStore.commit` does). Chunks are
    written as runs are added, outside the commit lock, which is held only for the commit (a
    branch that moved meanwhile is rebased; overlapping writes fail with :class:`StoreError`).
    """

    def __init__(self, store: ArtifactStore, stage: str, *, run_id: str | None, message: str | None) -> None:
        self.store, self.stage, self.run_id, self.message = store, stage, run_id, message
        self.branch = store.spec.branch
        self.base = store.snapshot_id(self.branch)
        self._session: icechunk.Session | None = None
        self.runs: builtins.list[dict[str, Any]] = []
        self.snapshot_id = self.base

    def add(
        self,
        artifacts: Mapping[str, xr.Dataset | Mapping[str, Any] | builtins.list[Any]],
        *,
        params: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
        force: bool = False,
        chunks: Mapping[str, int] | None = None,
    ) -> tuple[str, bool]:
        """Write one run's ``artifacts`` (as :meth:`ArtifactStore.commit` does) into the batch;
        returns its run key and whether it wrote (False: every artifact carries the key already)."""
        paths = tuple(validate_artifact_path(p) for p in artifacts)
        inputs = dict(inputs or {})
        key = run_key(self.stage, params, inputs)
        if not force and all(self.store.version(p, ref=self.base) == key for p in paths):
            return key, False
        if self._session is None:
            self._session = self.store.repo.writable_session(self.branch)
        for path, obj in artifacts.items():
            try:
                self.store._write(self._session, path, obj, key, self.stage, chunks or {})
            except (icechunk.IcechunkError, OSError) as err:
                raise StoreError(f"writing {path!r} (stage {self.stage!r}) failed, nothing committed: {_reason(err)}") from err
        self.runs.append({"run_key": key, "params": json.loads(json.dumps(params, default=str)),
                          "inputs": inputs, "artifacts": list(paths)})  # fmt: skip
        return key, True

    def commit(self, *, lock: bool = True) -> str:
        """Commit every run added (once); returns the snapshot id (the base one when none wrote).
        ``lock=False``: the caller holds the store's commit lock already."""
        if self._session is None or not self.runs:
            return self.snapshot_id
        session, self._session = self._session, None
        paths = [p for r in self.runs for p in r["artifacts"]]
        metadata: dict[str, Any] = {
            "stage": self.stage, "input_snapshot": self.base, "code_version": stliif.code_version(),
            "run_id": self.run_id or "", "artifacts": paths, "runs": self.runs,
        }
        if len(self.runs) == 1:
            (run,) = self.runs
            metadata.update(run_key=run["run_key"], params=run["params"], inputs=run["inputs"],
                            params_hash=run_key(self.stage, run["params"], {})[:12])  # fmt: skip
        aois = sorted({str(r["params"].get("aoi")) for r in self.runs if "aoi" in r["params"]})
        message = self.message or f"{self.stage}: " + (
            ", ".join(aois) if len(aois) <= 3 else f"{len(aois)} AOIs ({aois[0]} ... {aois[-1]})"
        )
        with self.store._locked() if lock else contextlib.nullcontext():
            try:
                self.snapshot_id = session.commit(message, metadata=metadata, rebase_with=icechunk.ConflictDetector())
            except (icechunk.IcechunkError, icechunk.ConflictError, icechunk.RebaseFailedError) as err:
                raise StoreError(f"commit of stage {self.stage!r} failed: {_reason(err)}") from err
        return self.snapshot_id


def _write_identity(repo: icechunk.Repository) -> None:
    """Commit a new random id in the root group of a repository just created."""
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="a")
    if STORE_ID_ATTR not in root.attrs:
        root.attrs[STORE_ID_ATTR] = uuid.uuid4().hex
        with contextlib.suppress(icechunk.ConflictError):  # another process created it first
            session.commit("store created", metadata={"stage": "create"})


def _reason(err: BaseException) -> str:
    """The root cause of an Icechunk error (its last ``|->`` line), or the error itself."""
    lines = [ln.strip().lstrip("|->x ").strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def _open_group(store: Any, path: str) -> zarr.Group | None:
    """The group at ``path`` in the Zarr ``store``, or None when there is none (the store's
    groups are Zarr v3: looking for v2 metadata too would cost a read per miss)."""
    try:
        return zarr.open_group(store, path=path, mode="r", zarr_format=3)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError, zarr.errors.ContainsArrayError):
        return None
