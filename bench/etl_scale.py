"""Benchmark: the library ETL over N synthetic AOIs: seconds per AOI and commits per stage run.

usage: .venv/bin/python bench/etl_scale.py [--n 31 250 ...] [--data PATH] [--work DIR] [--per-aoi] [--batch-size N]
       [--per-batch]

The synthetic dataset is made here, under ``--work`` (default: a folder in /tmp, removed at the
end; never in the repository): the shared subset's AOIs replicated round-robin under new names
(``S<i>_<aoi>``), each L2A revisit's DN perturbed by a seeded +-3 (nodata kept), the masks,
metadata and HR images linked. Each N runs import, mask, pansharpen, subset and histogram
(``clean`` mode: ``paper`` needs the study's own AOI names) and the split into a fresh store, as
the ETL flow runs them: the AOIs in batches of ``--batch-size`` (the flow's default), each batch
through every stage in order, one ``run_stage_batch`` (one commit) per stage and batch
(``--per-aoi``: one ``run_stage`` per stage and AOI). Prints seconds per AOI, commits per stage
run, the read cache's hits (:mod:`stliif.store_cache`) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stliif.config import ETLSpec, default_data_root
from stliif.sources.worldstrat import list_aois
from stliif.stages import plan_stages, run_split, run_stage, run_stage_batch
from stliif.store import ArtifactStore
from stliif.store_cache import read_cache


def _renamed(file: str, aoi: str, name: str) -> str:
    """``file`` of ``aoi`` named for ``name`` (WorldStrat spells some names with spaces)."""
    prefix = aoi if file.startswith(aoi) else aoi.replace("_", " ")
    return name + file[len(prefix):]


def make_dataset(src: Path, dst: Path, n: int, *, seed: int = 0) -> list[str]:
    """``n`` synthetic AOIs under ``dst`` (made once; reused when already there)."""
    real = list_aois(src)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        aoi = real[i % len(real)]
        name = f"S{i:05d}_{aoi.replace(' ', '_')}"
        names.append(name)
        lr_out, hr_out = dst / "lr_dataset" / name / "L2A", dst / "hr_dataset/12bit" / name
        if hr_out.is_dir():
            continue
        lr_out.mkdir(parents=True)
        for f in sorted((src / "lr_dataset" / aoi / "L2A").iterdir()):
            out = lr_out / _renamed(f.name, aoi, name)
            if f.name.endswith("L2A_data.tiff"):
                with rasterio.open(f) as r:
                    data, profile, scales = r.read(), r.profile, r.scales
                noise = rng.integers(-3, 4, data.shape)
                nodata = data == (profile.get("nodata") or 0)
                data = np.where(nodata, data, np.clip(data.astype(np.int64) + noise, 1, 65535)).astype(data.dtype)
                with rasterio.open(out, "w", **profile) as w:
                    w.write(data)
                    w.scales = scales
            else:
                out.symlink_to(f)
        hr_out.mkdir(parents=True)
        for f in sorted((src / "hr_dataset/12bit" / aoi).iterdir()):
            (hr_out / _renamed(f.name, aoi, name)).symlink_to(f)
    return names


def run(
    data: Path, aois: list[str], store_uri: str, *, per_aoi: bool, batch_size: int, per_batch: bool = False
) -> tuple[float, dict[str, tuple[float, int]]]:
    """Total seconds; per stage: seconds and commits, summed over batches (``per_batch``: each
    batch's ms per AOI per stage and the process's RSS printed as it ends)."""
    store = ArtifactStore.open(store_uri)
    plan = plan_stages(["import", "mask", "pansharpen", "subset", "histogram"], modes=("clean",))
    out: dict[str, tuple[float, int]] = {}
    t = time.perf_counter()
    for i in range(0, len(aois), batch_size):
        batch = aois[i:i + batch_size]
        row: dict[str, float] = {}
        for name, stage, params, _ in plan:
            n0, t0 = len(store.log()), time.perf_counter()
            if per_aoi:
                for aoi in batch:
                    run_stage(store, stage, aoi, data=data, params=params)
            else:
                run_stage_batch(store, stage, batch, data=data, params=params)
            sec, commits = out.get(name, (0.0, 0))
            took = time.perf_counter() - t0
            out[name] = (sec + took, commits + len(store.log()) - n0)
            row[name] = took
        if per_batch:
            print(f"  batch {i // batch_size}: " + ", ".join(f"{k} {v / len(batch) * 1000:.0f}" for k, v in row.items())
                  + f" ms per AOI; RSS {_rss_mib():.0f} MiB", flush=True)  # fmt: skip
    n0, t0 = len(store.log()), time.perf_counter()
    run_split(store)
    out["split"] = (time.perf_counter() - t0, len(store.log()) - n0)
    return time.perf_counter() - t, out


def _rss_mib() -> float:
    """The process's resident memory now (MiB; Linux), else its peak."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[31, 250])
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--work", type=Path, help="folder for the synthetic dataset and stores (kept)")
    ap.add_argument("--per-aoi", action="store_true", help="one commit per stage and AOI")
    ap.add_argument("--batch-size", type=int, default=ETLSpec().batch_size, help="AOIs per batch (the flow's)")
    ap.add_argument("--per-batch", action="store_true", help="print each batch's per-stage times")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; commit {commit}; "
          f"{'per AOI' if args.per_aoi else 'batched'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="stliif-etl-scale-"))
    try:
        for n in args.n:
            t0 = time.perf_counter()
            aois = make_dataset(args.data, work / "data", n)
            os.sync()  # the new files' writeback must not overlap the timed run (it made N = 1000 1.6x)
            print(f"N={n}: dataset made in {time.perf_counter() - t0:.1f} s (synced)")
            store = work / f"store-{n}{'-per-aoi' if args.per_aoi else ''}"
            shutil.rmtree(store, ignore_errors=True)
            hits, misses, cpu = read_cache.hits, read_cache.misses, time.process_time()
            total, stages = run(work / "data", aois, str(store), per_aoi=args.per_aoi, batch_size=args.batch_size,
                                per_batch=args.per_batch)
            batches = -(-n // args.batch_size)
            cpu = time.process_time() - cpu
            print(f"N={n}: {total:8.1f} s, {total / n:6.3f} s per AOI (CPU {cpu / n:6.3f} s), "
                  f"{sum(c for _, c in stages.values())} commits ({batches} batches); load avg {os.getloadavg()[0]:.1f}; "
                  f"read cache {read_cache.hits - hits} hits, {read_cache.misses - misses} misses; "
                  f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", flush=True)
            for name, (sec, commits) in stages.items():
                print(f"  {name:16s} {sec:8.1f} s  {sec / n * 1000:6.0f} ms per AOI  {commits:5d} commits", flush=True)
            shutil.rmtree(store, ignore_errors=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
