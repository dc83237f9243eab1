"""WorldStrat -> static STAC catalog of COGs, on two real AOIs (one per metadata dialect, one
without SCL and with spaces in its file names); odc-stac reads the pixels back exactly.

JSON-schema validation (``item.validate()``) needs the extension schemas from the network and
is not run; the fields it would check are asserted directly.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio

from stliif.errors import InvalidInputError, NoDataError
from stliif.sources.providers import custom_provider
from stliif.sources.stac import filter_items_with_assets, harmonise, reflectance_params, to_reflectance
from stliif.sources.stac_export import (
    CATALOG_ID,
    HR_COLLECTION,
    LR_COLLECTION,
    export_worldstrat_stac,
)
from stliif.sources.worldstrat import BANDS, find_aoi_files, read_hr, read_lr, read_metadata

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The .shapely.ops.transform:DeprecationWarning"),  # odc-geo
]

AOIS = ["Landcover-14956", "Amnesty_POI-13-1-1"]
MASK_VARS = {"CLM": "clm", "CLP": "clp", "SCL": "scl", "dataMask": "data_mask"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"test tried to open a network connection to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def exported(worldstrat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_worldstrat_stac(worldstrat, tmp_path_factory.mktemp("stac") / "ws", aois=AOIS)


def lr_items(catalog: Path) -> list[pystac.Item]:
    col = pystac.Collection.from_file(str(catalog.parent / LR_COLLECTION / "collection.json"))
    return sorted(col.get_items(), key=lambda i: (i.properties["worldstrat:aoi"], i.properties["worldstrat:revisit"]))


def test_catalog_structure(exported: Path, worldstrat: Path) -> None:
    assert exported.name == "catalog.json"
    cat = pystac.Catalog.from_file(str(exported))
    assert cat.id == CATALOG_ID
    assert sorted(c.id for c in cat.get_children()) == [HR_COLLECTION, LR_COLLECTION]
    for link in json.loads(exported.read_text())["links"]:
        assert link["href"].startswith("./"), "catalog links are relative (movable, servable)"
    assert not list(exported.parent.parent.glob(".ws.tmp-*")), "no temporary folder left"

    items = lr_items(exported)
    counts = {a: len(find_aoi_files(worldstrat, a).revisits) for a in AOIS}
    assert len(items) == sum(counts.values())
    col = pystac.Collection.from_file(str(exported.parent / LR_COLLECTION / "collection.json"))
    assert col.extent.temporal.intervals[0][0] == min(i.datetime for i in items)
    assert len(col.extent.spatial.bboxes) == 1 + len(AOIS)

    for item in items:
        aoi, n = item.properties["worldstrat:aoi"], item.properties["worldstrat:revisit"]
        rev = next(r for r in find_aoi_files(worldstrat, aoi).revisits if r.n == n)
        meta = read_metadata(rev.metadata)
        assert item.id == f"{aoi}-{n}" and item.collection_id == LR_COLLECTION
        assert item.datetime is not None and item.datetime.date().isoformat() == str(meta["date"])[:10]
        assert item.properties["eo:cloud_cover"] == meta["cloud_cover"]
        with rasterio.open(rev.data) as src:
            bounds, shape, transform = src.bounds, src.shape, src.transform
        assert item.bbox == pytest.approx(list(bounds), abs=1e-12)
        assert item.geometry is not None and item.geometry["type"] == "Polygon"
        props = item.properties
        assert props["proj:code"] == "EPSG:4326" and props["proj:shape"] == list(shape)
        assert props["proj:transform"] == pytest.approx(list(transform)[:6])
        assert any("projection" in u for u in item.stac_extensions)
        assert list(item.assets)[: len(BANDS)] == list(BANDS)
        has_scl = rev.masks["SCL"] is not None
        assert ("SCL" in item.assets) == has_scl and aoi.startswith("Landcover") == has_scl
        for band in BANDS:
            d = item.assets[band].to_dict()
            assert d["type"] == pystac.MediaType.COG and d["roles"] == ["data", "reflectance"]
            assert d["eo:bands"][0]["name"] == band and "common_name" in d["eo:bands"][0]
            assert d["raster:bands"] == [{"nodata": 0, "data_type": "uint16", "spatial_resolution": 10.0, "scale": 0.0001, "offset": 0.0}]
        for key, asset in item.assets.items():
            assert asset.href.startswith("file:///")
            path = Path(asset.href[len("file://"):])
            assert path.is_file() and path.is_relative_to(exported.parent)
            with rasterio.open(path) as src:
                assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", key

    hr = pystac.Collection.from_file(str(exported.parent / HR_COLLECTION / "collection.json"))
    hr_items = sorted(hr.get_items(), key=lambda i: i.id)
    assert [i.id for i in hr_items] == sorted(AOIS)
    for item in hr_items:
        assert set(item.assets) == {"pan", "rgbn"}
        assert item.assets["pan"].extra_fields["proj:shape"] == [1054, 1054]
        assert [b["common_name"] for b in item.assets["rgbn"].extra_fields["eo:bands"]] == ["red", "green", "blue", "nir"]


def test_odc_stac_reproduces_the_source_pixels_exactly(exported: Path, worldstrat: Path) -> None:
    items = lr_items(exported)
    for aoi in AOIS:
        files = find_aoi_files(worldstrat, aoi)
        lr = read_lr(files)
        for item in (i for i in items if i.properties["worldstrat:aoi"] == aoi):
            n = item.properties["worldstrat:revisit"]
            rev = next(r for r in files.revisits if r.n == n)
            masks = [m for m in MASK_VARS if m in item.assets]
            ds = odc.stac.load([item], bands=[*BANDS, *masks, "red"], chunks=None)
            with rasterio.open(rev.data) as src:
                raw, transform = src.read(), src.transform
            assert ds.odc.geobox.affine == transform and ds.odc.geobox.shape == raw.shape[1:]
            dn = np.stack([ds[b].values[0] for b in BANDS])
            assert dn.dtype == np.uint16
            np.testing.assert_array_equal(dn, raw)
            np.testing.assert_array_equal(ds["red"].values[0], raw[3])  # common-name alias
            # Reflectance through the harmonisation record equals read_lr's, bit for bit.
            h = harmonise([item])[0]
            assert h.properties["stliif:harmonisation"]["basis"].endswith("declared offset")
            refl = to_reflectance(dn, *reflectance_params(h))
            t = int(np.flatnonzero(lr["revisit"].values == n)[0])
            np.testing.assert_array_equal(refl, lr["reflectance"].values[t])
            for m in masks:
                np.testing.assert_array_equal(ds[m].values[0], lr[MASK_VARS[m]].values[t])


def test_odc_stac_loads_a_time_series_and_the_hr_images(exported: Path, worldstrat: Path) -> None:
    items = [i for i in lr_items(exported) if i.properties["worldstrat:aoi"] == "Landcover-14956"]
    ds = odc.stac.load(items, bands=["B04", "nir"], groupby="id", chunks=None)
    assert ds.sizes["time"] == len(items) and set(ds.data_vars) == {"B04", "nir"}

    lr = read_lr(find_aoi_files(worldstrat, "Landcover-14956"))
    hr_ref = read_hr(find_aoi_files(worldstrat, "Landcover-14956"), lr.rio.bounds())
    hr = pystac.Item.from_file(str(exported.parent / HR_COLLECTION / "Landcover-14956" / "Landcover-14956.json"))
    pan = odc.stac.load([hr], bands=["pan"], chunks=None)
    np.testing.assert_array_equal(pan["pan"].values[0], hr_ref.pan.values)
    rgbn = odc.stac.load([hr], bands=["red", "nir"], chunks=None)
    np.testing.assert_array_equal(rgbn["red"].values[0], hr_ref.rgbn.values[0])
    np.testing.assert_array_equal(rgbn["nir"].values[0], hr_ref.rgbn.values[3])


def test_exported_items_work_with_the_custom_provider(exported: Path) -> None:
    items = lr_items(exported)
    p = custom_provider("http://127.0.0.1:8081")
    assert filter_items_with_assets(items, ["red", "nir"], provider=p) == items
    with_scl = filter_items_with_assets(items, ["red", "scl"], provider=p)
    assert {i.properties["worldstrat:aoi"] for i in with_scl} == {"Landcover-14956"}
    with pytest.raises(NoDataError):
        filter_items_with_assets(items, ["scl"], provider=p, min_items=len(items))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_href_base_overwrite_and_determinism(worldstrat: Path, tmp_path: Path) -> None:
    out = tmp_path / "served"
    cat = export_worldstrat_stac(worldstrat, out, aois=["Amnesty_POI-13-1-1"], href_base="http://127.0.0.1:8000/data")
    item = json.loads((out / LR_COLLECTION / "Amnesty_POI-13-1-1-3" / "Amnesty_POI-13-1-1-3.json").read_text())
    assert item["assets"]["B04"]["href"] == "http://127.0.0.1:8000/data/worldstrat-lr/Amnesty_POI-13-1-1-3/B04.tif"
    assert {a["href"].split("/")[-1] for a in item["assets"].values()} == {f"{b}.tif" for b in BANDS} | {"CLM.tif", "CLP.tif", "dataMask.tif"}
    first = _snapshot(out)

    with pytest.raises(InvalidInputError, match="not empty"):
        export_worldstrat_stac(worldstrat, out, aois=["Amnesty_POI-13-1-1"])
    again = export_worldstrat_stac(worldstrat, out, aois=["Amnesty_POI-13-1-1"], href_base="http://127.0.0.1:8000/data/", overwrite=True)
    assert again == cat and _snapshot(out) == first, "a re-export is byte-identical"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"], "no temporary or old folders left"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="holds no WorldStrat STAC export"):
        export_worldstrat_stac(worldstrat, foreign, aois=["Amnesty_POI-13-1-1"], overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"aois": ["Nowhere-1"]}, "unknown AOI"),
        ({"aois": ["../etc"]}, "invalid AOI name"),
        ({"aois": "Landcover-14956"}, "not a string"),
        ({"aois": []}, "aois is empty"),
        ({"href_base": "ftp://host/x"}, "href_base"),
        ({"href_base": "http://user:pw@host/x"}, "credentials"),
    ],
)
def test_export_rejects_bad_arguments_before_writing(worldstrat: Path, tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        export_worldstrat_stac(worldstrat, tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []
