"""Shared fixtures: data paths, a temporary Prefect home, the Prefect test harness, moto S3."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any
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


@pytest.fixture
def prefect_api(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's Prefect test server as ``$PREFECT_API_URL``: the commands a test runs (in
    this process or as a subprocess) send their flow runs there instead of each starting a
    temporary server (:func:`stliif_cli.runtime.temporary_api`). Yields its URL."""
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value())
    monkeypatch.setenv("PREFECT_API_URL", url)
    return url


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


STAC_AOIS = ["Landcover-14956", "Amnesty_POI-13-1-1"]
"""AOIs served by the local STAC API (one with SCL, one without)."""


def write_dem_cog(path: Path, bounds: tuple[float, float, float, float]) -> None:
    """A synthetic DEM (float32 metres, EPSG:4326, 1/3600 degree): a plane
    ``dem_plane(lon, lat)``, nodata -32767."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    res = 1 / 3600
    w, s, e, n = bounds
    width, height = int((e - w) / res) + 1, int((n - s) / res) + 1
    lon = w + (np.arange(width) + 0.5) * res
    lat = n - (np.arange(height) + 0.5) * res
    data = dem_plane(lon[None, :], lat[:, None]).astype(np.float32)
    profile = {"driver": "COG", "width": width, "height": height, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": from_origin(w, n, res, res), "nodata": -32767}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def dem_plane(lon: Any, lat: Any) -> Any:
    return 100.0 + 2000.0 * (lon - 28.5) + 1000.0 * (lat - 50.4)


@pytest.fixture(scope="session")
def stac_api(worldstrat: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real STAC API (stac-fastapi-pgstac on PostgreSQL/PostGIS) on 127.0.0.1, loaded with the
    WorldStrat STAC export of :data:`STAC_AOIS` (collection ``worldstrat-lr``) and a synthetic
    DEM collection ``cop-dem-glo-30`` (asset ``data``). Yields url, catalog path and items."""
    import datetime as dt

    import pystac

    from stac_server import PgStacServer, catalog_objects
    from stliif.sources.stac_export import export_worldstrat_stac

    out = tmp_path_factory.mktemp("stac")
    catalog = export_worldstrat_stac(worldstrat, out / "worldstrat", aois=STAC_AOIS)
    collections, items = catalog_objects(catalog)
    w = min(i["bbox"][0] for i in items) - 0.01
    s = min(i["bbox"][1] for i in items) - 0.01
    e = max(i["bbox"][2] for i in items) + 0.01
    n = max(i["bbox"][3] for i in items) + 0.01
    dem_path = out / "dem.tif"
    lc = [i for i in items if i["id"].startswith("Landcover-14956")][0]["bbox"]
    dem_bounds = (lc[0] - 0.01, lc[1] - 0.01, lc[2] + 0.01, lc[3] + 0.01)
    write_dem_cog(dem_path, dem_bounds)
    dem_item = pystac.Item(
        "dem-tile-1", {"type": "Polygon", "coordinates": [[[dem_bounds[0], dem_bounds[1]], [dem_bounds[2], dem_bounds[1]],
                       [dem_bounds[2], dem_bounds[3]], [dem_bounds[0], dem_bounds[3]], [dem_bounds[0], dem_bounds[1]]]]},
        list(dem_bounds), dt.datetime(2021, 1, 1, tzinfo=dt.UTC), {}, collection="cop-dem-glo-30",
    )
    dem_item.add_asset("data", pystac.Asset(dem_path.as_uri(), media_type=pystac.MediaType.COG, roles=["data"],
                                            extra_fields={"raster:bands": [{"nodata": -32767, "data_type": "float32"}]}))
    dem_col = pystac.Collection("cop-dem-glo-30", "Synthetic DEM (a plane)",
                                pystac.Extent(pystac.SpatialExtent([[w, s, e, n]]),
                                              pystac.TemporalExtent([[dt.datetime(2021, 1, 1, tzinfo=dt.UTC), None]])))
    server = PgStacServer().start()
    try:
        server.load([*collections, {**dem_col.to_dict(include_self_link=False), "links": []}],
                    [*items, {**dem_item.to_dict(include_self_link=False, transform_hrefs=False), "links": []}])
        yield {"url": server.url, "catalog": catalog, "items": items, "server": server}
    finally:
        server.stop()


SERVICES = {"prefect_harness", "stac_api", "moto_s3", "s3_env", "server"}
"""Fixtures that start a service (Prefect, a STAC API, an S3 server)."""
DATA = {"worldstrat", "small_dataset"}
"""Fixtures that read the shared WorldStrat data."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group every test by what it needs: ``services`` (a server is started), ``data`` (the
    shared WorldStrat data), else ``unit`` (tiny synthetic inputs): ``pytest -m unit``."""
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("services"):  # marked by hand: it starts a server through the CLI
            continue
        if needs & SERVICES:
            item.add_marker(pytest.mark.services)
        elif needs & DATA or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.data)
        else:
            item.add_marker(pytest.mark.unit)
