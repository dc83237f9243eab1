"""Where a store may live: checked before anything touches the location (nothing is created).

Kept apart from :mod:`stliif.store` so that a command can refuse a bad ``--store`` without
loading Icechunk, Zarr or xarray.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from stliif.config import StoreSpec
from stliif.errors import InvalidInputError, StoreError

__all__ = ["check_location", "unwritable"]


def check_location(spec: StoreSpec, *, create: bool = False, write: bool = False) -> None:
    """Refuse a store location that cannot work, before anything touches it (nothing is created).

    Local: a file, a missing folder (unless ``create``), a folder that is not a store (unless it
    is empty and ``create``), a folder (or, to create, its parent) not writable when ``write``
    or ``create``. S3: no credentials in the environment.

    Raises:
        InvalidInputError: the location is not a store folder or s3:// URI, or lacks credentials.
        StoreError: no store there, or not writable.
    """
    if spec.is_s3:
        if not urlsplit(spec.uri).netloc:
            raise InvalidInputError(f"store uri {spec.uri!r} lacks a bucket: use s3://bucket/prefix")
        _check_s3_credentials(spec.uri)
        return
    if "://" in spec.uri:
        raise InvalidInputError(f"unsupported store uri {spec.uri!r}: use a folder or s3://")
    path = Path(spec.uri).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"store {spec.uri!r} is a file, not a store folder")
    is_store = (path / "refs").is_dir() and (path / "snapshots").is_dir()
    if not is_store:
        if not create:
            raise StoreError(f"no store at {spec.uri!r}: check the path, or run a command that builds one (stliif etl)")
        if path.is_dir() and any(path.iterdir()):
            raise InvalidInputError(f"{spec.uri!r} is a folder with other files, not a store: choose an empty or new folder")
    if (write or create) and (target := unwritable(path)) is not None:
        raise StoreError(f"store folder {str(target)!r} is not writable")


def unwritable(path: Path) -> Path | None:
    """The folder that keeps ``path`` from being written (``path`` itself, or the nearest
    existing parent it would be made in), or ``None`` when it can be."""
    target = path if path.exists() else next(p for p in path.parents if p.exists())
    return None if target.is_dir() and os.access(target, os.W_OK | os.X_OK) else target


def _check_s3_credentials(uri: str) -> None:
    """S3 credentials must come from the environment (AWS_* variables or a profile)."""
    try:
        import botocore.session
    except ImportError:  # no botocore: Icechunk will say what it finds
        return
    if botocore.session.get_session().get_credentials() is None:
        raise InvalidInputError(
            f"no S3 credentials for {uri!r}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        )
