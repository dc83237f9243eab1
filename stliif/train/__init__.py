"""Training: the spec, the inputs, the data, the loop, calibration of a checkpoint.

- :mod:`~stliif.train.spec`: :class:`TrainSpec` and the model presets (no torch).
- :mod:`~stliif.train.inputs`: where the scenes come from (WorldStrat files or the store) and
  the record of them a checkpoint keeps (:func:`load_inputs`).
- :mod:`~stliif.train.data`: random crops supervised on the real HR grid (:class:`CropDataset`).
- :mod:`~stliif.train.loop`: :func:`train` (seeded, resumable), validation, curves, runs.
- :mod:`~stliif.train.calibrate`: :func:`calibrate` a checkpoint on its training AOIs.
- :mod:`~stliif.train.cv`: K-fold cross-validation of a configuration over every AOI.
"""

from stliif.train.calibrate import calibrate, init_colour_map
from stliif.train.inputs import TrainInputs, load_inputs
from stliif.train.loop import TrainResult, load_run, train, validate, write_curves
from stliif.train.spec import CPU_MODEL, GPU_MODEL, TrainSpec

__all__ = [
    "CPU_MODEL",
    "GPU_MODEL",
    "TrainInputs",
    "TrainResult",
    "TrainSpec",
    "calibrate",
    "init_colour_map",
    "load_inputs",
    "load_run",
    "train",
    "validate",
    "write_curves",
]
