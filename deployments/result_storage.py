"""Prefect result storage on the same S3-compatible endpoint as the store.

``python -m deployments.result_storage s3://bucket/prefect-results --endpoint-url URL`` saves a
``RemoteFileSystem`` block (``remote-file-system/stliif-results``) whose settings hold only the
endpoint, never credentials: s3fs reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from the
environment of whoever runs the flow. Then point Prefect at it::

    export PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=remote-file-system/stliif-results
    export PREFECT_RESULTS_PERSIST_BY_DEFAULT=true
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect.filesystems import RemoteFileSystem

BLOCK_NAME = "stliif-results"
BLOCK_SLUG = f"remote-file-system/{BLOCK_NAME}"


def result_storage(basepath: str, endpoint_url: str | None = None) -> RemoteFileSystem:
    """A ``RemoteFileSystem`` on ``basepath`` (``s3://bucket/prefix``) at ``endpoint_url``."""
    if not basepath.startswith("s3://") or "@" in basepath:
        raise ValueError("basepath must be s3://bucket/prefix, without credentials")
    settings: dict[str, Any] = {}
    if endpoint_url:
        settings["client_kwargs"] = {"endpoint_url": endpoint_url}
    return RemoteFileSystem(basepath=basepath.rstrip("/"), settings=settings)


def save_result_storage(basepath: str, endpoint_url: str | None = None, name: str = BLOCK_NAME) -> str:
    """Save the block on the Prefect server; returns its slug for ``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``."""
    result_storage(basepath, endpoint_url).save(name, overwrite=True)
    return f"remote-file-system/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("basepath", help="s3://bucket/prefix for Prefect's results")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (MinIO, moto, ...); default AWS")
    parser.add_argument("--name", default=BLOCK_NAME)
    args = parser.parse_args()
    print(save_result_storage(args.basepath, args.endpoint_url, args.name))


if __name__ == "__main__":
    main()
