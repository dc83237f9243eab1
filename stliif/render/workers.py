"""What a tiled render installs on Dask workers: its predictor, unpickled once per worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed import WorkerPlugin

from stliif.models.window import WindowPredictor

__all__ = ["Install", "predict_installed"]

_INSTALLED: dict[str, WindowPredictor] = {}
"""Predictors of the renders running on this worker, by render key."""


class Install(WorkerPlugin):
    """Unpickles a render's predictor once on each worker (those that join later too) and
    drops it when the render ends."""

    def __init__(self, key: str, predictor: WindowPredictor) -> None:
        self.key, self.predictor = key, predictor

    def setup(self, worker: Any) -> None:
        _INSTALLED[self.key] = self.predictor

    def teardown(self, worker: Any) -> None:
        _INSTALLED.pop(self.key, None)


def predict_installed(key: str, predict: Callable[..., Any], *args: Any) -> Any:
    """``predict(predictor, *args)`` with the predictor installed under ``key``."""
    return predict(_INSTALLED[key], *args)
