"""Shared fixtures: data paths, a temporary Prefect home, the Prefect test harness, moto S3."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Prefect reads its home at first use: point it at a throwaway folder before anything imports it.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="stliif-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def data_root() -> Path:
    return Path(os.environ.get("STLIIF_DATA", REPO.parent / "shared/data/worldstrat-subset"))


@pytest.fixture(scope="session")
def worldstrat() -> Path:
    root = data_root()
    if not (root / "lr_dataset").is_dir():
        pytest.fail(f"WorldStrat data not found at {root}: set STLIIF_DATA")
    return root


def copy_aois(src: Path, dst: Path, aois: list[str]) -> Path:
    """A private copy of some AOIs of the dataset (to modify or corrupt)."""
    for aoi in aois:
        shutil.copytree(src / "lr_dataset" / aoi, dst / "lr_dataset" / aoi)
        shutil.copytree(src / "hr_dataset/12bit" / aoi, dst / "hr_dataset/12bit" / aoi)
    return dst


@pytest.fixture
def small_dataset(worldstrat: Path, tmp_path: Path) -> Path:
    """Two AOIs (one of each metadata dialect) copied to a temporary dataset root."""
    return copy_aois(worldstrat, tmp_path / "ws", ["Amnesty_POI-13-1-1", "Landcover-14956"])


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """A real S3-speaking server (moto) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials in the environment (never in specs) and a fresh bucket; yields the endpoint."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"stliif-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("STLIIF_TEST_BUCKET", bucket)
    return moto_s3
