"""The SAFE fixture generator writes Sentinel-2 products in the real layout, with known pixel values."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.fixtures.safe.make_safe import expected_dn, make_safe, product_name

CASES = [("L1C", "05.09"), ("L1C", "02.09"), ("L2A", "05.09"), ("L2A", "02.09")]




@pytest.mark.parametrize(("level", "baseline"), CASES)
def test_make_safe_writes_the_real_layout(tmp_path: Path, level: str, baseline: str) -> None:
    root = make_safe(tmp_path, level=level, baseline=baseline)
    assert root.name == product_name(level, baseline) and root.name.endswith(".SAFE")
    assert (root / "manifest.safe").is_file() and (root / f"MTD_MSI{level}.xml").is_file()
    (granule,) = (root / "GRANULE").iterdir()
    assert granule.name.startswith(f"{level}_T31TDF_") and (granule / "MTD_TL.xml").is_file()
    sub = "IMG_DATA/R10m/*_B02_10m.jp2" if level == "L2A" else "IMG_DATA/*_B02.jp2"
    (b02,) = granule.glob(sub)
    with rasterio.open(b02) as src:
        assert src.driver == "JP2OpenJPEG" and src.crs.to_epsg() == 32631 and src.nodata is None
        assert src.res == (10.0, 10.0) and src.dtypes[0] == "uint16"
        np.testing.assert_array_equal(src.read(1), expected_dn("B02"))  # lossless
    qi = {p.name for p in (granule / "QI_DATA").glob("*")} if (granule / "QI_DATA").exists() else set()
    if level == "L2A":
        assert list(granule.glob("IMG_DATA/R20m/*_SCL_20m.jp2"))
    elif baseline >= "04.00":
        assert qi == {"MSK_CLASSI_B00.jp2"}
    else:
        assert qi == {"MSK_CLOUDS_B00.gml"}
    text = (root / f"MTD_MSI{level}.xml").read_text()
    tag = "RADIO_ADD_OFFSET" if level == "L1C" else "BOA_ADD_OFFSET"
    assert (f'<{tag} band_id="1">-1000</{tag}>' in text) == (baseline >= "04.00")


def test_make_safe_zip_holds_the_safe_folder(tmp_path: Path) -> None:
    z = make_safe(tmp_path, level="L1C", zipped=True)
    assert z.suffix == ".zip" and not z.with_suffix(".SAFE").exists()
    names = zipfile.ZipFile(z).namelist()
    assert f"{product_name('L1C', '05.09')}/MTD_MSIL1C.xml" in names
