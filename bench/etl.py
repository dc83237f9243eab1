"""Benchmark: full ETL of the WorldStrat AOIs vs merely reading every source file once.

usage: .venv/bin/python bench/etl.py [--data PATH] [--aoi A ...] [--no-flow] [--per-aoi]

Prints, in one run: the time to decode every source file once (rasterio reads of every TIFF and
JSON parses of every metadata file), the ETL through the library alone (stliif.stages: one
``run_stage_batch`` per stage, or with ``--per-aoi`` one ``run_stage`` per stage and AOI, as the
code before batching did), and the ETL through the Prefect flow, on threads and on a Dask
LocalCluster of one process per core (under a temporary local server, as ``stliif etl`` runs
them; the server's start is printed apart), each into a fresh store, and their ratios to the read-once time; for the library run
also the commits made and the store's size per AOI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's flows/

from stliif.config import ETLSpec, StoreSpec, default_data_root
from stliif.sources.worldstrat import find_aoi_files, resolve_aois
from stliif.stages import plan_stages, run_split, run_stage
from stliif.store import ArtifactStore


def read_once(data: Path, aois: list[str]) -> float:
    t = time.perf_counter()
    for aoi in aois:
        for path in find_aoi_files(data, aoi).all_paths():
            if path.suffix == ".metadata":
                json.loads(path.read_text())
            else:
                with rasterio.open(path) as src:
                    src.read()
    return time.perf_counter() - t


def etl_library(
    data: Path, aois: list[str], store_uri: str, *, per_aoi: bool = False
) -> tuple[float, dict[str, tuple[float, float]], int]:
    """Total seconds, (wall, CPU) seconds per stage run (summed over AOIs) and commits made.

    CPU time is this process's (every thread's): less sensitive than wall time to other jobs on
    shared cores."""
    per_stage: dict[str, tuple[float, float]] = {}

    def add(name: str, wall: float, cpu: float) -> None:
        w, c = per_stage.get(name, (0.0, 0.0))
        per_stage[name] = (w + wall, c + cpu)

    t = time.perf_counter()
    store = ArtifactStore.open(store_uri)
    n0 = len(store.log())
    plan = plan_stages(["import", "mask", "pansharpen", "subset", "histogram"])
    if per_aoi:
        for aoi in aois:
            for name, stage, params, _ in plan:
                t0, c0 = time.perf_counter(), time.process_time()
                run_stage(store, stage, aoi, data=data, params=params)
                add(name, time.perf_counter() - t0, time.process_time() - c0)
    else:
        from stliif.stages import run_stage_batch

        for name, stage, params, _ in plan:
            t0, c0 = time.perf_counter(), time.process_time()
            run_stage_batch(store, stage, aois, data=data, params=params)
            add(name, time.perf_counter() - t0, time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    run_split(store)
    add("split", time.perf_counter() - t0, time.process_time() - c0)
    return time.perf_counter() - t, per_stage, len(store.log()) - n0


def store_bytes(path: str) -> int:
    """Bytes of every file under a local store."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def etl_flow(data: Path, aois: list[str], store_uri: str, *, dask: bool = False) -> float:
    """Seconds of the ETL flow: threads (the default runner), or a Dask LocalCluster of one
    process per core; one batch of AOIs per worker either way. Run under :func:`temporary_api`
    (as ``stliif etl`` runs it), whose start is not counted here."""
    from flows.etl import etl
    from flows.runners import task_runner

    flow = etl.with_options(task_runner=task_runner("local", workers=os.cpu_count() or 2)) if dask else etl
    t = time.perf_counter()
    flow(ETLSpec(data=str(data), aois=aois), StoreSpec(uri=store_uri))
    return time.perf_counter() - t


def _load() -> str:
    """The 1, 5 and 15 minute load averages (the cores may be shared: figures are noisy)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--aoi", action="append")
    ap.add_argument("--no-flow", action="store_true", help="skip the Prefect flow measurement")
    ap.add_argument("--per-aoi", action="store_true", help="library run: one commit per stage and AOI")
    args = ap.parse_args()
    aois = resolve_aois(args.data, args.aoi)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; commit {commit}; {len(aois)} AOIs; "
          f"load avg {_load()}")
    read_once(args.data, aois[:1])  # warm the imports, not the page cache of all files
    c0 = time.process_time()
    t_read = read_once(args.data, aois)
    print(f"read every source file once: {t_read:7.2f} s (CPU {time.process_time() - c0:5.2f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        t_lib, per_stage, commits = etl_library(args.data, aois, f"{tmp}/lib", per_aoi=args.per_aoi)
        print(f"ETL, library (stliif.stages): {t_lib:7.2f} s  ratio {t_lib / t_read:5.2f}x  "
              f"({'per AOI' if args.per_aoi else 'batched'}: {commits} commits)")
        print(f"load avg after the library run: {_load()}")
        size = store_bytes(f"{tmp}/lib")
        print(f"store size: {size / 1e6:7.1f} MB  ({size / len(aois) / 1e6:5.2f} MB per AOI)")
        cpu_total = sum(c for _, c in per_stage.values())
        print(f"CPU time of the library run: {cpu_total:7.2f} s")
        for name, (sec, cpu) in per_stage.items():
            print(f"  {name:16s} {sec:7.2f} s  ({sec / len(aois) * 1000:6.0f} ms per AOI; "
                  f"CPU {cpu / len(aois) * 1000:6.0f} ms per AOI)")
        if not args.no_flow:
            # A Prefect API as the CLI makes one (a temporary server, its own start timed apart):
            # the flow's workers, threads or Dask processes, all report to it.
            os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="stliif-bench-prefect-"))
            from stliif_cli.runtime import temporary_api

            t0 = time.perf_counter()
            with temporary_api():
                print(f"temporary Prefect server start (new PREFECT_HOME): {time.perf_counter() - t0:5.2f} s")
                t_flow = etl_flow(args.data, aois, f"{tmp}/flow")
                print(f"ETL, Prefect flow (threads):  {t_flow:7.2f} s  ratio {t_flow / t_read:5.2f}x")
                t_dask = etl_flow(args.data, aois, f"{tmp}/flow-dask", dask=True)
                print(f"ETL, Prefect flow (Dask, {os.cpu_count()} processes): {t_dask:7.2f} s  ratio {t_dask / t_read:5.2f}x")


if __name__ == "__main__":
    main()
