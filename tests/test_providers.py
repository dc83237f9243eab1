"""Provider registry, search parameters, harmonisation, de-duplication, asset filtering and
the retrying client, on real item JSON of Earth Search v1, Planetary Computer and CDSE
(``tests/fixtures/stac/``, origins in its README). No test reaches beyond 127.0.0.1."""

from __future__ import annotations

import copy
import datetime as dt
import http.server
import json
import logging
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest

from stliif.errors import DataAccessError, InvalidInputError, NoDataError, TransientDataAccessError
from stliif.sources.providers import (
    PROVIDERS,
    custom_provider,
    describe_providers,
    get_provider,
    providers_markdown,
)
from stliif.sources.stac import (
    HARMONISATION,
    acquisition_of,
    check_asset_hrefs,
    deduplicate,
    filter_items_with_assets,
    harmonise,
    processing_baseline,
    provider_of,
    reflectance_params,
    resolve_band_asset,
    tag_provider,
    to_reflectance,
)
from stliif.sources.stac_search import build_search_params, make_retrying_client, make_stac_api_io
from stliif.types import AOI, S2_BANDS, BBox

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "stac"
ES = "earth-search-v1_S2A_39QTA_20230628_0_L2A.json"
PC = "planetary-computer_S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
CDSE = "cdse_S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914.json"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host not in LOOPBACK:
            raise AssertionError(f"test tried to reach {address}: only 127.0.0.1 is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def load(name: str) -> pystac.Item:
    return pystac.Item.from_dict(json.loads((FIXTURES / name).read_text()))


def raw(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def as_dict(item: pystac.Item) -> dict[str, Any]:
    return item.to_dict(transform_hrefs=False)


# ------------------------------------------------------------------------------ registry


def test_registry_facts() -> None:
    assert list(PROVIDERS) == ["earth-search", "planetary-computer", "cdse"]
    es, pc, cdse = (PROVIDERS[n] for n in PROVIDERS)
    assert es.url == "https://earth-search.aws.element84.com/v1"
    assert pc.url == "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert cdse.url == "https://stac.dataspace.copernicus.eu/v1"
    assert es.collection() == pc.collection() == cdse.collection() == "sentinel-2-l2a"
    assert es.collection("dem") == pc.collection("dem") == "cop-dem-glo-30"
    assert es.dem_asset == pc.dem_asset == "data"
    with pytest.raises(InvalidInputError, match="has no 'dem' collection"):
        cdse.collection("dem")
    assert (es.filter_support, pc.filter_support, cdse.filter_support) == ("query", "cql2-json", "cql2-json")
    assert pc.requires_signing and not es.requires_signing and not cdse.requires_signing
    for p in PROVIDERS.values():
        assert set(p.band_assets) == set(S2_BANDS)


@pytest.mark.parametrize(("fixture", "name"), [(ES, "earth-search"), (PC, "planetary-computer"), (CDSE, "cdse")])
def test_band_mapping_matches_real_items(fixture: str, name: str) -> None:
    item = load(fixture)
    p = PROVIDERS[name]
    assert provider_of(item) == name  # from the item's own links
    present = {b: k for b, k in p.band_assets.items() if k in item.assets}
    # The trimmed CDSE fixture keeps B02, B04, B08, SCL; the others keep all 13 bands.
    expected = {"B02", "B04", "B08", "SCL"} if name == "cdse" else set(S2_BANDS)
    assert set(present) == expected
    for band, key in present.items():
        assert resolve_band_asset(item, band) == key
        asset = item.assets[key]
        declared = [b.get("name") for b in asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []]
        if band != "SCL":  # band assets declare their band (ES by common name, PC/CDSE by id)
            assert declared[0] in (band, S2_BANDS[band].common_name)


def test_band_resolution_without_provider_uses_declared_band_names() -> None:
    for fixture in (ES, PC, CDSE):
        item = load(fixture)
        item.links = []  # an item of unknown origin
        assert provider_of(item) == "unknown"
        assert resolve_band_asset(item, "B04") is not None
        assert resolve_band_asset(item, "B08") is not None


def test_custom_providers_and_lookup() -> None:
    p = get_provider("http://127.0.0.1:8081/")
    assert p.name == "custom" and p.url == "http://127.0.0.1:8081"
    assert p.band_assets["B04"] == "B04" and p.filter_support == "cql2-json"
    assert get_provider("https://planetarycomputer.microsoft.com/api/stac/v1/").name == "planetary-computer"
    assert get_provider("CDSE") is PROVIDERS["cdse"]
    q = custom_provider("https://example.org/stac", name="my-api", filter_support="query", band_assets={"B04": "red"})
    assert q.asset_key("B04") == "red" and q.filter_support == "query"
    for bad, fragment in [
        ("sentinelhub", "unknown provider"),
        ("ftp://host/stac", "must be an http(s) URL"),
        ("https://user:pw@host/stac", "must not embed credentials"),
        ("https://host/stac?token=abc", "query string"),
    ]:
        with pytest.raises(InvalidInputError, match=re.escape(fragment)):
            get_provider(bad)
    with pytest.raises(InvalidInputError, match="kebab-case"):
        custom_provider("https://h/stac", name="My API")
    with pytest.raises(InvalidInputError, match="canonical band ids"):
        custom_provider("https://h/stac", band_assets={"red": "B04"})


def test_describe_providers_and_docs_are_in_sync() -> None:
    rows = describe_providers()
    assert [r["name"] for r in rows] == list(PROVIDERS)
    assert set(rows[0]) == {"name", "url", "s2_collection", "dem_collection", "search", "assets", "resolution",
                            "revisit", "signing", "auth", "scale_offset"}
    docs = (REPO / "docs" / "providers.md").read_text()
    assert providers_markdown() in docs, "docs/providers.md is stale: paste providers_markdown()"


# ------------------------------------------------------------------------------ search parameters


def test_search_params_use_cql2_json_or_query_per_provider() -> None:
    tr = ("2023-06-01", "2023-06-30")
    es = build_search_params("earth-search", [48.1, 17.9, 49.2, 19.0], tr, max_cloud=20, limit=50)
    assert es == {
        "method": "POST",
        "collections": ["sentinel-2-l2a"],
        "bbox": [48.1, 17.9, 49.2, 19.0],
        "datetime": "2023-06-01T00:00:00.000000Z/2023-06-30T23:59:59.999999Z",
        "limit": 50,
        "query": {"eo:cloud_cover": {"lte": 20.0}},
    }
    pc = build_search_params("planetary-computer", BBox(48.1, 17.9, 49.2, 19.0), tr, max_cloud=20)
    assert pc["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20.0]}
    assert pc["filter_lang"] == "cql2-json" and "query" not in pc
    aoi = {"type": "Polygon", "coordinates": [[[48.1, 17.9], [49.2, 17.9], [49.2, 19.0], [48.1, 17.9]]]}
    cdse = build_search_params("cdse", aoi, tr, max_items=10)
    assert cdse["intersects"] == AOI.from_like(aoi).to_geojson() and "bbox" not in cdse
    assert "filter" not in cdse and "query" not in cdse and cdse["max_items"] == 10
    dem = build_search_params("earth-search", [48.1, 17.9, 49.2, 19.0], tr, max_cloud=20, role="dem")
    assert dem["collections"] == ["cop-dem-glo-30"] and "query" not in dem


def test_search_params_pass_through_pystac_client_offline() -> None:
    from pystac_client.item_search import ItemSearch

    for name in PROVIDERS:
        params = build_search_params(name, [48.1, 17.9, 49.2, 19.0], "2023-06-01/2023-06-30", max_cloud=5)
        body = ItemSearch(url=PROVIDERS[name].url + "/search", **params).get_parameters()
        assert body["bbox"] == (48.1, 17.9, 49.2, 19.0) and body["collections"] == ("sentinel-2-l2a",)
        if PROVIDERS[name].filter_support == "cql2-json":
            assert body["filter-lang"] == "cql2-json" and body["filter"]["op"] == "<="
        else:
            assert body["query"] == {"eo:cloud_cover": {"lte": 5.0}}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"area": [49.2, 17.9, 48.1, 19.0]}, "antimeridian"),
        ({"area": [17.9, 48.1, 19.0, 149.2]}, "bbox.maxy=149.2"),
        ({"time_range": ("2023-06-30", "2023-06-01")}, "reversed"),
        ({"max_cloud": 120}, "max_cloud must be a percentage"),
        ({"max_cloud": float("nan")}, "max_cloud must be a percentage"),
        ({"limit": 0}, "limit must be an integer"),
        ({"max_items": -1}, "max_items must be a positive integer"),
        ({"provider": "nope"}, "unknown provider"),
        ({"provider": "cdse", "role": "dem"}, "has no 'dem' collection"),
    ],
)
def test_search_params_reject_before_any_io(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {"provider": "earth-search", "area": [48.1, 17.9, 49.2, 19.0], "time_range": "2023-06-01/2023-06-30"}
    args.update(kwargs)
    provider, area, tr = args.pop("provider"), args.pop("area"), args.pop("time_range")
    with pytest.raises(InvalidInputError, match=fragment):
        build_search_params(provider, area, tr, **args)


# ------------------------------------------------------------------------------ harmonisation


def test_harmonise_decisions_on_real_items() -> None:
    items = [load(ES), load(PC), load(CDSE)]
    before = [as_dict(i) for i in items]
    es, pc, cdse = harmonise(items)
    assert [as_dict(i) for i in items] == before, "inputs must not be mutated"

    rec = es.properties[HARMONISATION]
    assert rec["processing_baseline"] == "05.09" and rec["offset_applied_by_provider"] is True
    assert reflectance_params(es) == (0.0001, 0.0)
    assert "earthsearch:boa_offset_applied" in rec["basis"]
    assert len(rec["corrected_assets"]) == 12  # the declared -0.1 contradicted the flag
    assert es.assets["red"].extra_fields["raster:bands"][0]["offset"] == 0.0
    assert es.assets["scl"].extra_fields["raster:bands"][0] == {"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}

    rec = pc.properties[HARMONISATION]
    assert rec["processing_baseline"] == "02.12" and reflectance_params(pc) == (0.0001, 0.0)
    assert pc.assets["B04"].extra_fields["raster:bands"] == [{"nodata": 0, "scale": 0.0001, "offset": 0.0}]
    assert any("raster" in u for u in pc.stac_extensions)

    rec = cdse.properties[HARMONISATION]
    assert rec["processing_baseline"] == "05.11" and rec["boa_add_offset_dn"] == -1000
    assert reflectance_params(cdse) == (0.0001, -0.1) and rec["corrected_assets"] == []
    assert cdse.assets["B04_10m"].extra_fields["raster:offset"] == -0.1

    again = harmonise([es, pc, cdse])
    assert [as_dict(i) for i in again] == [as_dict(i) for i in (es, pc, cdse)], "idempotent"


def _with(item: pystac.Item, **props: Any) -> pystac.Item:
    d = copy.deepcopy(as_dict(item))
    for k, v in props.items():
        if v is None:
            d["properties"].pop(k, None)
        else:
            d["properties"][k] = v
    return pystac.Item.from_dict(d)


def test_baseline_pair_differing_by_1000_dn_harmonises_to_equal_reflectance() -> None:
    """RELIABILITY row 12: the same surface before and after PB 04.00 (DN + 1000)."""
    old = load(PC)  # PB 02.12, no offset
    new = _with(old, **{"s2:processing_baseline": "04.00"})
    new.id = "S2B_MSIL2A_20220629T212529_R043_T06VVN_20220629T230000"
    h_old, h_new = harmonise([old, new])
    rng = np.random.default_rng(0)
    dn_old = rng.integers(1, 9000, size=(64, 64), dtype=np.uint16)
    dn_old[:4] = 0  # no data stays no data
    dn_new = np.where(dn_old == 0, 0, dn_old + 1000).astype(np.uint16)
    r_old = to_reflectance(dn_old, *reflectance_params(h_old))
    r_new = to_reflectance(dn_new, *reflectance_params(h_new))
    np.testing.assert_allclose(r_new, r_old, rtol=0, atol=1e-6)
    assert np.isnan(r_old[:4]).all() and np.isnan(r_new[:4]).all()


def test_harmonise_rules_for_edge_cases() -> None:
    es = load(ES)
    # Earth Search says the offset is NOT applied (earth-search#66 shows such items exist):
    # the declared -0.1 is used.
    raw_es = _with(es, **{"earthsearch:boa_offset_applied": False})
    assert reflectance_params(harmonise([raw_es])[0]) == (0.0001, -0.1)
    # A pre-04.00 item that declares -0.1 anyway: the baseline wins, the asset is corrected.
    old = _with(es, **{"earthsearch:boa_offset_applied": None, "s2:processing_baseline": "03.01",
                       "s2:product_uri": None})
    h = harmonise([old])[0]
    assert reflectance_params(h) == (0.0001, 0.0) and "red" in h.properties[HARMONISATION]["corrected_assets"]
    # Baseline only from the product name (CDSE without processing:version).
    cdse = _with(load(CDSE), **{"processing:version": None})
    assert processing_baseline(cdse) == "05.11"
    # Nothing known: raise by default, or assume harmonised when told.
    bare = _with(load(PC), **{"s2:processing_baseline": None, "s2:product_uri": None})
    bare.id = "some-item"
    with pytest.raises(DataAccessError, match="cannot tell whether its DN carry"):
        harmonise([bare])
    assert reflectance_params(harmonise([bare], unknown="assume-harmonised")[0]) == (0.0001, 0.0)
    with pytest.raises(InvalidInputError):
        harmonise([bare], unknown="guess")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not harmonised"):
        reflectance_params(load(PC))


# ------------------------------------------------------------------------------ de-duplication


def test_acquisition_keys_agree_across_providers() -> None:
    es, pc, cdse = acquisition_of(load(ES)), acquisition_of(load(PC)), acquisition_of(load(CDSE))
    assert (es.mission, es.tile, es.relative_orbit, es.exact) == ("S2A", "39QTA", 106, True)
    # Earth Search's datetime is the tile sensing time, 18 minutes after the datatake start.
    assert es.sensing == dt.datetime(2023, 6, 28, 7, 6, 31, tzinfo=dt.UTC)
    assert load(ES).datetime - es.sensing > dt.timedelta(minutes=18)
    assert (pc.mission, pc.tile, pc.relative_orbit) == ("S2B", "06VVN", 43)
    assert (cdse.mission, cdse.tile, cdse.relative_orbit) == ("S2C", "33UWP", 122)


def _republished(item: pystac.Item, provider: str, **props: Any) -> pystac.Item:
    """The same acquisition as another provider would publish it (test construction)."""
    copy_ = _with(item, **props)
    copy_.id = f"{item.id}-{provider}"
    copy_.properties["stliif:provider"] = provider
    copy_.links = []
    return copy_


def test_deduplicate_keeps_latest_baseline_then_preferred_provider() -> None:
    es = tag_provider([load(ES)], "earth-search")[0]
    older = _republished(es, "planetary-computer", **{"s2:processing_baseline": "04.00"})
    same_pb = _republished(es, "cdse")
    out = deduplicate([older, same_pb, es])
    assert len(out) == 1
    kept = out[0]
    assert kept.id == es.id and kept.properties["stliif:provider"] == "earth-search"
    dups = kept.properties["stliif:duplicates"]
    assert [(d["id"], d["provider"], d["processing_baseline"]) for d in dups] == [
        (same_pb.id, "cdse", "05.09"),
        (older.id, "planetary-computer", "04.00"),
    ]
    assert dups[1]["href"] is None  # no self link in the constructed copy
    assert kept.properties["stliif:acquisition"] == {"mission": "S2A", "tile": "39QTA", "sensing": "2023-06-28T07:06:31Z", "relative_orbit": 106}
    # A newer baseline beats provider preference; preference can be reordered.
    newer = _republished(es, "cdse", **{"s2:processing_baseline": "05.10"})
    assert deduplicate([es, newer])[0].id == newer.id
    assert deduplicate([es, same_pb], preference=["cdse", "earth-search"])[0].id == same_pb.id


def test_deduplicate_is_deterministic_and_keeps_distinct_acquisitions() -> None:
    es = load(ES)
    other_tile = _republished(es, "earth-search", **{"grid:code": "MGRS-39QUA", "mgrs:grid_square": "UA",
                                                      "s2:product_uri": "S2A_MSIL2A_20230628T070631_N0509_R106_T39QUA_20230628T113955.SAFE"})
    next_orbit = _republished(es, "earth-search", **{"s2:product_uri": "S2A_MSIL2A_20230628T084601_N0509_R107_T39QTA_20230628T113955.SAFE"})
    no_name = _republished(es, "custom", **{"s2:product_uri": None, "s2:processing_baseline": "04.00",
                                            "sat:relative_orbit": None})
    no_name.id = "scene-without-a-product-name"
    items = [es, other_tile, next_orbit, no_name, load(PC), load(CDSE)]
    first = deduplicate(items)
    # no_name (tile sensing time 07:24, 18 min after the datatake) merges with es; the rest stay.
    assert len(first) == 5
    merged = next(i for i in first if i.id == es.id)
    assert [d["id"] for d in merged.properties["stliif:duplicates"]] == [no_name.id]
    for seed in range(5):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        again = deduplicate(shuffled)
        assert [as_dict(i) for i in again] == [as_dict(i) for i in first]
    assert len(deduplicate([es, no_name], tolerance=dt.timedelta(minutes=10))) == 2
    with pytest.raises(InvalidInputError):
        deduplicate(items, tolerance=-dt.timedelta(minutes=1))


# ------------------------------------------------------------------------------ asset filtering


def test_filter_items_with_assets(caplog: pytest.LogCaptureFixture) -> None:
    items = [load(ES), load(PC), load(CDSE)]
    assert filter_items_with_assets(items, "red,nir,scl") == items
    with caplog.at_level(logging.WARNING, logger="stliif.sources.stac"):
        kept = filter_items_with_assets(items, ["red", "rededge1"])
    assert [i.id for i in kept] == [items[0].id, items[1].id]
    assert "dropped 1 of 3 items" in caplog.text and "no B05" in caplog.text
    with pytest.raises(NoDataError, match="only 2 item"):
        filter_items_with_assets(items, ["B05"], min_items=3)
    with pytest.raises(InvalidInputError):
        filter_items_with_assets(items, ["B10"])


def test_asset_hrefs_outside_the_provider_hosts_are_refused() -> None:
    items = [load(ES), load(PC), load(CDSE)]
    check_asset_hrefs(items, "red,nir,scl")
    bad = load(ES)
    bad.assets["red"].href = "file:///etc/passwd?sig=SECRET"
    with pytest.raises(DataAccessError, match="points outside earth-search") as err:
        check_asset_hrefs([bad], ["red"])
    assert "SECRET" not in str(err.value)


# ------------------------------------------------------------------------------ retrying client


def test_stac_api_io_has_bounded_timeouts_and_post_retries() -> None:
    from requests.adapters import HTTPAdapter

    io = make_stac_api_io()
    assert io.timeout == (10.0, 60.0)
    for prefix in ("http://", "https://"):
        adapter = io.session.get_adapter(prefix + "example.org")
        assert isinstance(adapter, HTTPAdapter)
        retry = adapter.max_retries
        assert retry.total == 5 and retry.backoff_factor == 0.5
        assert retry.allowed_methods is None  # item search is a POST
        assert set(retry.status_forcelist) == {429, 500, 502, 503, 504}
        assert retry.respect_retry_after_header and not retry.raise_on_status
    for bad in ({"timeout": 0}, {"timeout": (10, None)}, {"retries": 11}, {"backoff": -1}):
        with pytest.raises(InvalidInputError):
            make_stac_api_io(**bad)  # type: ignore[arg-type]


ROOT = {
    "type": "Catalog",
    "id": "test-api",
    "stac_version": "1.0.0",
    "description": "loopback STAC API",
    "conformsTo": [
        "https://api.stacspec.org/v1.0.0/core",
        "https://api.stacspec.org/v1.0.0/item-search",
        "https://api.stacspec.org/v1.0.0/item-search#query",
        "https://api.stacspec.org/v1.0.0/item-search#filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    ],
    "links": [],
}


def test_retrying_client_opens_a_local_catalog_with_the_configured_io(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(ROOT))
    client = make_retrying_client(str(path), timeout=(3, 7), retries=2)
    io = client._stac_io
    assert io.timeout == (3.0, 7.0), "Client.open must not erase the timeout"
    assert io.session.get_adapter("https://x").max_retries.total == 2


class _Script:
    """Scripted answers of a loopback STAC API: a queue of (status, headers) per path."""

    def __init__(self) -> None:
        self.plan: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.calls: list[tuple[str, str]] = []


@pytest.fixture
def api() -> Iterator[tuple[str, _Script]]:
    script = _Script()
    item = raw(ES)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            path = self.path.split("?")[0]
            script.calls.append((self.command, path))
            if self.command == "POST":
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
            queue = script.plan.get(path, [])
            status, headers = queue.pop(0) if queue else (200, {})
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if status != 200:
                body = b'{"code": "unavailable"}'
            elif path == "/":
                doc = dict(ROOT, links=[{"rel": "search", "href": base + "/search", "method": "POST", "type": "application/geo+json"},
                                        {"rel": "self", "href": base + "/"}, {"rel": "root", "href": base + "/"}])
                body = json.dumps(doc).encode()
            else:
                body = json.dumps({"type": "FeatureCollection", "features": [item], "links": []}).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", script
    finally:
        server.shutdown()
        server.server_close()


def test_retries_503_on_get_and_post_then_succeeds(api: tuple[str, _Script]) -> None:
    url, script = api
    script.plan = {"/": [(503, {}), (502, {})], "/search": [(503, {}), (500, {})]}
    client = make_retrying_client(url, backoff=0.01)
    params = build_search_params(custom_provider(url), [48.1, 17.9, 49.2, 19.0], "2023-06-01/2023-06-30", max_cloud=10)
    items = list(client.search(**params).items())
    assert [i.id for i in items] == ["S2A_39QTA_20230628_0_L2A"]
    assert script.calls.count(("GET", "/")) == 3 and script.calls.count(("POST", "/search")) == 3


def test_honours_retry_after_on_429(api: tuple[str, _Script]) -> None:
    url, script = api
    script.plan = {"/": [(429, {"Retry-After": "1"})]}
    start = time.monotonic()
    make_retrying_client(url, backoff=0.01)
    assert time.monotonic() - start >= 0.9
    assert script.calls.count(("GET", "/")) == 2


def test_permanent_and_exhausted_failures_are_typed(api: tuple[str, _Script]) -> None:
    url, script = api
    script.plan = {"/": [(404, {})]}
    with pytest.raises(DataAccessError, match="answered 404") as err:
        make_retrying_client(url, backoff=0.01)
    assert not isinstance(err.value, TransientDataAccessError)
    assert script.calls.count(("GET", "/")) == 1, "404 is not retried"
    script.calls.clear()
    script.plan = {"/": [(503, {})] * 10}
    with pytest.raises(TransientDataAccessError, match="status 503"):
        make_retrying_client(url, retries=2, backoff=0.01)
    assert script.calls.count(("GET", "/")) == 3
    with pytest.raises(InvalidInputError, match="credentials"):
        make_retrying_client("https://user:secret@127.0.0.1/")


def test_library_does_not_import_prefect() -> None:
    code = (
        "import sys, stliif.types, stliif.sources.providers, stliif.sources.stac, "
        "stliif.sources.stac_export; assert 'prefect' not in sys.modules, 'prefect imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
