"""Static STAC catalogs (path or http URL, relative hrefs, no /search) into raw/<aoi>."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stliif.acquire import search
from stliif.config import AcquireSpec, ImportSpec, StoreSpec
from stliif.errors import InvalidInputError
from stliif.ingest import read_source, run_import
from stliif.raw_schema import check_raw
from stliif.store import ArtifactStore
from stliif.types import TimeRange
from tests.fixtures.stac.make_static_catalog import BANDS, DATES, expected_dn, make_static_catalog


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return make_static_catalog(tmp_path / "catalog")


@pytest.fixture
def served(catalog: Path) -> Iterator[str]:
    """The catalog's folder over http (a plain file server: no /search)."""
    handler = functools.partial(_QuietHandler, directory=str(catalog.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _expected(band: str, k: int) -> np.ndarray:
    dn = expected_dn(band, k)
    out = dn.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1)
    out[dn == 0] = np.nan
    return out


def test_read_static_resolves_relative_hrefs_from_a_path_a_folder_and_a_url(catalog: Path, served: str) -> None:
    for source in (str(catalog), str(catalog.parent), f"{served}/catalog.json"):
        items = read_source(source, ["blue", "nir"])
        assert [i.datetime for i in items] == list(DATES)
        assert all(i.properties["stliif:source"]["kind"] == "stac-static" for i in items)
        href = items[0].assets["B02"].href
        assert href.endswith("/B02.tif") and (href.startswith(served) if source.startswith("http") else Path(href).is_file())
    item_json = next(catalog.parent.glob("city-s2/*/*.json"))
    assert len(read_source(str(item_json), ["red"])) == 1
    assert len(read_source(f"{served}/city-s2/collection.json", ["red"])) == 2


def test_run_import_static_catalog_values_dates_and_provenance(catalog: Path, tmp_path: Path) -> None:
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    result = run_import(store, ImportSpec(source=str(catalog), aoi="cat", bands=list(BANDS), quicklooks=None))
    assert result.status == "committed" and result.dates == ["2023-05-02", "2023-05-12"]
    cube = store.read("raw/cat", load=True)
    check_raw(cube, provenance=True)
    for k in range(2):
        for band in BANDS:
            np.testing.assert_allclose(cube["reflectance"].sel(band=band).values[k], _expected(band, k), rtol=1e-6)
    assert cube["source_kind"].values.tolist() == ["stac-static"] * 2
    assert all(h.endswith(".json") and Path(h).is_file() for h in cube["source_href"].values.tolist())
    assert cube.attrs["processing_level"] == "L2A" and cube["cloud_mask"].values.tolist() == ["SCL", "SCL"]


def test_static_catalog_date_filter(catalog: Path, tmp_path: Path) -> None:
    items = read_source(str(catalog), ["red"], TimeRange.from_like(("2023-05-10", "2023-05-20")))
    assert [i.datetime for i in items] == [DATES[1]]
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    with pytest.raises(InvalidInputError, match=r"nothing between 2022-01-01 and 2022-12-31 .*2023-05-02, 2023-05-12"):
        run_import(store, ImportSpec(source=str(catalog), aoi="x", start="2022-01-01", end="2022-12-31", quicklooks=None))
    with pytest.raises(InvalidInputError, match="no item has every requested band"):
        read_source(str(catalog), ["B11"])
    assert store.list("raw") == []


def test_acquire_with_a_static_catalog_url_points_to_import(served: str) -> None:
    spec = AcquireSpec(aoi="x", providers=[f"{served}/catalog.json"], bbox=(1.0, 41.0, 1.1, 41.1),
                       start="2023-05-01", end="2023-05-31", retries=0)
    with pytest.raises(InvalidInputError, match=r"static STAC catalog.*stliif import"):
        search(spec)
    item_url = f"{served}/city-s2/S2A_31TDF_20230502_0_L2A/S2A_31TDF_20230502_0_L2A.json"
    with pytest.raises(InvalidInputError, match=r"static STAC catalog.*stliif import"):
        search(spec.model_copy(update={"providers": [item_url]}))
