"""Polygon files as users have them (zipped shapefiles with __MACOSX, GeoPackage layers, GeoJSON
text, Latin-1 attributes) and choosing features: one, by attribute, or one crop per feature."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
import shapely.affinity
import xarray as xr
from affine import Affine

from stliif.errors import InvalidInputError
from stliif.preprocess.features import crop_names, feature_attrs, select_features, slugify
from stliif.preprocess.vectors import polygon_fingerprint, read_polygon
from stliif.stages import run_crop
from stliif.store import ArtifactStore
from stliif.testing import grid_cube

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "vectors"))
from make_vectors import CRS, NAMES, SLUGS, district, districts, make_vectors

STLIIF = Path(sys.executable).with_name("stliif")
T = Affine(10.0, 0, 429_900.0, 0, -10.0, 4_580_900.0)
SHAPE = (100, 220)  # covers the 2000 x 800 m districts with a 100 m margin


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_vectors(tmp_path_factory.mktemp("vectors"))


def raw_cube() -> xr.Dataset:
    h, w = SHAPE
    refl = (np.arange(2 * 4 * h * w, dtype=np.float32).reshape(2, 4, h, w) % 9973) / 1e4
    clm = (np.arange(2 * h * w).reshape(2, h, w) % 7 == 0).astype(np.uint8)
    return grid_cube(T, SHAPE, CRS, times=["2023-04-12", "2023-04-22"], bands=["red", "green", "blue", "nir"],
                     reflectance=refl, masks={"clm": clm}, attrs={"aoi": "city", "source": "test"})


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    st = ArtifactStore.open(str(tmp_path / "store"))
    st.commit({"raw/city": raw_cube()}, stage="import", params={"aoi": "city"})
    return st


# ------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("key", ["shp", "latin1", "nocpg", "latin1_nocpg", "zip", "gpkg", "geojson"])
def test_every_variant_reads_the_names_exactly(vectors: dict[str, Path], key: str) -> None:
    gdf = read_polygon(vectors[key], layer="districts" if key == "gpkg" else None)
    assert gdf["NAME"].tolist() == NAMES  # "Sarrià-Sant Gervasi", never "SarriÃ -Sant Gervasi"
    assert len(gdf) == 10 and gdf.crs is not None


def test_encoding_without_cpg_is_utf8_when_valid_else_latin1(vectors: dict[str, Path]) -> None:
    assert not vectors["nocpg"].with_suffix(".cpg").exists()
    assert read_polygon(vectors["nocpg"]).attrs["encoding"].startswith("UTF-8 (no .cpg")
    assert read_polygon(vectors["latin1_nocpg"]).attrs["encoding"].startswith("ISO-8859-1 (no .cpg")
    assert read_polygon(vectors["latin1"]).attrs["encoding"] == "ISO-8859-1"  # from the .cpg
    # what GDAL alone makes of UTF-8 bytes without a .cpg: the bug this reader avoids
    assert pyogrio.read_dataframe(vectors["nocpg"])["NAME"][4] == "SarriÃ\xa0-Sant Gervasi"


def test_double_encoded_text_is_reported(tmp_path: Path) -> None:
    gdf = districts()
    gdf["NAME"] = [n.encode("utf-8").decode("latin-1") for n in NAMES]  # the broken file
    pyogrio.write_dataframe(gdf, tmp_path / "broken.gpkg")
    with pytest.warns(UserWarning, match="double-encoded UTF-8.*'Sants-Montjuïc'"):
        read_polygon(tmp_path / "broken.gpkg")


def test_zip_in_subfolder_and_vsizip_paths(vectors: dict[str, Path]) -> None:
    z = vectors["zip"]
    for source in (z, str(z), f"/vsizip/{z}", f"/vsizip/{z}/districts/districts.shp"):
        gdf = read_polygon(source)
        assert gdf.attrs["source"] == f"{z}!districts/districts.shp" and len(gdf) == 10


def test_geojson_text_is_read_like_the_file(vectors: dict[str, Path]) -> None:
    text = vectors["geojson"].read_text()
    a, b = read_polygon(text), read_polygon(vectors["geojson"])
    assert a["NAME"].tolist() == b["NAME"].tolist() == NAMES
    assert all(x.equals_exact(y, 1e-9) for x, y in zip(a.geometry, b.geometry, strict=True))
    assert polygon_fingerprint(text)[0] == "GeoJSON text"


@pytest.mark.parametrize(
    ("key", "kwargs", "match"),
    [
        ("two_zip", {}, r"2 vector files in the zip \(a/districts.shp, b/districts_latin1.shp\)"),
        ("noprj", {}, "projection missing.*no CRS"),
        ("empty", {}, "no features"),
        ("gpkg", {}, r"2 layers \['districts', 'outline'\]"),
        ("gpkg", {"layer": "roads"}, "no layer 'roads'"),
    ],
)
def test_bad_vector_files(vectors: dict[str, Path], key: str, kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        read_polygon(vectors[key], **kwargs)


def test_zip_without_prj_or_vector(tmp_path: Path, vectors: dict[str, Path]) -> None:
    import zipfile

    bad = tmp_path / "noprj.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for ext in (".shp", ".shx", ".dbf"):
            z.write(vectors["noprj"].with_suffix(ext), f"sub/noprj{ext}")
    with pytest.raises(InvalidInputError, match=r"projection missing \(sub/noprj.prj not in the zip\)"):
        read_polygon(bad)
    with zipfile.ZipFile(tmp_path / "none.zip", "w") as z:
        z.writestr("readme.txt", "nothing")
    with pytest.raises(InvalidInputError, match="no shapefile, GeoPackage or GeoJSON in the zip"):
        read_polygon(tmp_path / "none.zip")


# ------------------------------------------------------------------------------------ choosing


def test_select_and_name_features(vectors: dict[str, Path]) -> None:
    gdf = read_polygon(vectors["zip"])
    assert select_features(gdf, feature=4)["NAME"].tolist() == ["Sarrià-Sant Gervasi"]
    assert select_features(gdf, where="NAME=Horta-Guinardó").index.tolist() == [6]
    assert select_features(gdf, where="CODE=3").index.tolist() == [2]
    assert len(select_features(gdf)) == 10
    assert crop_names(gdf, "NAME") == SLUGS
    assert slugify("Sarrià-Sant Gervasi") == "sarria-sant-gervasi"
    attrs = feature_attrs(gdf, 4)
    assert attrs["NAME"] == "Sarrià-Sant Gervasi" and attrs["CODE"] == 5
    json.dumps(attrs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature": 10}, r"feature 10 out of range: the file has 10 features \(0 to 9\)"),
        ({"feature": -1}, "out of range"),
        ({"where": "DISTRICT=Gràcia"}, "no attribute 'DISTRICT' .*NAME, CODE, AREA_KM2"),
        ({"where": "NAME=Gracia"}, "no feature has NAME = 'Gracia'"),
        ({"where": "NAME"}, "expected ATTR=VALUE"),
        ({"feature": 1, "where": "CODE=2"}, "at most one"),
    ],
)
def test_bad_choices(vectors: dict[str, Path], kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        select_features(read_polygon(vectors["shp"]), **kwargs)


def test_duplicate_names_after_slugify() -> None:
    gdf = districts()
    gdf.loc[9, "NAME"] = "Sants Montjuic"
    with pytest.raises(InvalidInputError, match="'Sants-Montjuïc' and 'Sants Montjuic' both make the crop name 'sants-montjuic'"):
        crop_names(gdf, "NAME")
    with pytest.raises(InvalidInputError, match="no attribute 'name'"):
        crop_names(gdf, "name")


# ------------------------------------------------------------------------------------ run_crop


def check_crop(crop: xr.Dataset, src: xr.Dataset, polygon: shapely.Geometry) -> None:
    """Values equal the source inside the polygon (pixel centres), NaN outside."""
    sub = src.sel(x=crop.x, y=crop.y)
    xx, yy = np.meshgrid(crop.x.values, crop.y.values)
    inside = shapely.contains_xy(polygon, xx, yy)
    refl, ref = crop["reflectance"].values, sub["reflectance"].values
    assert np.array_equal(refl[..., inside], ref[..., inside])
    assert np.isnan(refl[..., ~inside]).all()
    assert (~inside).any()  # the cut corner is masked
    # every source pixel centre inside the polygon is in the crop
    sx, sy = np.meshgrid(src.x.values, src.y.values)
    assert inside.sum() == shapely.contains_xy(polygon, sx, sy).sum()
    assert crop.rio.crs.to_string() == CRS


def test_run_crop_each_commits_once(store: ArtifactStore, vectors: dict[str, Path]) -> None:
    before = len(list(store.repo.ancestry(branch="main")))
    res = run_crop(store, "raw/city", "districts", polygon=vectors["zip"], each="NAME")
    assert len(list(store.repo.ancestry(branch="main"))) == before + 1
    assert res.artifacts == tuple(f"crop/raw/city/districts/{s}" for s in SLUGS)
    src = store.read("raw/city", load=True)
    for i, slug in enumerate(SLUGS):
        crop = store.read(f"crop/raw/city/districts/{slug}", load=True)
        check_crop(crop, src, district(i))
        assert crop.attrs["crop_feature"]["NAME"] == NAMES[i]
        assert crop.attrs["crop_feature_index"] == i
        assert crop.attrs["crop_polygon"].endswith("districts.zip!districts/districts.shp")
    again = run_crop(store, "raw/city", "districts", polygon=vectors["zip"], each="NAME")
    assert again.status == "unchanged"


def test_run_crop_one_feature_and_where(store: ArtifactStore, vectors: dict[str, Path]) -> None:
    src = store.read("raw/city", load=True)
    run_crop(store, "raw/city", "f4", polygon=vectors["gpkg"], layer="districts", feature=4)
    crop = store.read("crop/raw/city/f4", load=True)
    check_crop(crop, src, district(4))
    assert crop.attrs["crop_feature"]["NAME"] == "Sarrià-Sant Gervasi"
    run_crop(store, "raw/city", "horta", polygon=vectors["geojson"].read_text(), where="NAME=Horta-Guinardó")
    crop = store.read("crop/raw/city/horta", load=True)
    assert crop.attrs["crop_polygon"] == "GeoJSON text" and crop.attrs["crop_features"] == [6]
    all_ = run_crop(store, "raw/city", "all", polygon=vectors["shp"])
    assert store.read(all_.artifacts[0]).attrs["crop_features"] == list(range(10))


def test_bad_choices_commit_nothing(store: ArtifactStore, vectors: dict[str, Path], tmp_path: Path) -> None:
    snap = store.snapshot_id("main")
    gdf = districts()
    gdf.loc[9, "NAME"] = "Sants Montjuic"
    pyogrio.write_dataframe(gdf, tmp_path / "dups.shp", encoding="UTF-8")
    for kwargs in ({"each": "NOPE"}, {"where": "NAME=x"}, {"feature": 12}, {"each": "NAME", "polygon": tmp_path / "dups.shp"},
                   {"polygon": vectors["empty"]}, {"polygon": vectors["noprj"]}):  # fmt: skip
        with pytest.raises(InvalidInputError):
            run_crop(store, "raw/city", "bad", **{"polygon": vectors["zip"], **kwargs})
    assert store.snapshot_id("main") == snap and store.list("crop") == []


def test_polygon_crop_masks_stay_integers(store: ArtifactStore, vectors: dict[str, Path]) -> None:
    """A polygon crop's integer masks read back from the store as they were cut: uint8, 0 outside
    the polygon, nodata 0 (a ``nodata`` attribute, not a ``_FillValue`` xarray decodes to NaN)."""
    run_crop(store, "raw/city", "f4", polygon=vectors["gpkg"], layer="districts", feature=4)
    crop = store.read("crop/raw/city/f4", load=True)
    clm = crop["clm"]
    assert clm.dtype == np.uint8 and clm.rio.nodata == 0 and "_FillValue" not in clm.attrs
    outside = crop["reflectance"].isel(time=0, band=0).isnull().values
    assert outside.any() and (clm.values[:, outside] == 0).all()
    src = store.read("raw/city", load=True).sel(x=crop.x, y=crop.y)
    np.testing.assert_array_equal(clm.values[:, ~outside], src["clm"].values[:, ~outside])


def test_read_cube_mends_masks_of_crops_committed_before(store: ArtifactStore) -> None:
    """Crops committed before declared their masks' nodata 0 as a ``_FillValue``, which xarray
    reads back as NaN floats: ``read_cube`` gives those masks back as uint8 with 0 there."""
    from stliif.cubes import read_cube

    old = store.read("raw/city", load=True)
    old["clm"].attrs["_FillValue"] = 0  # what crops committed before wrote
    store.commit({"crop/raw/city/old": old}, stage="crop", params={"source": "raw/city", "name": "old"})
    assert store.read("crop/raw/city/old")["clm"].dtype.kind == "f"
    cube = read_cube(store, "crop/raw/city/old")
    assert cube["clm"].dtype == np.uint8
    np.testing.assert_array_equal(cube["clm"].values, old["clm"].values)


def test_check_crop_refuses_from_metadata_alone(
    store: ArtifactStore, vectors: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check_crop`` (what ``stliif crop`` runs before its flow) makes run_crop's checks that
    used to need the cut, the windows on the grid included, with the source never loaded."""
    from pyproj import Transformer

    from stliif.config import CropSpec
    from stliif.errors import NoDataError
    from stliif.stages import check_crop

    read = store.read

    def lazy_only(path: str, **kwargs: object) -> xr.Dataset:
        assert not kwargs.get("load"), "check_crop loaded the source"
        return read(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "read", lazy_only)
    gdf = districts()
    gdf.loc[9, "geometry"] = shapely.affinity.translate(gdf.geometry[9], 50_000)  # off the raster
    pyogrio.write_dataframe(gdf, tmp_path / "far.shp", encoding="UTF-8")
    with pytest.raises(NoDataError, match="aoi_outside_raster"):
        check_crop(store, CropSpec(source="raw/city", name="x", polygon=str(tmp_path / "far.shp"), each="NAME"))
    corner = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(T.c, T.f)  # the raster's top-left
    with pytest.raises(NoDataError, match="crop_partly_outside_raster"):
        check_crop(store, CropSpec(source="raw/city", name="sq", center=corner, size_m=500))
    with pytest.raises(NoDataError, match="missing"):
        check_crop(store, CropSpec(source="raw/nope", name="sq", center=corner, size_m=500))
    plan = check_crop(store, CropSpec(source="raw/city", name="d", polygon=str(vectors["zip"]), each="NAME"))
    assert list(plan.groups) == [f"crop/raw/city/d/{s}" for s in SLUGS]
    assert plan.inputs["raw/city"] == store.version("raw/city") and store.list("crop") == []


