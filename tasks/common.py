"""Helpers shared by the tasks: the retry condition and store opening."""

from __future__ import annotations

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


def open_store(spec: StoreSpec) -> ArtifactStore:
    """Open the artifact store of ``spec``."""
    return ArtifactStore.open(spec)
