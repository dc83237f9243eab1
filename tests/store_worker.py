"""Subprocess worker for the store's concurrency and kill-safety tests.

usage: store_worker.py STORE_URI WRITER N   commit N artifacts writer-<WRITER>/<i>
       store_worker.py STORE_URI loop       commit kill/x forever, each a self-consistent cube
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

from stliif.store import ArtifactStore

uri, mode = sys.argv[1], sys.argv[2]
store = ArtifactStore.open(uri)
if mode == "loop":
    i = 0
    while True:
        i += 1
        cube = xr.Dataset({"v": (("t", "y", "x"), np.full((4, 256, 256), i, np.int32))}, attrs={"i": i})
        store.commit({"kill/x": cube, "kill/y": {"i": i}}, stage="loop", params={"i": i})
else:
    for i in range(int(sys.argv[3])):
        store.commit({f"writer-{mode}/a{i}": {"i": i}}, stage="write", params={"w": mode, "i": i})
