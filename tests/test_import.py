"""`run_import` and `stliif import`: a local SAFE product into raw/<aoi>, committed the way acquire commits."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stliif.config import ImportSpec, StoreSpec
from stliif.errors import InvalidInputError
from stliif.ingest import run_import
from stliif.raw_schema import check_raw
from stliif.sources.load import REFLECTANCE_UNITS
from stliif.store import ArtifactStore
from tests.fixtures.safe.make_safe import EPSG, SIZE_M, ULX, ULY, expected_dn, make_safe

STLIIF = Path(sys.executable).with_name("stliif")


def _store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))


def _expected(band: str, offset: float) -> np.ndarray:
    dn = expected_dn(band)
    out = dn.astype(np.float32) * np.float32(1e-4) + np.float32(offset)
    out[dn == 0] = np.nan
    return out


def _bbox_lonlat(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    (w, e), (s, n) = t.transform([x0, x1], [y0, y1])
    return (w, s, e, n)


def test_run_import_commits_a_safe_zip_with_provenance(tmp_path: Path) -> None:
    z = make_safe(tmp_path / "in", level="L1C", baseline="05.09", zipped=True)
    store = _store(tmp_path)
    spec = ImportSpec(source=str(z), aoi="city", bands=["blue", "red"], quicklooks=None)
    result = run_import(store, spec)
    assert result.status == "committed" and result.dates == ["2023-04-12"] and result.found == {"safe": 1}
    cube = store.read("raw/city", load=True)
    check_raw(cube, provenance=True)  # as committed, read back
    # the area is the product's footprint: the grid is the product's own 10 m grid
    assert cube.rio.crs.to_epsg() == 32631 and cube.sizes["y"] == cube.sizes["x"] == SIZE_M // 10
    assert tuple(cube.rio.transform())[2] == ULX and tuple(cube.rio.transform())[5] == ULY
    for band in ("B02", "B04"):
        np.testing.assert_allclose(cube["reflectance"].sel(band=band).values[0], _expected(band, -0.1), rtol=1e-6)
    assert cube.attrs["processing_level"] == "L1C" and cube.attrs["reflectance_units"] == REFLECTANCE_UNITS["L1C"]
    assert cube.attrs["source"] == "safe"
    row = result.table[0]
    assert row["processing_level"] == "L1C" and row["processing_baseline"] == "05.09"
    assert row["source_kind"] == "safe" and row["source_href"] == str(z.resolve())
    assert row["cloud_mask"] == "MSK_CLASSI_B00" and row["reflectance_offset"] == pytest.approx(-0.1)
    commit = store.log(limit=1)[0]
    assert commit.metadata["stage"] == "import"
    # a rerun finds nothing new
    again = run_import(store, spec)
    assert again.status == "unchanged" and again.reason == "no new acquisitions"


def test_run_import_old_baseline_folder_within_a_bbox(tmp_path: Path) -> None:
    root = make_safe(tmp_path / "in", level="L2A", baseline="02.09")
    bbox = _bbox_lonlat(ULX + 100, ULY - 500, ULX + 500, ULY - 100)
    store = _store(tmp_path)
    result = run_import(store, ImportSpec(source=str(root), aoi="part", bbox=bbox, bands=["B02"], quicklooks=None))
    assert result.status == "committed"
    cube = store.read("raw/part", load=True)
    assert cube.sizes["x"] < SIZE_M // 10 and cube.attrs["processing_level"] == "L2A"
    assert "scl" in cube and cube["cloud_mask"].values.tolist() == ["SCL"]
    refl = cube["reflectance"].sel(band="B02").values[0]
    valid = refl[np.isfinite(refl)]
    assert valid.size > 0 and np.all((valid > 0.1 - 1e-6) & (valid < 0.105))  # DN 1000-1049 x 1e-4, no offset


def test_import_bad_input_is_refused_and_commits_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    product = make_safe(tmp_path / "in", level="L1C", bands=("B02", "B03", "B04"))
    s1 = tmp_path / "S1A_IW_GRDH_1SDV_20230412T055950_20230412T060015_048065_05C6D2_1F1A.SAFE"
    s1.mkdir()
    (s1 / "manifest.safe").write_text("<xfdu:XFDU xmlns:xfdu='urn:ccsds:schema:xfdu:1'/>")
    cases = [
        (dict(source=str(tmp_path / "photos")), "not a SAFE product"),
        (dict(source=str(s1)), "not a Sentinel-2 MSI product"),
        (dict(source=str(product), bands=["B02", "nir"]), "has no band B08"),
        (dict(source=str(product), bands=["B02"], start="2024-01-01", end="2024-02-01"), "nothing between 2024-01-01 and 2024-02-01"),
    ]
    for fields, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            run_import(store, ImportSpec(aoi="bad", quicklooks=None, **fields))
    assert store.list("raw") == []


def test_import_of_an_area_outside_the_product_is_no_data(tmp_path: Path) -> None:
    z = make_safe(tmp_path / "in", level="L1C", zipped=True)
    store = _store(tmp_path)
    far = _bbox_lonlat(ULX + 5000, ULY - 5500, ULX + 5500, ULY - 5000)
    result = run_import(store, ImportSpec(source=str(z), aoi="far", bbox=far, quicklooks=None))
    assert result.status == "no-data" and "overlaps the area" in result.reason
    assert store.list("raw") == []


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


@pytest.mark.integration  # each command starts its own Prefect server (about a minute each)
def test_docs_sources_examples_run(tmp_path: Path) -> None:
    """Every `stliif import` example of docs/sources.md runs as written (on the fixtures, into a
    fresh store); the SAFE one is the end-to-end check: values, dates, level, provenance."""
    from tests.fixtures.files.make_band_folder import make_band_folder
    from tests.fixtures.stac.make_static_catalog import make_static_catalog

    z = make_safe(tmp_path, level="L1C", baseline="05.09", zipped=True)
    make_static_catalog(tmp_path / "catalog")
    make_band_folder(tmp_path / "band-files")
    doc = (Path(__file__).parents[1] / "docs" / "sources.md").read_text()
    examples = [line.strip() for line in doc.splitlines() if line.strip().startswith("stliif import ")]
    assert len(examples) == 3 and z.name in examples[0]
    store = tmp_path / "store"
    for example in examples:
        out = _cli(*shlex.split(example)[1:], "--store", str(store), "--quicklooks", str(tmp_path / "ql"),
                   tmp_path=tmp_path)
        assert out.returncode == 0 and "committed" in out.stdout, (example, out.stderr[-2000:])
    s = ArtifactStore.open(StoreSpec(uri=str(store)), create=False)
    assert s.list("raw") == ["raw/city", "raw/city-cat", "raw/loose"]
    cube = s.read("raw/city", load=True)
    assert [str(t)[:10] for t in cube["time"].values] == ["2023-04-12"]
    for band in ("B02", "B03", "B04", "B08"):
        np.testing.assert_allclose(cube["reflectance"].sel(band=band).values[0], _expected(band, -0.1), rtol=1e-6)
    assert cube["processing_level"].values.tolist() == ["L1C"] and cube.attrs["processing_level"] == "L1C"
    assert cube["source_kind"].values.tolist() == ["safe"] and cube["source_href"].values.tolist() == [str(z.resolve())]
    assert cube["processing_baseline"].values.tolist() == ["05.09"]
    assert cube["cloud_mask"].values.tolist() == ["MSK_CLASSI_B00"]
    assert s.read("raw/city-cat")["source_kind"].values.tolist() == ["stac-static"] * 2
    assert s.read("raw/loose")["source_kind"].values.tolist() == ["files"] * 2


def test_cli_import_errors_and_no_data_exit_codes(tmp_path: Path) -> None:
    """Checked before any flow runs: one line and exit 2 for bad input, exit 3 (0 with
    --allow-empty) when the source has nothing over the area."""
    from typer.testing import CliRunner

    from stliif_cli.main import app

    def cli(*args: str) -> object:
        return CliRunner().invoke(app, [*args, "--store", str(tmp_path / "store")])

    (tmp_path / "photos").mkdir()
    bad = cli("import", str(tmp_path / "photos"), "--aoi", "x")
    assert bad.exit_code == 2 and bad.stderr.strip().count("\n") == 0 and "not a SAFE product" in bad.stderr
    z = make_safe(tmp_path / "in", level="L1C", zipped=True)
    missing = cli("import", str(z), "--aoi", "x", "--bands", "B12")
    assert missing.exit_code == 2 and "has no band B12" in missing.stderr
    late = cli("import", str(z), "--aoi", "x", "--bands", "B02", "--start", "2024-01-01")
    assert late.exit_code == 2 and "nothing between 2024-01-01" in late.stderr
    far = ",".join(f"{v:.6f}" for v in _bbox_lonlat(ULX + 5000, ULY - 5500, ULX + 5500, ULY - 5000))
    empty = cli("import", str(z), "--aoi", "x", "--bbox", far)
    assert empty.exit_code == 3 and "overlaps the area" in empty.stderr
    allowed = cli("import", str(z), "--aoi", "x", "--bbox", far, "--allow-empty")
    assert allowed.exit_code == 0 and "no-data" in allowed.stdout
    store = tmp_path / "store"
    assert not store.exists() or ArtifactStore.open(StoreSpec(uri=str(store)), create=False).list("raw") == []


@pytest.mark.services  # the CLI starts its Prefect server
def test_cli_import_with_a_local_dem(tmp_path: Path) -> None:
    """``stliif import ... --dem-file`` puts the DEM on the cube's grid; nodata stays NaN; a
    ``--dem-nodata`` without files, or a missing file, is one line and commits nothing."""
    import rasterio
    from rasterio.transform import from_origin

    z = make_safe(tmp_path / "in", level="L1C", zipped=True)
    dem = tmp_path / "dem.tif"
    heights = np.full((SIZE_M // 10, SIZE_M // 10), 120.0, np.float32)
    heights[:, :5] = -9999.0  # a nodata strip on the west edge
    with rasterio.open(dem, "w", driver="GTiff", width=heights.shape[1], height=heights.shape[0], count=1,
                       dtype="float32", crs=f"EPSG:{EPSG}", transform=from_origin(ULX, ULY, 10, 10),
                       nodata=-9999.0) as dst:  # fmt: skip
        dst.write(heights, 1)
    store = str(tmp_path / "store")
    for bad, why in ((["--dem-nodata", "0"], "--dem-nodata applies to --dem-file files only"),
                     (["--dem-file", str(tmp_path / "none.tif")], "not found")):  # fmt: skip
        out = _cli("import", str(z), "--aoi", "city", "--store", store, *bad, tmp_path=tmp_path)
        assert out.returncode == 2 and why in out.stderr and "Traceback" not in out.stderr
    assert not Path(store).exists() or ArtifactStore.open(store, create=False).list("raw") == []
    out = _cli("import", str(z), "--aoi", "city", "--store", store, "--dem-file", str(dem), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "committed dem of raw/city" in " ".join(out.stdout.split())
    last = ArtifactStore.open(store, create=False).log(limit=1)[0].metadata  # the DEM's commit
    assert last["stage"] == "dem" and last["run_id"], "the DEM is committed by the import flow's run"
    cube = ArtifactStore.open(store, create=False).read("raw/city", load=True)
    d = cube["dem"].values
    assert d.shape == (cube.sizes["y"], cube.sizes["x"])
    assert np.isnan(d[:, :3]).all() and np.allclose(d[:, 8:], 120.0)  # nodata stays NaN, no cliff to 0
