"""The one raw/<aoi> schema check: what every writer runs before committing (and tests use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stliif.errors import InvalidInputError
from stliif.raw_schema import check_raw
from stliif.sources.load import load_cube
from stliif.sources.safe import read_safe
from stliif.sources.stac import harmonise
from tests.fixtures.safe.make_safe import SIZE_M, ULX, ULY, make_safe


@pytest.fixture
def cube(tmp_path: Path):
    from odc.geo.geobox import GeoBox

    geobox = GeoBox.from_bbox((ULX, ULY - SIZE_M, ULX + SIZE_M, ULY), "EPSG:32631", resolution=10)
    items = harmonise(read_safe(make_safe(tmp_path, level="L1C")))
    return load_cube(items, ["B02", "B04"], geobox).load()


def test_a_loaded_cube_passes(cube) -> None:
    check_raw(cube, provenance=True)


def test_every_problem_is_named(cube) -> None:
    bad = cube.drop_vars("clm").assign(data_mask=cube["data_mask"].astype(np.float32))
    bad.attrs.pop("reflectance_units")
    with pytest.raises(InvalidInputError, match=r"no clm; data_mask is .* float32, not .* uint8; no reflectance_units"):
        check_raw(bad)
    with pytest.raises(InvalidInputError, match=r"no provenance coordinate.s. source_href"):
        check_raw(cube.drop_vars("source_href"))
    with pytest.raises(InvalidInputError, match="processing_level attribute 'L2A' is not 'L1C'"):
        check_raw(cube.assign_attrs(processing_level="L2A"))
    with pytest.raises(InvalidInputError, match=r"processing_level .'L0'."):
        check_raw(cube.assign_coords(processing_level=("time", ["L0"])))
    with pytest.raises(InvalidInputError, match="no CRS"):
        check_raw(cube.drop_vars("spatial_ref"))
