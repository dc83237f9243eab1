"""One exception tree for stliif, grouped by what the caller should do.

``InvalidInputError`` is never retried; ``TransientDataAccessError`` is retried with backoff;
``NoDataError`` means "skip with a record"; ``StoreError`` covers the versioned store.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataAccessError",
    "InvalidInputError",
    "ModelError",
    "NoDataError",
    "RunFailures",
    "StliifError",
    "StoreError",
    "StoreLockTimeout",
    "TransientDataAccessError",
]


class StliifError(Exception):
    """Base class of every error stliif raises on purpose."""


class InvalidInputError(StliifError, ValueError):
    """A bad argument (bbox, dates, polygon, name, spec, path). Fix the input; never retried."""


class DataAccessError(StliifError, OSError):
    """A source could not be read (missing, corrupted or unreadable file, provider error)."""


class TransientDataAccessError(DataAccessError):
    """A source failed in a way that may pass (timeout, HTTP 429 or 5xx): retry with backoff."""


class NoDataError(StliifError, LookupError):
    """Nothing usable to process (no items, all cloudy, AOI outside the raster): skip with a record."""


class RunFailures(StliifError):
    """Some units of a run (AOIs, stages) failed; the message lists every one with its reason.
    What the others committed stays committed."""


class StoreError(StliifError):
    """The versioned artifact store failed (commit conflict, storage failure, missing artifact)."""


class StoreLockTimeout(StoreError, TimeoutError):
    """Another process held the store's commit lock for longer than the timeout."""


class ModelError(StliifError):
    """A model spec or forward pass is invalid."""


class CheckpointError(ModelError):
    """A checkpoint is missing, corrupted or not loadable safely."""
