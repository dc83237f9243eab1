"""The acquire flow and `stliif acquire` end to end against the local STAC API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rasterio

from stliif.config import AcquireSpec, ETLSpec, StoreSpec
from stliif.errors import InvalidInputError
from stliif.store import ArtifactStore

STLIIF = Path(sys.executable).with_name("stliif")

pytestmark = pytest.mark.integration


def _bbox(stac_api: dict[str, Any]) -> list[float]:
    return next(i["bbox"] for i in stac_api["items"] if i["id"].startswith("Landcover-14956-"))


def test_acquire_flow_publishes_and_masks_follow(stac_api: dict[str, Any], prefect_harness: None, tmp_path: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.acquire import acquire
    from flows.etl import etl

    store = StoreSpec(uri=str(tmp_path / "store"))
    spec = AcquireSpec(aoi="lc-flow", providers=[stac_api["url"]], collection="worldstrat-lr", provider_name="local",
                       bbox=tuple(_bbox(stac_api)), start="2019-08-01", end="2019-10-31",
                       quicklooks=str(tmp_path / "ql"), retries=0)  # fmt: skip
    result = acquire(spec, store, announce=False)
    assert result["status"] == "committed" and len(result["table"]) == len(result["dates"]) > 3
    assert Path(result["quicklooks"]["sheet"][0]).stat().st_size > 1000
    table = Artifact.get("acquire-lc-flow-dates")
    assert table is not None and result["dates"][0] in str(table.data)
    report = Artifact.get("acquire-lc-flow")
    assert report is not None and "data:image/png;base64" in str(report.data)
    # The store-only stages take the acquired AOI; an AOI the store lacks is refused.
    out = etl(ETLSpec(stages=["mask"], aois=["lc-flow"]), store)
    assert [r["status"] for r in out["records"]] == ["committed"]
    assert ArtifactStore.open(store).list("mask") == ["mask/lc-flow"]
    with pytest.raises(InvalidInputError, match="no raw/<aoi> cube"):
        etl(ETLSpec(stages=["mask"], aois=["nowhere"]), store)


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_acquire_as_a_user(stac_api: dict[str, Any], tmp_path: Path) -> None:
    bbox = ",".join(f"{v:.6f}" for v in _bbox(stac_api))
    args = ["acquire", "--aoi", "lc-cli", "--provider", stac_api["url"], "--collection", "worldstrat-lr",
            "--bbox", bbox, "--start", "2019-09-01", "--end", "2019-10-20", "--max-cloud", "20",
            "--store", str(tmp_path / "store"), "--quicklooks", str(tmp_path / "ql")]  # fmt: skip
    out = _run(*args, "--export-cog", "2019-10-18", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "committed raw/lc-cli" in out.stdout and "2019-10-18" in out.stdout
    cog = tmp_path / "ql/lc-cli/2019-10-18.tif"
    with rasterio.open(cog) as src:
        assert src.crs.to_epsg() == 32635 and src.count == 4 and src.profile["tiled"]
    assert (tmp_path / "ql/lc-cli/contact_sheet.png").is_file()
    again = _run(*args, tmp_path=tmp_path)
    assert again.returncode == 0 and "unchanged raw/lc-cli" in again.stdout
    bad = _run("acquire", "--aoi", "x", "--bbox", "10,50,9,51", "--start", "2019-01-01", "--end", "2019-02-01",
               "--store", str(tmp_path / "store"), tmp_path=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "antimeridian" in bad.stderr and "Traceback" not in bad.stderr
