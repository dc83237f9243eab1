"""Local Sentinel-2 SAFE products: the fixture generator, the reader and loading them with load_cube."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pystac
import pytest

from stliif.errors import DataAccessError, InvalidInputError
from stliif.sources.load import REFLECTANCE_UNITS, load_cube
from stliif.sources.safe import CLOUD_MASK, SOURCE, is_safe, read_safe
from stliif.sources.stac import harmonise, processing_baseline, processing_level, reflectance_params
from tests.fixtures.safe.make_safe import (
    SIZE_M,
    ULX,
    ULY,
    expected_dn,
    make_safe,
)

CASES = [("L1C", "05.09"), ("L1C", "02.09"), ("L2A", "05.09"), ("L2A", "02.09")]


def _geobox(res: float = 10.0):
    from odc.geo.geobox import GeoBox

    return GeoBox.from_bbox((ULX, ULY - SIZE_M, ULX + SIZE_M, ULY), "EPSG:32631", resolution=res)


def _expected(band: str, offset: float, factor: int = 1) -> np.ndarray:
    dn = expected_dn(band)
    if factor > 1:
        dn = np.repeat(np.repeat(dn, factor, 0), factor, 1)
    out = dn.astype(np.float32) * np.float32(1e-4) + np.float32(offset)
    out[dn == 0] = np.nan
    return out


# ------------------------------------------------------------------------------------------
# The reader
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize(("level", "baseline"), CASES)
def test_read_safe_describes_the_product(tmp_path: Path, level: str, baseline: str, zipped: bool) -> None:
    path = make_safe(tmp_path, level=level, baseline=baseline, zipped=zipped)
    assert is_safe(path)
    (item,) = read_safe(path, bands=["blue", "B11"])
    props = item.properties
    assert props["s2:processing_baseline"] == baseline and props["processing:level"] == level
    assert processing_level(item) == level
    assert item.datetime is not None and item.datetime.isoformat().startswith("2023-04-12T10:30:21")
    offset = -0.1 if baseline >= "04.00" else 0.0
    assert set(item.assets) >= {"B02", "B11"}
    rb = item.assets["B02"].extra_fields["raster:bands"][0]
    assert rb["scale"] == pytest.approx(1e-4) and rb["offset"] == pytest.approx(offset)
    assert reflectance_params(harmonise([item])[0]) == pytest.approx((1e-4, offset))
    expected_mask = "SCL" if level == "L2A" else ("MSK_CLASSI" if baseline >= "04.00" else "MSK_CLOUDS")
    assert props[CLOUD_MASK] == expected_mask and expected_mask in item.assets
    href = item.assets["B02"].href
    assert href.startswith("/vsizip/") == zipped
    assert props[SOURCE]["kind"] == "safe" and props[SOURCE]["href"] == str(path.resolve())
    assert props[SOURCE]["files"]["B11"].endswith("_B11_20m.jp2" if level == "L2A" else "_B11.jp2")
    # the footprint is the clipped extent (about 600 m), not the 110 km tile of MTD_TL.xml
    w, s, e, n = item.bbox
    assert 0.005 < e - w < 0.01 and 0.004 < n - s < 0.007


def test_read_safe_l1c_without_cloud_mask_records_none(tmp_path: Path) -> None:
    (item,) = read_safe(make_safe(tmp_path, level="L1C", cloud_mask=False))
    assert item.properties[CLOUD_MASK] == "none"
    assert not {"MSK_CLASSI", "MSK_CLOUDS", "SCL"} & set(item.assets)


def test_read_safe_resolves_clipped_band_files(tmp_path: Path) -> None:
    root = make_safe(tmp_path, level="L1C", clipped_suffix="clip")
    (item,) = read_safe(root, bands=["B02"])
    assert item.assets["B02"].href.endswith("_B02_clip.jp2")
    assert item.properties[SOURCE]["files"]["B02"].endswith("_B02_clip.jp2")
    # a second candidate makes the match ambiguous: refused, naming both
    (b02,) = root.glob("GRANULE/*/IMG_DATA/*_B02_clip.jp2")
    b02.with_name(b02.name.replace("_clip", "_other")).write_bytes(b02.read_bytes())
    with pytest.raises(DataAccessError, match="matches several files"):
        read_safe(root, bands=["B02"])


def test_read_safe_finds_the_product_inside_a_folder(tmp_path: Path) -> None:
    make_safe(tmp_path / "download", level="L2A")
    (item,) = read_safe(tmp_path / "download", bands=["red"])
    assert item.properties["processing:level"] == "L2A"


def test_bad_safe_inputs_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="is not a SAFE product"):
        read_safe(tmp_path / "photos")
    s1 = tmp_path / "S1A_IW_GRDH_1SDV_20230412T055950_20230412T060015_048065_05C6D2_1F1A.SAFE"
    (s1 / "measurement").mkdir(parents=True)
    (s1 / "manifest.safe").write_text("<xfdu:XFDU xmlns:xfdu='urn:ccsds:schema:xfdu:1'/>")
    with pytest.raises(InvalidInputError, match="not a Sentinel-2 MSI product"):
        read_safe(s1)
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_safe(tmp_path / "nowhere.SAFE")
    product = make_safe(tmp_path / "p", level="L1C", bands=("B02", "B03", "B04"))
    with pytest.raises(InvalidInputError, match="has no band B08"):
        read_safe(product, bands=["B02", "nir"])
    assert not is_safe(tmp_path / "photos") and not is_safe(s1)


# ------------------------------------------------------------------------------------------
# load_cube on SAFE items
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize(("level", "baseline"), CASES)
def test_load_cube_values_equal_dn_times_scale_plus_offset(
    tmp_path: Path, level: str, baseline: str, zipped: bool
) -> None:
    items = harmonise(read_safe(make_safe(tmp_path, level=level, baseline=baseline, zipped=zipped)))
    cube = load_cube(items, ["B02", "B04", "B11"], _geobox(), resampling="nearest").load()
    offset = -0.1 if baseline >= "04.00" else 0.0
    np.testing.assert_array_equal(cube["reflectance"].sel(band="B02").values[0], _expected("B02", offset))
    np.testing.assert_array_equal(cube["reflectance"].sel(band="B04").values[0], _expected("B04", offset))
    np.testing.assert_array_equal(cube["reflectance"].sel(band="B11").values[0], _expected("B11", offset, 2))
    assert cube.attrs["processing_level"] == level and cube.attrs["reflectance_units"] == REFLECTANCE_UNITS[level]
    assert cube.attrs["reflectance_units"].startswith("top-of-atmosphere" if level == "L1C" else "surface")
    assert cube["processing_level"].values.tolist() == [level]
    assert cube["processing_baseline"].values.tolist() == [baseline]
    assert cube["reflectance_offset"].values.tolist() == pytest.approx([offset])
    assert cube["source_kind"].values.tolist() == ["safe"]
    assert ("scl" in cube) == (level == "L2A")
    # no data where any band is 0: B11's first 20 m row covers the first two 10 m rows
    assert not cube["data_mask"].values[0, :2].any() and cube["data_mask"].values[0, 2:].all()


@pytest.mark.parametrize(
    ("level", "baseline", "mask", "cloudy"),
    [
        ("L1C", "05.09", "MSK_CLASSI_B00", (slice(0, 6), slice(0, 12))),  # opaque + cirrus cells
        ("L1C", "02.09", "MSK_CLOUDS_B00", (slice(0, 6), slice(0, 6))),  # the GML polygon
        ("L2A", "05.09", "SCL", (slice(0, 6), slice(0, 6))),  # SCL 9 (shadow, 3, is not cloud)
    ],
)
def test_load_cube_cloud_mask_per_level(tmp_path: Path, level: str, baseline: str, mask: str, cloudy: tuple) -> None:
    items = harmonise(read_safe(make_safe(tmp_path, level=level, baseline=baseline, zipped=True)))
    cube = load_cube(items, ["B02"], _geobox()).load()
    expected = np.zeros((60, 60), np.uint8)
    expected[cloudy] = 1
    np.testing.assert_array_equal(cube["clm"].values[0], expected)
    assert cube["cloud_mask"].values.tolist() == [mask]
    valid = 60 * 59  # the first row is no data
    bad = expected.astype(bool)
    if level == "L2A":
        bad[0:6, 6:12] = True  # SCL 3 (cloud shadow) is not clear either
    not_clear = bad[1:].sum()
    assert float(cube["clear_fraction"][0]) == pytest.approx(1 - not_clear / valid, abs=1e-6)


def test_load_cube_keeps_items_without_cloud_mask(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = harmonise(read_safe(make_safe(tmp_path, level="L1C", cloud_mask=False)))
    with caplog.at_level(logging.WARNING, logger="stliif.acquire"):
        cube = load_cube(items, ["B02"], _geobox()).load()
    assert cube.sizes["time"] == 1 and cube["cloud_mask"].values.tolist() == ["none"]
    assert int(cube["clm"].sum()) == 0 and "no cloud mask" in caplog.text


def test_load_cube_refuses_mixed_processing_levels(tmp_path: Path) -> None:
    l1c = read_safe(make_safe(tmp_path / "a", level="L1C"))
    l2a = read_safe(make_safe(tmp_path / "b", level="L2A"))
    with pytest.raises(InvalidInputError, match="mix processing levels"):
        load_cube(harmonise(l1c + l2a), ["B02"], _geobox())


def test_processing_level_of_api_items() -> None:
    def item(**props: object) -> pystac.Item:
        return pystac.Item("x", None, None, __import__("datetime").datetime(2023, 1, 1), dict(props))

    assert processing_level(item()) == "L2A"
    assert processing_level(item(**{"s2:product_type": "S2MSI1C"})) == "L1C"
    assert processing_level(item(**{"s2:product_uri": "S2B_MSIL1C_20230412T103021_N0509_R108_T31TDF_20230412T170102.SAFE"})) == "L1C"
    assert processing_level(item(**{"processing:level": "L2A"})) == "L2A"
    # an L1C product name gives its baseline too (the pattern knew MSIL2A only)
    l1c = item(**{"s2:product_uri": "S2B_MSIL1C_20230412T103021_N0509_R108_T31TDF_20230412T170102.SAFE"})
    assert processing_baseline(l1c) == "05.09"
    assert reflectance_params(harmonise([l1c])[0]) == pytest.approx((1e-4, -0.1))
