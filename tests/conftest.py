"""Shared fixtures: the WorldStrat data path (``STLIIF_DATA`` or ``../shared/...``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("STLIIF_DATA", REPO.parent / "shared/data/worldstrat-subset"))


@pytest.fixture(scope="session")
def worldstrat() -> Path:
    root = data_root()
    if not (root / "lr_dataset").is_dir():
        pytest.fail(f"WorldStrat data not found at {root}: set STLIIF_DATA")
    return root
