"""Import rule (stliif never imports Prefect) and the command line as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STLIIF = Path(sys.executable).with_name("stliif")


def test_stliif_never_imports_prefect() -> None:
    code = (
        "import pkgutil, importlib, sys, stliif\n"
        "for m in pkgutil.walk_packages(stliif.__path__, 'stliif.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows', 'tasks', 'deployments'))\n"
        "assert not bad, bad\n"
        "print('modules', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "modules" in out.stdout


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_providers_table() -> None:
    out = _run("providers")
    assert out.returncode == 0
    for name in ("earth-search", "planetary-computer", "cdse"):
        assert name in out.stdout
    for fact in ("cop-dem-glo-30", "CQL2-JSON filter", "resolution", "revisit", "10 m"):
        assert fact in out.stdout


@pytest.mark.parametrize("cmd", [[], ["etl"], ["crop"], ["providers"], ["store"], ["store", "log"], ["store", "ls"], ["store", "show"], ["train"], ["evaluate"], ["render"], ["acquire"]])
def test_every_command_has_help(cmd: list[str]) -> None:
    out = _run(*cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout and "--help" in out.stdout


def test_bad_data_path_is_one_clear_line(tmp_path: Path) -> None:
    out = _run("etl", "--data", str(tmp_path / "nowhere"), "--store", str(tmp_path / "s"))
    assert out.returncode == 2
    assert "not a WorldStrat dataset" in out.stderr and "Traceback" not in out.stderr


def test_etl_then_inspect_store_as_a_user(small_dataset: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    env = {"PREFECT_HOME": str(tmp_path / "prefect"), "STLIIF_DATA": str(small_dataset)}
    out = _run("etl", "--store", store, "--aoi", "Landcover-14956", "--stage", "import",
               "--stage", "mask", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 committed" in out.stdout
    ls = _run("store", "ls", "--store", store)
    assert "raw/Landcover-14956" in ls.stdout and "mask/Landcover-14956" in ls.stdout
    log = _run("store", "log", "--store", store)
    assert "import" in log.stdout and "mask" in log.stdout
    show = _run("store", "show", "raw/Landcover-14956", "--store", store)
    assert "reflectance" in show.stdout
    tag = _run("store", "tag", "first", "--store", store)
    assert tag.returncode == 0 and "first" in _run("store", "refs", "--store", store).stdout


def test_crop_command_square_and_polygon(small_dataset: Path, tmp_path: Path, prefect_api: str) -> None:
    """`stliif crop` runs its flow (on the session's Prefect server); bad input is refused first."""
    import json

    from stliif.stages import run_stage
    from stliif.store import ArtifactStore

    store_uri = str(tmp_path / "store")
    store = ArtifactStore.open(store_uri)
    run_stage(store, "import", "Landcover-14956", data=small_dataset)
    lon, lat = store.read("raw/Landcover-14956").attrs["lon"], store.read("raw/Landcover-14956").attrs["lat"]
    sq = _run("crop", "raw/Landcover-14956", "centre500", "--center", f"{lon},{lat}", "--size-m", "500", "--store", store_uri)
    assert sq.returncode == 0, sq.stderr
    cropped = ArtifactStore.open(store_uri).read("crop/raw/Landcover-14956/centre500")
    assert 45 <= cropped.sizes["x"] <= 55 and 45 <= cropped.sizes["y"] <= 55
    assert cropped.rio.crs.to_epsg() == 4326
    d = 0.002
    poly = {"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d], [lon, lat + d], [lon - d, lat - d]]]}
    path = tmp_path / "tri.geojson"
    path.write_text(json.dumps(poly))
    pg = _run("crop", "raw/Landcover-14956", "tri", "--polygon", str(path), "--store", store_uri)
    assert pg.returncode == 0, pg.stderr
    tri = ArtifactStore.open(store_uri).read("crop/raw/Landcover-14956/tri", load=True)
    assert tri["reflectance"].isnull().any() and tri["reflectance"].notnull().any()  # outside masked
    far = path.with_name("far.geojson")
    far.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0, 0.01], [0, 0]]]}))
    out = _run("crop", "raw/Landcover-14956", "far", "--polygon", str(far), "--store", store_uri)
    assert out.returncode == 2 and "aoi_outside_raster" in out.stderr
    bad = _run("crop", "raw/Landcover-14956", "x", "--bbox", "1,2,3", "--store", store_uri)
    assert bad.returncode == 2 and "4 comma-separated numbers" in bad.stderr
