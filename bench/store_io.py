"""Benchmark: the store's write and read paths against xarray's own, alternated in one process.

usage: .venv/bin/python bench/store_io.py [--data PATH] [--aoi A ...] [--reps N]

For real artifacts of a few AOIs (``raw/<aoi>``, ``hr/<aoi>/pan``, ``pansharpened/<aoi>``), each
repetition times, one after the other (so other jobs on shared cores weigh on both alike):
- write: ``to_icechunk`` of the encoded dataset with Zarr's default compressor (zstd level 3:
  the code before issue 20's I/O work) vs :meth:`ArtifactStore._write` (written into memory in
  a few batches of writes, copied to the session at once, the store's compressor);
- read: ``xr.open_zarr`` on the session then ``load`` (as before) vs ``ArtifactStore.read(load=True)``
  (every key fetched at once, decoded from memory).
Wall and CPU (this process) milliseconds per artifact, and stored bytes, are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xarray as xr
from icechunk.xarray import to_icechunk

from stliif.config import default_data_root
from stliif.preprocess.pansharpen import pansharpen
from stliif.sources.worldstrat import read_aoi, resolve_aois
from stliif.store import PACKED_ATTR, VERSION_ATTR, ArtifactStore
from stliif.store_codec import encoded as _encoded
from stliif.store_codec import unpack as _unpack


def _old_read(store: ArtifactStore, path: str) -> xr.Dataset:
    """The read before issue 20's I/O work (``ArtifactStore.read(load=True)`` at ff00e6f)."""
    session, group = store._group(path, None)
    packed = [name for name, arr in group.arrays() if PACKED_ATTR in arr.attrs]
    ds = xr.open_zarr(session.store, group=path, consolidated=False, decode_coords="all", chunks=None,
                      mask_and_scale=dict.fromkeys(packed, False) if packed else True)
    for name in packed:
        ds[name] = _unpack(ds[name])
    return ds.load()


def _old_write(session: Any, path: str, ds: xr.Dataset, attrs: dict[str, str]) -> None:
    """The write before issue 20's I/O work: the same encoding, Zarr's default compressor (zstd
    level 3), ``to_icechunk`` (one round trip to the session per array, attribute and chunk)."""
    enc = _encoded(ds, attrs, {})
    for var in enc.variables.values():
        var.encoding.pop("compressors", None)
    to_icechunk(enc, session, group=path, mode="w")


def _bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--aoi", action="append")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    aois = resolve_aois(args.data, args.aoi or ["Landcover-31746", "UNHCR-7977", "Amnesty_POI-13-1-1"])
    artifacts: dict[str, xr.Dataset] = {}
    for aoi in aois:
        lr, hr = read_aoi(args.data, aoi)
        artifacts[f"raw/{aoi}"] = lr
        artifacts[f"hr/{aoi}/pan"] = hr.pan.to_dataset()
        artifacts[f"pansharpened/{aoi}"] = pansharpen(hr.pan, hr.rgbn).rename("rgbn").to_dataset(promote_attrs=True)
    print(f"{len(aois)} AOIs, {args.reps} repetitions; load avg {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    attrs = {VERSION_ATTR: "k", "stliif:stage": "bench"}
    times: dict[tuple[str, str, str], list[float]] = {}

    def timed(key: tuple[str, str, str], fn: Any) -> None:
        t, c = time.perf_counter(), time.process_time()
        fn()
        w = times.setdefault(key, [0.0, 0.0])
        w[0] += time.perf_counter() - t
        w[1] += time.process_time() - c

    with tempfile.TemporaryDirectory() as tmp:
        old, new = ArtifactStore.open(f"{tmp}/old"), ArtifactStore.open(f"{tmp}/new")
        for _ in range(args.reps):
            s_old, s_new = old.repo.writable_session("main"), new.repo.writable_session("main")
            for path, ds in artifacts.items():
                kind = path.split("/")[0]
                timed((kind, "write", "before"), lambda: _old_write(s_old, path, ds, attrs))  # noqa: B023
                timed((kind, "write", "after"), lambda: new._write(s_new, path, ds, "k", "bench", {}))  # noqa: B023
            s_old.commit("bench")
            s_new.commit("bench")
            for path in artifacts:
                kind = path.split("/")[0]
                timed((kind, "read", "before"), lambda: _old_read(old, path))  # noqa: B023
                timed((kind, "read", "after"), lambda: new.read(path, load=True))  # noqa: B023
        n = args.reps * len(aois)
        print(f"{'artifact':14s} {'op':6s} {'before wall/CPU ms':>20s} {'after wall/CPU ms':>20s}")
        for kind in dict.fromkeys(p.split("/")[0] for p in artifacts):
            for op in ("write", "read"):
                b, a = times[(kind, op, "before")], times[(kind, op, "after")]
                print(f"{kind:14s} {op:6s} {b[0] / n * 1000:9.0f} / {b[1] / n * 1000:6.0f}     "
                      f"{a[0] / n * 1000:9.0f} / {a[1] / n * 1000:6.0f}")
        print(f"store bytes (last repetition's snapshot and earlier garbage alike): before "
              f"{_bytes(Path(tmp) / 'old') / 1e6:.1f} MB, after {_bytes(Path(tmp) / 'new') / 1e6:.1f} MB")
        print(f"load avg {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
