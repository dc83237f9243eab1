"""stliif: continuous space-time super-resolution of satellite imagery.

The public API, imported lazily (``import stliif`` stays cheap)::

    stliif.ArtifactStore      versioned artifact store on Icechunk (local disk or S3)
    stliif.StoreSpec          where the store lives
    stliif.ETLSpec            what the ETL processes
    stliif.read_aoi           read one WorldStrat AOI (LR cube + HR images)
    stliif.run_stage          run one ETL stage for one AOI against a store
    stliif.errors             the exception tree
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArtifactStore": "stliif.store",
    "StoreSpec": "stliif.config",
    "ETLSpec": "stliif.config",
    "read_aoi": "stliif.sources.worldstrat",
    "list_aois": "stliif.sources.worldstrat",
    "run_stage": "stliif.stages",
    "run_split": "stliif.stages",
    "run_crop": "stliif.stages",
    "StliifError": "stliif.errors",
}
__all__ = [*_EXPORTS, "__version__", "code_version", "errors"]

_CODE_VERSION: str | None = None


def code_version() -> str:
    """The package version plus a fingerprint of the library's source (every ``stliif/*.py``):
    part of every run key, so a change of code, not only of version, recomputes what it may
    change (a stage's cached result is never reused across code edits)."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        import hashlib
        from pathlib import Path

        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        _CODE_VERSION = f"{__version__}+{h.hexdigest()[:12]}"
    return _CODE_VERSION


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "errors":
        return importlib.import_module("stliif.errors")
    raise AttributeError(f"module 'stliif' has no attribute {name!r}")
