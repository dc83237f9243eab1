"""Training: the spec, the data, the loop, calibration of a checkpoint.

- :mod:`~stliif.train.spec`: :class:`TrainSpec` and the model presets (no torch).
- :mod:`~stliif.train.data`: random crops supervised on the real HR grid (:class:`CropDataset`).
- :mod:`~stliif.train.loop`: :func:`train` (seeded, resumable), validation, curves, runs.
- :mod:`~stliif.train.calibrate`: :func:`calibrate` a checkpoint on its training AOIs.
"""

from stliif.train.calibrate import calibrate, init_colour_map
from stliif.train.loop import TrainResult, load_run, train, validate, write_curves
from stliif.train.spec import CPU_MODEL, GPU_MODEL, TrainSpec

__all__ = [
    "CPU_MODEL",
    "GPU_MODEL",
    "TrainResult",
    "TrainSpec",
    "calibrate",
    "init_colour_map",
    "load_run",
    "train",
    "validate",
    "write_curves",
]