# ------------------------------------------------------------------------------------ the CLI


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``stliif`` command, as a user runs it."""
    return subprocess.run([str(STLIIF), *args], capture_output=True, text=True, timeout=300, env=dict(os.environ))


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command line in this process (Typer's runner): seconds instead of a start-up."""
    from typer.testing import CliRunner

    from stliif_cli.main import app

    res = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)


def test_cli_crop_each_district(store: ArtifactStore, vectors: dict[str, Path], prefect_api: str) -> None:
    uri = store.spec.uri
    out = _run("crop", "raw/city", "districts", "--polygon", str(vectors["zip"]), "--each", "NAME", "--store", uri)
    assert out.returncode == 0, out.stderr
    assert "committed 10 crops" in out.stdout and "crop/raw/city/districts/sarria-sant-gervasi" in out.stdout
    st = ArtifactStore.open(uri, create=False)
    last = st.log(limit=1)[0].metadata
    assert last["stage"] == "crop" and last["run_id"], "the crops are committed by the crop flow's run"
    assert st.list("crop/raw/city/districts") == sorted(f"crop/raw/city/districts/{s}" for s in SLUGS)
    src = st.read("raw/city", load=True)
    for i, slug in enumerate(SLUGS):
        crop = st.read(f"crop/raw/city/districts/{slug}", load=True)
        check_crop(crop, src, district(i))
        assert crop.attrs["crop_feature"] == {"NAME": NAMES[i], "CODE": i + 1, "AREA_KM2": pytest.approx(district(i).area / 1e6)}
    one = _run("crop", "raw/city", "gracia", "--polygon", f"/vsizip/{vectors['zip']}/districts/districts.shp",
               "--where", "NAME=Gràcia", "--store", uri)  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert st.read("crop/raw/city/gracia").attrs["crop_feature_index"] == 5


