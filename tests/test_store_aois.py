"""Every store stage and render on every AOI of the store (acquired, imported, a crop); one clear
fraction; renders matched by acquisition day, with nodata outside the area."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.features import geometry_mask

from stliif.errors import InvalidInputError
from stliif.render import run_render
from stliif.stages import run_crop, run_stage
from stliif.store import ArtifactStore
from stliif.testing import polygon_area, synthetic_cube, write_items

STLIIF = Path(sys.executable).with_name("stliif")
CROP = "crop/raw/bcn/north"


def _utm_box_geojson(path: Path, cube, rows: tuple[int, int], cols: tuple[int, int]) -> Path:
    """A lon/lat GeoJSON polygon of a box of the cube's pixels (rows, cols: [start, stop))."""
    tr = cube.rio.transform()
    to_ll = Transformer.from_crs(str(cube.rio.crs), "EPSG:4326", always_xy=True)
    corners = [tr * (c, r) for c, r in ((cols[0], rows[0]), (cols[1], rows[0]), (cols[1], rows[1]), (cols[0], rows[1]))]
    ring = [list(to_ll.transform(x, y)) for x, y in corners]
    geom = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": geom}]}))
    return path


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    """A store holding an acquired polygon area ``bcn`` (no WorldStrat folder, no HR image) and a
    polygon crop of its northern half, ``crop/raw/bcn/north``."""
    st = ArtifactStore.open(str(tmp_path / "store"))
    cube = synthetic_cube("bcn")
    st.commit({"raw/bcn": cube}, stage="acquire", params={})
    poly = _utm_box_geojson(tmp_path / "north.geojson", cube, (2, 12), (3, 17))
    assert run_crop(st, "raw/bcn", "north", polygon=poly).status == "committed"
    return st


def test_store_stages_run_on_acquired_areas_and_crops(store: ArtifactStore, tmp_path: Path) -> None:
    """mask, clean subset and clean histogram on an area with no HR image and on its crop; paper
    mode (the study's AOIs) is skipped with the reason."""
    for aoi in ("bcn", CROP):
        mask = run_stage(store, "mask", aoi, data=tmp_path)
        assert mask.status == "committed" and mask.artifacts == (f"mask/{aoi}",)
        sub = run_stage(store, "subset", aoi, data=tmp_path, params={"mode": "clean", "k": 3})
        assert sub.status == "committed", sub.reason
        doc = store.read_json(f"subset/clean/{aoi}")
        assert doc["dates"] == ["2024-03-01", "2024-03-11", "2024-03-31"] and "no HR image" in doc["notes"][-1]
        hist = run_stage(store, "histogram", aoi, data=tmp_path, params={"mode": "clean"})
        assert hist.status == "committed", hist.reason
        matched = store.read(f"matched/clean/{aoi}", load=True)  # four bands: R, G, B in V, B08 alone
        assert matched.attrs["bands"] == "B04,B03,B02,B08" and matched["nir"].dims == ("time", "y", "x")
        assert np.array_equal(np.isfinite(matched["nir"].values), np.isfinite(matched["rgb"].values).all(axis=1))
        paper = run_stage(store, "subset", aoi, data=tmp_path, params={"mode": "paper"})
        assert paper.status == "skipped" and "no HR image date" in paper.reason
    crop_mask = store.read(f"mask/{CROP}", load=True)
    assert crop_mask.sizes["y"] == 10 and crop_mask.sizes["x"] == 14  # the crop's grid, not the area's


