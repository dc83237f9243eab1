"""Subprocess worker for the checkpoint kill test: save ``PATH`` forever, step 1, 2, 3, ...

Each checkpoint's weights are all equal to its step, so a torn file would show mixed values.
Prints nothing; the parent kills it with SIGKILL at random moments.
"""

from __future__ import annotations

import sys

import torch

from stliif.checkpoint import save_checkpoint
from stliif.models.registry import make_model

torch.set_num_threads(1)
model = make_model({"name": "edsr-baseline", "args": {"n_feats": 32, "n_resblocks": 8}})
step = 0
while True:
    step += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(step))
    save_checkpoint(sys.argv[1], model, step=step, extra={"filler": "x" * 200_000})