@pytest.mark.parametrize(
    ("polygon", "args", "match"),
    [
        ("zip", ["--each", "NOPE"], "no attribute 'NOPE'"),
        ("zip", ["--feature", "10"], "feature 10 out of range"),
        ("zip", ["--where", "NAME=Atlantis"], "no feature has NAME = 'Atlantis'"),
        ("dups", ["--each", "NAME"], "both make the crop name 'sants-montjuic'"),
        ("far", ["--each", "NAME"], "aoi_outside_raster"),
        ("empty", [], "empty.shp: no features"),
        ("noprj", [], "noprj.shp: shapefile projection missing"),
        ("two_zip", [], "2 vector files in the zip"),
        ("gpkg", [], "choose one with layer= \\(--layer\\)"),
    ],
)
def test_cli_bad_input_is_one_line(
    store: ArtifactStore, vectors: dict[str, Path], tmp_path: Path, polygon: str, args: list[str], match: str
) -> None:
    import re

    gdf = districts()
    if polygon == "dups":
        gdf.loc[9, "NAME"] = "Sants Montjuic"
    if polygon == "far":  # the last district 50 km east of the raster
        gdf.loc[9, "geometry"] = shapely.affinity.translate(gdf.geometry[9], 50_000)
    if polygon in ("dups", "far"):
        pyogrio.write_dataframe(gdf, tmp_path / f"{polygon}.shp", encoding="UTF-8")
    path = vectors[polygon] if polygon in vectors else tmp_path / f"{polygon}.shp"
    snap = store.snapshot_id("main")
    out = _invoke("crop", "raw/city", "x", "--polygon", str(path), *args, "--store", store.spec.uri)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert re.search(match, out.stderr) and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert ArtifactStore.open(store.spec.uri, create=False).snapshot_id("main") == snap


