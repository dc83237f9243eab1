"""Benchmark: the ETL flow on S3 (a moto server on 127.0.0.1) with concurrent workers.

usage: .venv/bin/python bench/etl_s3.py [--n 31] [--workers 4] [--dask] [--data PATH] [--work DIR]

Runs ``stliif etl`` (clean mode, every stage) over N synthetic AOIs (``bench/etl_scale.py``'s
dataset, made under ``--work`` or a folder in /tmp removed at the end) into a fresh store on S3,
with ``--workers`` batches at once (threads, or with ``--dask`` a Dask LocalCluster of as many
processes), then again (it must commit nothing). Prints the time, the commits per stage, the
stage runs found in the history against those the run reported (lost: reported committed but in
no commit; duplicated: in two commits), and the rebases (commits whose parent is not the snapshot
their batch started from: another batch committed meanwhile and this one was rebased onto it).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from etl_scale import make_dataset

from stliif.config import StoreSpec, default_data_root
from stliif.store import ArtifactStore

STLIIF = Path(sys.executable).with_name("stliif")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _etl(data: Path, uri: str, endpoint: str, env: dict[str, str], workers: int, dask: bool) -> tuple[float, str]:
    cmd = [str(STLIIF), "etl", "--data", str(data), "--store", uri, "--endpoint-url", endpoint, "--mode", "clean",
           "--workers", str(workers), *(["--dask", "local"] if dask else [])]  # fmt: skip
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200)
    if done.returncode:
        raise SystemExit(f"stliif etl failed ({done.returncode}): {done.stderr[-3000:]}")
    return time.perf_counter() - t, done.stdout.strip().splitlines()[-1]


def audit(store: ArtifactStore) -> dict[str, object]:
    """Commits per stage, stage runs in the history (and duplicates), rebases."""
    log = store.log()
    runs = Counter(run["run_key"] for c in log for run in c.runs)
    per_stage = Counter(str(c.metadata.get("stage")) for c in log if c.runs)
    rebased = sum(1 for c, parent in itertools.pairwise(log)
                  if c.runs and c.metadata.get("input_snapshot") not in (None, parent.snapshot_id))  # fmt: skip
    return {"commits": len(log), "per_stage": dict(per_stage), "runs": runs, "rebased": rebased,
            "groups": sum(c.metadata.get("stage") == "groups" for c in log)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=31)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--dask", action="store_true", help="a Dask LocalCluster of --workers processes")
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--work", type=Path, help="folder for the synthetic dataset (kept)")
    args = ap.parse_args()
    import boto3
    from moto.server import ThreadedMotoServer

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; commit {commit}; "
          f"N={args.n}, {args.workers} {'Dask processes' if args.dask else 'threads'}")
    work = args.work or Path(tempfile.mkdtemp(prefix="stliif-etl-s3-"))
    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        aois = make_dataset(args.data, work / "data", args.n)
        endpoint, bucket = f"http://127.0.0.1:{port}", f"stliif-bench-{uuid.uuid4().hex[:8]}"
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(creds)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        env = {**os.environ, "PREFECT_HOME": str(work / "prefect")}
        uri = f"s3://{bucket}/etl"
        took, line = _etl(work / "data", uri, endpoint, env, args.workers, args.dask)
        store = ArtifactStore.open(StoreSpec(uri=uri, endpoint_url=endpoint, allow_http=True), create=False)
        a = audit(store)
        runs = a["runs"]
        assert isinstance(runs, Counter)
        expected = args.n * 5 + 1  # import, mask, pansharpen, subset, histogram per AOI + split
        missing = [p for aoi in aois for p in (f"raw/{aoi}", f"mask/{aoi}", f"pansharpened/{aoi}",
                                               f"subset/clean/{aoi}", f"matched/clean/{aoi}")
                   if store.version(p) is None]  # fmt: skip
        print(f"first run: {took:.1f} s ({took / args.n:.2f} s per AOI); {line}")
        print(f"  commits {a['commits']} (groups {a['groups']}); per stage {a['per_stage']}")
        print(f"  stage runs in the history {sum(runs.values())} of {expected}; duplicated "
              f"{sum(n > 1 for n in runs.values())}; artifacts missing {len(missing)}; rebased commits {a['rebased']}")
        again, line = _etl(work / "data", uri, endpoint, env, args.workers, args.dask)
        print(f"rerun: {again:.1f} s; {line}; new commits {len(store.log()) - int(a['commits'])}")  # type: ignore[call-overload]
    finally:
        server.stop()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