def test_store_aoi_names_are_checked(store: ArtifactStore, tmp_path: Path) -> None:
    from stliif.stages import resolve_run_aois

    assert resolve_run_aois(["mask"], ["bcn", CROP], data=tmp_path, store=store) == ["bcn", CROP]
    with pytest.raises(InvalidInputError, match="no raw/<aoi> cube"):
        resolve_run_aois(["mask"], ["crop/raw/bcn/south"], data=tmp_path, store=store)
    with pytest.raises(InvalidInputError, match="crop/raw/<aoi>/<name>"):
        resolve_run_aois(["mask"], ["crop/mask/bcn"], data=tmp_path, store=store)
    with pytest.raises(InvalidInputError, match="invalid AOI"):
        run_stage(store, "import", CROP, data=tmp_path)  # the folder stage takes folder names only


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.services  # the CLI starts its Prefect server
def test_cli_etl_mask_on_store_aois(store: ArtifactStore, tmp_path: Path) -> None:
    """`stliif etl --stage mask --aoi <acquired area> --aoi <crop path>` with no WorldStrat folder."""
    uri = store.spec.uri
    bad = _cli("etl", "--stage", "mask", "--aoi", "crop/raw/bcn/south", "--store", uri, "--data", str(tmp_path), tmp_path=tmp_path)
    assert bad.returncode == 2 and "no raw/<aoi> cube" in bad.stderr + bad.stdout
    res = _cli("etl", "--stage", "mask", "--aoi", "bcn", "--aoi", CROP, "--store", uri, "--data", str(tmp_path), tmp_path=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "2 committed" in res.stdout
    assert ArtifactStore.open(uri).list("mask") == ["mask/bcn", f"mask/{CROP}"]


def test_a_crop_renders_as_a_cog_on_its_own_grid(store: ArtifactStore, tmp_path: Path) -> None:
    from stliif.config import RenderSpec

    assert RenderSpec(aoi=CROP, model="median", date="2024-03-11", scale=2).aoi == CROP  # the CLI's request
    out = run_render(store, CROP, "median", date="2024-03-11", scale=2, out_dir=tmp_path / "out")
    assert out["status"] == "committed" and out["path"] == f"render/{CROP}/median/2024-03-11-x2"
    crop = store.read(CROP)
    with rasterio.open(out["files"][0]) as src:
        assert src.crs == crop.rio.crs and (src.height, src.width) == (20, 28)
        np.testing.assert_allclose(tuple(src.bounds), crop.rio.bounds(), atol=1e-6)
        assert math.isnan(src.nodata)


def test_render_min_clear_drops_cloudy_dates(store: ArtifactStore, tmp_path: Path) -> None:
    """2024-03-21 is 10 % clear over the area: used at --min-clear 0.05, not at 0.5 (from the cube's
    masks, and from mask/<aoi> once the mask stage ran)."""
    low = run_render(store, "bcn", "median", date="2024-03-21", scale=1, min_clear=0.05, out_dir=tmp_path / "o")
    assert "2024-03-21" in low["attrs"]["revisits"] and low["attrs"]["nearest_revisit_days"] == 0
    run_stage(store, "mask", "bcn", data=tmp_path)
    high = run_render(store, "bcn", "median", date="2024-03-21", scale=1, min_clear=0.5, out_dir=tmp_path / "o")
    assert "2024-03-21" not in high["attrs"]["revisits"] and high["attrs"]["nearest_revisit_days"] == 10
    assert high["attrs"]["min_clear"] == 0.5
    with pytest.raises(InvalidInputError, match="min_clear must be a fraction"):
        run_render(store, "bcn", "median", date="2024-03-21", scale=1, min_clear=1.5, out_dir=tmp_path / "o")


def test_cog_is_nodata_outside_the_polygon(store: ArtifactStore, tmp_path: Path) -> None:
    out = run_render(store, "bcn", "median", date="2024-03-01", scale=2, out_dir=tmp_path / "out")
    cube = store.read("raw/bcn")
    with rasterio.open(out["files"][0]) as src:
        assert src.crs.to_string() == "EPSG:32631" and math.isnan(src.nodata)
        np.testing.assert_allclose(tuple(src.bounds), cube.rio.bounds(), atol=1e-6)
        data = src.read()
        inside = geometry_mask([{"type": "Polygon", "coordinates": [polygon_area(24, 20)]}], out_shape=(48, 40),
                               transform=src.transform, invert=True)  # fmt: skip
    has_data = np.repeat(np.repeat(cube["data_mask"].values.max(0) == 1, 2, axis=0), 2, axis=1)  # LR -> x2
    assert np.isnan(data[:, ~inside]).all() and (~inside).sum() > 100  # outside the polygon: nodata
    assert np.isfinite(data[:, inside & has_data]).all()  # inside, over LR pixels with data: values
    assert np.isnan(data[:, ~has_data]).all()


def test_a_render_at_a_revisit_day_is_0_days_from_it(store: ArtifactStore, tmp_path: Path) -> None:
    """Acquisitions carry the hour (10:30): a render on the revisit's day is at that revisit."""
    assert str(store.read("raw/bcn")["time"].values[0]).startswith("2024-03-01T10:30")
    out = run_render(store, "bcn", "median", date="2024-03-11", scale=1, out_dir=tmp_path / "out")
    assert out["attrs"]["nearest_revisit_days"] == 0 and out["attrs"]["temporal_support"] == "at revisit"
    between = run_render(store, "bcn", "median", date="2024-03-06", scale=1, out_dir=tmp_path / "out")
    assert between["attrs"]["nearest_revisit_days"] == 5 and between["attrs"]["temporal_support"] == "interpolated"


def test_one_clear_fraction_in_acquire_and_mask(tmp_path: Path) -> None:
    """The same polygon area loaded as acquire loads it (local items through odc-stac) and masked:
    the clear fraction over the polygon's pixels is the same number, and the truth."""
    from odc.geo.geobox import GeoBox

    from stliif.acquire import metadata_table
    from stliif.sources.load import load_cube
    from stliif.types import AOI

    truth = synthetic_cube("bcn")
    items = write_items(truth, tmp_path / "items")
    geobox = GeoBox((truth.sizes["y"], truth.sizes["x"]), truth.rio.transform(), str(truth.rio.crs))
    cube = load_cube(items, ["B02", "B03", "B04", "B08"], geobox, area=AOI.from_like(truth.attrs["geometry"]),
                     resampling="nearest").load()  # fmt: skip
    acquired = [row["clear_fraction"] for row in metadata_table(cube)]
    st = ArtifactStore.open(str(tmp_path / "store"))
    st.commit({"raw/bcn": cube}, stage="acquire", params={})
    masked = run_stage(st, "mask", "bcn", data=tmp_path).summary["clear_fraction"]
    expected = [round(float(v), 4) for v in truth["clear_fraction"].values]  # clear / pixels in the polygon
    assert acquired == masked == expected and expected[2] == pytest.approx(0.1007, abs=1e-4)


def test_clean_evaluation_needs_an_hr_image(store: ArtifactStore, tmp_path: Path) -> None:
    """Protocol C scores store AOIs that have an HR image; an acquired area or a crop is refused
    with that reason (not 'run the import')."""
    from stliif.errors import NoDataError
    from stliif.evaluation import load_clean_sample

    for aoi in ("bcn", CROP):
        run_stage(store, "mask", aoi, data=tmp_path)
        run_stage(store, "subset", aoi, data=tmp_path, params={"mode": "clean"})
        run_stage(store, "histogram", aoi, data=tmp_path, params={"mode": "clean"})
        with pytest.raises(NoDataError, match="has no HR image"):
            load_clean_sample(store, aoi)


def test_cli_render_takes_crop_paths_and_min_clear(store: ArtifactStore, tmp_path: Path) -> None:
    """`stliif render --aoi <crop path>` is checked against the store (not refused as a name), and
    `--min-clear` is checked; both before any flow starts."""
    base = ["render", "--date", "2024-03-11", "--scale", "2", "--model", "median", "--store", store.spec.uri,
            "--out", str(tmp_path / "out")]  # fmt: skip
    missing = _cli(*base, "--aoi", "crop/raw/bcn/south", tmp_path=tmp_path)
    assert missing.returncode == 2 and "crop/raw/bcn/south is not in the store: make it with `stliif crop`" in missing.stderr
    bad = _cli(*base, "--aoi", CROP, "--min-clear", "1.5", tmp_path=tmp_path)
    assert bad.returncode == 2 and "min_clear" in bad.stderr


def _fake_worldstrat(tmp_path: Path) -> Path:
    """A WorldStrat folder layout naming one AOI (enough for the AOI rule; no files read)."""
    (tmp_path / "ws" / "lr_dataset" / "Landcover-1").mkdir(parents=True)
    return tmp_path / "ws"


def test_with_import_an_aoi_only_in_the_store_runs_the_store_stages(store: ArtifactStore, tmp_path: Path) -> None:
    from stliif.stages import resolve_run_aois

    ws = _fake_worldstrat(tmp_path)
    stages = ["import", "mask"]
    assert resolve_run_aois(stages, None, data=ws, store=store) == ["Landcover-1"]
    assert resolve_run_aois(stages, ["Landcover-1", "bcn", CROP], data=ws, store=store) == ["Landcover-1", "bcn", CROP]
    with pytest.raises(InvalidInputError, match=r"unknown AOIs \['nowhere'\]: not in"):
        resolve_run_aois(stages, ["nowhere"], data=ws, store=store)
    with pytest.raises(InvalidInputError, match="not a WorldStrat dataset"):
        resolve_run_aois(stages, ["bcn"], data=tmp_path / "typo", store=store)


def test_etl_flow_skips_the_import_of_store_only_aois(store: ArtifactStore, tmp_path: Path, prefect_harness: None) -> None:
    from flows.etl import etl
    from stliif.config import ETLSpec

    ws = _fake_worldstrat(tmp_path)
    out = etl(ETLSpec(data=str(ws), stages=["import", "mask"], aois=["bcn", CROP]), store.spec)
    assert [(r["stage"], r["aoi"], r["status"]) for r in out["records"]] == [
        ("mask", "bcn", "committed"), ("mask", CROP, "committed")]


def test_l1c_render_is_labelled_and_warns_with_a_trained_model(tmp_path: Path) -> None:
    """An L1C cube's render says top-of-atmosphere in its COG tags; a trained (L2A) model warns."""
    import warnings

    import rasterio

    from stliif.cog import write_cog
    from stliif.models.inference import ModelPredictor
    from stliif.models.registry import make_model
    from stliif.render import render

    cube = synthetic_cube("toa")
    cube.attrs.update(processing_level="L1C", reflectance_units="top-of-atmosphere reflectance (DN x scale + offset)")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        base = render("median", cube, "2024-03-11", scale=1, min_clear=0)  # a baseline: no warning
    assert not [w for w in seen if "top-of-atmosphere" in str(w.message)]
    assert base.attrs["processing_level"] == "L1C" and "warning" not in base.attrs
    with rasterio.open(write_cog(base, tmp_path / "toa.tif")) as src:
        tags = src.tags()
    assert tags["processing_level"] == "L1C" and tags["reflectance_units"].startswith("top-of-atmosphere")
    model = make_model({"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline",
                        "args": {"n_feats": 4, "n_resblocks": 1}}, "hidden": [8]}})  # fmt: skip
    with pytest.warns(UserWarning, match="top-of-atmosphere"):
        out = render(ModelPredictor(model), cube, "2024-03-11", scale=1, min_clear=0)
    assert "L2A" in out.attrs["warning"]