def test_cli_geojson_text(store: ArtifactStore, vectors: dict[str, Path], prefect_api: str) -> None:
    text = json.dumps({"type": "Feature", "properties": {"NAME": "Gràcia"},
                       "geometry": shapely.geometry.mapping(districts().to_crs("EPSG:4326").geometry[5])})  # fmt: skip
    out = _invoke("crop", "raw/city", "text", "--polygon", text, "--store", store.spec.uri)
    assert out.returncode == 0, out.stderr
    crop = store.read("crop/raw/city/text", load=True)
    assert crop.attrs["crop_polygon"] == "GeoJSON text" and crop.attrs["crop_feature"] == {"NAME": "Gràcia"}
    assert int(crop["reflectance"].isel(time=0, band=0).notnull().sum()) == int(
        shapely.contains_xy(district(5), *np.meshgrid(raw_cube().x.values, raw_cube().y.values)).sum()
    )


# ------------------------------------------------------------------------------------ the docs


def doc_example(doc: str, name: str) -> str:
    """The code block under ``<!-- example: name ... -->`` in docs/<doc>."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / doc).read_text()
    m = re.search(rf"<!-- example: {name}\b.*?-->\s*```\w+\n(.*?)```", text, re.DOTALL)
    assert m, f"no example {name!r} in docs/{doc}"
    return m.group(1)


def test_docs_crop_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> None:
    import shlex

    make_vectors(tmp_path)
    monkeypatch.chdir(tmp_path)
    ArtifactStore.open("stliif-store").commit({"raw/city": raw_cube()}, stage="import", params={"aoi": "city"})
    for line in doc_example("preprocessing.md", "crop-cli").splitlines():
        args = shlex.split(line, comments=True)
        assert args[0] == "stliif"
        out = _invoke(*args[1:])
        assert out.returncode == 0, (line, out.stderr)
    st = ArtifactStore.open("stliif-store", create=False)
    assert len(st.list("crop/raw/city/districts")) == 10
    assert st.read("crop/raw/city/gracia").attrs["crop_feature"]["NAME"] == "Gràcia"
    assert st.read("crop/raw/city/d4").attrs["crop_feature"]["NAME"] == "Sarrià-Sant Gervasi"
    assert st.read("crop/raw/city/horta").attrs["crop_feature"]["NAME"] == "Horta-Guinardó"
    scope: dict = {}
    exec(doc_example("preprocessing.md", "crop-python"), scope)
    assert scope["one"].index.tolist() == [4] and scope["names"] == SLUGS
    assert scope["result"].status == "unchanged" and len(scope["result"].artifacts) == 10


def test_crops_of_a_packed_cube_are_packed(tmp_path: Path, vectors: dict[str, Path]) -> None:
    """A cube stored as DN (the import's reflectance) gives crops stored as DN too, NaN outside
    each district as the fill, read back to the bit."""
    import zarr

    from stliif.store import PACK_ENCODING

    scale = np.float32(1e-4)
    cube = raw_cube()
    dn = np.arange(cube["reflectance"].size, dtype=np.int64).reshape(cube["reflectance"].shape) % 9973 + 1
    cube["reflectance"] = cube["reflectance"].copy(data=dn.astype(np.float32) * scale)
    cube["reflectance"].encoding[PACK_ENCODING] = {"dtype": "uint16", "scale_factor": float(scale), "fill": 0}
    st = ArtifactStore.open(str(tmp_path / "store"))
    st.commit({"raw/city": cube}, stage="import", params={"aoi": "city"})
    res = run_crop(st, "raw/city", "districts", polygon=vectors["zip"], each="NAME")
    src = st.read("raw/city", load=True)
    for i, path in enumerate(res.artifacts):
        stored = zarr.open_group(st._session(None).store, path=path, mode="r")["reflectance"]
        assert stored.dtype == np.uint16, path
        crop = st.read(path, load=True)
        assert crop["reflectance"].dtype == np.float32
        check_crop(crop, src, district(i))
