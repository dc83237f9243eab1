"""Tiled renders from the store: seconds per megapixel, peak memory as the area grows, Dask workers.

Usage::

    .venv/bin/python bench/render_tiles.py [--model models/record] [--old-checkout PATH]
        [--sides 250 500 1000] [--scale 4] [--dask-side 500]

Builds synthetic LR cubes (5 revisits, 4 bands, a polygon area; ``stliif.testing.synthetic_cube``)
of ``side x side`` px at 10 m, commits each into a temporary store and renders it with
``stliif.render.run_render`` at ``--scale``, each run in a fresh process that reports its own
wall time and peak RSS (``ru_maxrss``). Prints, measured side by side in this one run:

1. seconds per output megapixel and peak RSS for each side (1000 at x4 is the 16 MP render of a
   1000 x 1000 px, 100 km^2 area), and the ratio of the largest to the smallest peak RSS;
2. with ``--old-checkout`` (a checkout of the code before tiling, e.g. ``git worktree add
   /tmp/old f19b8a9``), that code's in-memory ``render`` and its ``run_render`` (store, files,
   commit) of the smallest area, for the seconds-per-megapixel ratios;
3. a LocalCluster of 1 and of 2 single-threaded workers on the ``--dask-side`` area, with the
   same ``--dask-tile`` tiles (speed-up);
4. from the measured per-tile throughput, the time of a whole Sentinel-2 tile (10980 x 10980 px)
   at the same scale on N such workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
args = json.loads(sys.argv[1])
import torch
torch.set_num_threads(args["threads"])
from stliif.testing import synthetic_cube
def cube():
    return synthetic_cube("bench-area", h=args["side"], w=args["side"], dates=("2024-03-01", "2024-03-11", "2024-03-21",
                          "2024-03-31", "2024-04-10"), cloud=(0.0, 0.2, 0.0, 0.1, 0.0), seed=1)
if args["mode"] == "setup":  # its own process: the render's peak RSS is the render's alone
    from stliif.store import ArtifactStore
    ArtifactStore.open(args["store"]).commit({"raw/bench-area": cube()}, stage="import", params={})
    print(json.dumps({}))
    sys.exit(0)
shape = (3, round(args["scale"] * args["side"]), round(args["scale"] * args["side"]))
t0 = time.perf_counter()
if args["mode"] == "old":
    from stliif.render import render
    c = cube()
    t0 = time.perf_counter()
    render(args["model"], c, "2024-03-21", scale=args["scale"], max_mb=1e6)
else:
    from stliif.store import ArtifactStore
    from stliif.render import run_render
    store = ArtifactStore.open(args["store"])
    extra = {"max_mb": 1e6} if args["mode"] == "old-run" else {"dask": args.get("dask"), "workers": args.get("workers"), "tile": args.get("tile")}
    res = run_render(store, "bench-area", args["model"], date="2024-03-21", scale=args["scale"], out_dir=args["out"], **extra)
    if args["mode"] == "tiled":
        args["tiles"], args["tile_px"], args["tile_seconds"] = res["attrs"]["tiles"], res["attrs"]["tile_px"], res["tile_seconds"]
dt = time.perf_counter() - t0
print(json.dumps({**args, "seconds": dt, "mp": shape[1] * shape[2] / 1e6, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(args: dict, pythonpath: Path) -> dict:
    """Run the child with ``args``, after a setup process that commits its store, if it has one."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "MALLOC_ARENA_MAX": "2"}

    def child(a: dict) -> dict:
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), json.dumps(a)], env=env, cwd=pythonpath,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    if "store" in args:
        child({**args, "mode": "setup"})
    return child(args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "models" / "record"))
    ap.add_argument("--old-checkout", type=Path, default=None)
    ap.add_argument("--sides", type=int, nargs="+", default=[250, 500, 1000])
    ap.add_argument("--scale", type=float, default=4.0)
    ap.add_argument("--dask-side", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dask-tile", type=int, default=512, help="the same tiles for 1 and 2 workers")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask figures")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for side in a.sides:
            r = run({"mode": "tiled", "side": side, "scale": a.scale, "model": a.model, "threads": a.threads,
                     "store": f"{tmp}/s{side}", "out": f"{tmp}/out"}, REPO)  # fmt: skip
            rows.append(r)
            print(f"tiled  {side:5d}^2 LR -> {r['mp']:6.2f} MP in {r['seconds']:7.1f} s = {r['seconds'] / r['mp']:.2f} s/MP "
                  f"(tiles {r['tile_seconds'] / r['mp']:.2f} s/MP), {r['tiles']} tiles of {r['tile_px']} px, "
                  f"peak RSS {r['rss_mib']:.0f} MiB", flush=True)  # fmt: skip
        sizes = ", ".join(f"{r['mp']:.0f}" for r in rows)
        print(f"peak RSS largest / smallest of {sizes} MP: {max(r['rss_mib'] for r in rows) / min(r['rss_mib'] for r in rows):.2f}")
        if a.old_checkout:
            o = run({"mode": "old", "side": a.sides[0], "scale": a.scale, "model": a.model, "threads": a.threads},
                    a.old_checkout)  # fmt: skip
            print(f"old in-memory {a.sides[0]}^2 LR -> {o['mp']:.2f} MP in {o['seconds']:.1f} s = {o['seconds'] / o['mp']:.2f} s/MP, "
                  f"peak RSS {o['rss_mib']:.0f} MiB")  # fmt: skip
            r = run({"mode": "old-run", "side": a.sides[0], "scale": a.scale, "model": a.model, "threads": a.threads,
                     "store": f"{tmp}/old", "out": f"{tmp}/oldout"}, a.old_checkout)  # fmt: skip
            print(f"old run_render {a.sides[0]}^2 LR (store, COG, PNG, commit) -> {r['mp']:.2f} MP in {r['seconds']:.1f} s "
                  f"= {r['seconds'] / r['mp']:.2f} s/MP, peak RSS {r['rss_mib']:.0f} MiB")  # fmt: skip
            for big in rows:
                print(f"s/MP tiled run_render {big['mp']:.0f} MP / old run_render {r['mp']:.0f} MP: "
                      f"{(big['seconds'] / big['mp']) / (r['seconds'] / r['mp']):.2f}")  # fmt: skip
                print(f"s/MP tiled {big['mp']:.0f} MP / old in-memory {o['mp']:.0f} MP: "
                      f"{(big['seconds'] / big['mp']) / (o['seconds'] / o['mp']):.2f} end to end (files and commit "
                      f"included), {(big['tile_seconds'] / big['mp']) / (o['seconds'] / o['mp']):.2f} for the tiles")  # fmt: skip
        if a.no_dask:
            return
        times = {}
        for n in (1, 2):
            r = run({"mode": "tiled", "side": a.dask_side, "scale": a.scale, "model": a.model, "threads": 1,
                     "store": f"{tmp}/d{n}", "out": f"{tmp}/dout{n}", "dask": "local", "workers": n,
                     "tile": a.dask_tile}, REPO)  # fmt: skip
            times[n] = r
            print(f"dask local, {n} worker(s) x 1 thread: {r['mp']:.2f} MP in {r['seconds']:.1f} s, of which tiles "
                  f"{r['tile_seconds']:.1f} s ({r['tiles']} tiles of {r['tile_px']} px), client peak RSS "
                  f"{r['rss_mib']:.0f} MiB", flush=True)  # fmt: skip
        print(f"speed-up 2 workers / 1 worker: {times[1]['tile_seconds'] / times[2]['tile_seconds']:.2f} on the tiles, "
              f"{times[1]['seconds'] / times[2]['seconds']:.2f} end to end (cluster start and writes included)")
        per_mp = times[1]["tile_seconds"] / times[1]["mp"]
        tile_mp = (10980 * a.scale) ** 2 / 1e6
        print(f"a Sentinel-2 tile (10980^2 px) at x{a.scale:g} = {tile_mp:.0f} MP: at {per_mp:.2f} s/MP per "
              f"single-threaded worker, {tile_mp * per_mp / 3600:.1f} h on 1 worker, "
              + ", ".join(f"{tile_mp * per_mp / n / 3600:.1f} h on {n}" for n in (16, 64, 256)))  # fmt: skip


if __name__ == "__main__":
    main()
