"""Helpers shared by the tasks: the retry condition and store opening."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect.states import State

from stliif.config import StoreSpec
from stliif.errors import TransientDataAccessError
from stliif.store import ArtifactStore


def retry_transient(task: Any, task_run: Any, state: State) -> bool:
    """Retry only :class:`TransientDataAccessError`; bad input or missing data never is."""
    try:
        state.result()
    except TransientDataAccessError:
        return True
    except BaseException:
        return False
    return False


EMBED_LIMIT = 4_000_000
"""Largest image (bytes) embedded in a markdown artifact."""


def embed_image(path: Path, alt: str | None = None) -> str | None:
    """A markdown image with ``path`` inlined as a data URI (PNG or GIF), or ``None`` if too large."""
    if path.stat().st_size > EMBED_LIMIT:
        return None
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    return f"![{alt or path.name}](data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()})"


def open_store(spec: StoreSpec) -> ArtifactStore:
    """Open the artifact store of ``spec``."""
    return ArtifactStore.open(spec)
