"""Memory guard: the estimate that decides acceptance, against the measured peak memory.

Usage::

    .venv/bin/python bench/memory.py [--data PATH]

Each case runs in a fresh subprocess, which reports its peak RSS (``ru_maxrss``) before and
after the work:

- render of Landcover-14956 with the checkpoint of record at x16 (6.4 MP, the largest scale);
- acquisition through a local STAC API (stac-fastapi-pgstac, started here) of the same AOI, 12
  bands, every revisit, on its UTM grid at 2.5 m (16x the pixels of 10 m);
- the same acquisition with a budget below its estimate: refused, and the peak shows that no
  pixel was read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys
sys.path[:0] = [{repo!r}, {tests!r}]
case = json.loads(sys.argv[1])
import numpy as np, xarray, torch, odc.stac, stliif.render, stliif.acquire  # import before measuring
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {{"base_mib": base}}
if case["kind"] == "render":
    from stliif.render import check_render_budget, render
    from stliif.sources.worldstrat import find_aoi_files, read_lr
    from stliif.config import default_model
    cube = read_lr(find_aoi_files(case["data"], "Landcover-14956"))
    out["estimate_mib"] = check_render_budget(cube, 16, 1, 4096) / 2**20
    img = render(default_model(), cube, cube.attrs["hr_date"], scale=16, max_mb=4096)
    out["output"] = list(img.shape)
else:
    from stliif.acquire import run_acquire, estimate_bytes, search, target_geobox, area_of
    from stliif.config import AcquireSpec
    from stliif.store import ArtifactStore
    from stliif.errors import InvalidInputError
    spec = AcquireSpec(**case["spec"])
    found = search(spec)
    out["estimate_mib"] = estimate_bytes(len(found.items), 12, target_geobox(area_of(spec), None, spec.resolution)) / 2**20
    try:
        r = run_acquire(ArtifactStore.open(case["store"]), spec)
        out["status"] = r.status
    except InvalidInputError as err:
        out["status"] = "refused: " + str(err)[:80]
out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(case: dict) -> dict:
    code = CHILD.format(repo=str(REPO), tests=str(REPO / "tests"))
    p = subprocess.run([sys.executable, "-c", code, json.dumps(case)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from stac_server import PgStacServer, catalog_objects
    from stliif.config import default_data_root
    from stliif.sources.stac_export import export_worldstrat_stac

    data = str(args.data or default_data_root())
    rows = [("render x16 (record model)", run({"kind": "render", "data": data}))]
    with tempfile.TemporaryDirectory() as tmp:
        cat = export_worldstrat_stac(data, Path(tmp) / "ws", aois=["Landcover-14956"])
        cols, items = catalog_objects(cat)
        server = PgStacServer().start()
        try:
            server.load(cols, items)
            bbox = next(i["bbox"] for i in items if i["collection"] == "worldstrat-lr")
            spec = {"aoi": "bench", "providers": [server.url], "collection": "worldstrat-lr", "bbox": bbox,
                    "start": "2019-01-01", "end": "2019-12-31", "resolution": 2.5, "quicklooks": None,
                    "bands": ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]}
            rows.append(("acquire 12 bands @2.5 m", run({"kind": "acquire", "spec": spec, "store": f"{tmp}/s1"})))
            rows.append(("same, budget 50 MiB", run({"kind": "acquire", "spec": {**spec, "max_mb": 50}, "store": f"{tmp}/s2"})))
        finally:
            server.stop()
    print(f"{'case':28} {'estimate MiB':>12} {'peak RSS MiB':>12} {'over imports':>12}  outcome")
    for name, r in rows:
        outcome = r.get("status") or f"output {r.get('output')}"
        print(f"{name:28} {r['estimate_mib']:12.0f} {r['peak_mib']:12.0f} {r['peak_mib'] - r['base_mib']:12.0f}  {outcome}")


if __name__ == "__main__":
    main()
