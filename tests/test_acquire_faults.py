"""Faults between the client and a real STAC API: injected by a proxy in front of pgstac."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fault_proxy import FaultProxy
from stac_server import catalog_objects
from stliif.acquire import run_acquire, search
from stliif.config import AcquireSpec, StoreSpec
from stliif.errors import DataAccessError, TransientDataAccessError
from stliif.store import ArtifactStore

pytestmark = pytest.mark.integration


def _spec(url: str, stac_api: dict[str, Any], **kw: Any) -> AcquireSpec:
    bbox = next(i["bbox"] for i in stac_api["items"] if i["id"].startswith("Landcover-14956-"))
    fields: dict[str, Any] = dict(aoi="lc", providers=[url], collection="worldstrat-lr", provider_name="local",
                                  bbox=tuple(bbox), start="2019-01-01", end="2019-12-31", quicklooks=None,
                                  retries=3, timeout=2)  # fmt: skip
    return AcquireSpec(**{**fields, **kw})


@pytest.fixture
def proxy(stac_api: dict[str, Any]) -> Any:
    with FaultProxy(stac_api["url"]) as p:
        yield p


def _ids(stac_api: dict[str, Any]) -> set[str]:
    return {i.id for i in search(_spec(stac_api["url"], stac_api)).items}


def test_503_three_times_then_success(proxy: FaultProxy, stac_api: dict[str, Any]) -> None:
    proxy.faults = {"search": [("status", 503)] * 3}
    found = search(_spec(proxy.url, stac_api))
    assert {i.id for i in found.items} == _ids(stac_api) and not found.errors
    assert proxy.calls.count("search") == 4


def test_429_honours_retry_after(proxy: FaultProxy, stac_api: dict[str, Any]) -> None:
    proxy.faults = {"search": [("status", 429, {"Retry-After": "2"})]}
    t = time.monotonic()
    found = search(_spec(proxy.url, stac_api))
    assert time.monotonic() - t >= 1.9 and found.items
    assert proxy.calls.count("search") == 2


def test_a_stalled_server_times_out_as_transient(proxy: FaultProxy, stac_api: dict[str, Any]) -> None:
    proxy.faults = {"search": [("stall", 8)] * 3}
    t = time.monotonic()
    with pytest.raises(TransientDataAccessError, match="every provider failed"):
        search(_spec(proxy.url, stac_api, timeout=1, retries=1))
    assert time.monotonic() - t < 7, "the read timeout bounds each try"


@pytest.mark.parametrize("status", [401, 404])
def test_4xx_is_not_retried(proxy: FaultProxy, stac_api: dict[str, Any], status: int) -> None:
    proxy.faults = {"search": [("status", status)] * 5}
    with pytest.raises(DataAccessError, match=f"status {status}") as err:
        search(_spec(proxy.url, stac_api))
    assert not isinstance(err.value, TransientDataAccessError)
    assert proxy.calls.count("search") == 1


def test_malformed_json_is_a_clear_error(proxy: FaultProxy, stac_api: dict[str, Any]) -> None:
    proxy.faults = {"search": [("malformed",)]}
    with pytest.raises(DataAccessError, match="malformed search response"):
        search(_spec(proxy.url, stac_api))


def test_a_failing_second_page_commits_nothing(proxy: FaultProxy, stac_api: dict[str, Any], tmp_path: Path) -> None:
    spec = _spec(proxy.url, stac_api, max_items=50)
    # Pages of 3 items: the server's next link goes through the proxy, which fails it.
    import stliif.acquire as acq

    real = acq.build_search_params

    def small_pages(*a: Any, **kw: Any) -> dict[str, Any]:
        return real(*a, **{**kw, "limit": 3})

    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    proxy.faults = {"page": [("status", 500)] * 10}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(acq, "build_search_params", small_pages)
        with pytest.raises(TransientDataAccessError):
            run_acquire(store, spec)
        assert proxy.calls.count("page") == 4  # 1 + 3 retries
        assert store.list("raw") == []
        # Once the pages answer, every item arrives (more than one page's worth).
        proxy.faults = {}
        result = run_acquire(store, spec)
    assert result.status == "committed" and len(result.dates) == len(_ids(stac_api)) > 3


def test_a_truncated_cog_fails_the_load_and_commits_nothing(stac_api: dict[str, Any], tmp_path: Path) -> None:
    """A copy of the export with one band file cut short, served as its own collection."""
    src = Path(stac_api["catalog"]).parent
    copy = tmp_path / "ws"
    shutil.copytree(src, copy)
    cols, items = catalog_objects(copy / "catalog.json")
    lr = next(c for c in cols if c["id"] == "worldstrat-lr")
    lr["id"] = "ws-truncated"
    mine = []
    for i in items:
        if i["collection"] != "worldstrat-lr" or not i["id"].startswith("Landcover-14956-"):
            continue
        i = {**i, "collection": "ws-truncated", "assets": {k: {**a, "href": a["href"].replace(str(src), str(copy))}
                                                            for k, a in i["assets"].items()}}  # fmt: skip
        mine.append(i)
    victim = Path(mine[0]["assets"]["B04"]["href"].removeprefix("file://"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    stac_api["server"].load([lr], mine)
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    with pytest.raises(DataAccessError, match="loading"):
        run_acquire(store, _spec(stac_api["url"], stac_api, collection="ws-truncated"))
    assert store.list("raw") == []


def test_a_500_storm_exhausts_retries_as_transient(proxy: FaultProxy, stac_api: dict[str, Any]) -> None:
    proxy.faults = {"search": [("status", 500)] * 20}
    with pytest.raises(TransientDataAccessError, match="status 500"):
        search(_spec(proxy.url, stac_api, retries=3))
    assert proxy.calls.count("search") == 4


@pytest.fixture
def http_assets(stac_api: dict[str, Any], worldstrat: Path, tmp_path: Path) -> Any:
    """Landcover-14956's COGs served over HTTP (Range requests) by a faulty file server, its
    items in the STAC API as collection ``ws-http``."""
    from fault_proxy import FaultyFileServer
    from stliif.sources.stac_export import export_worldstrat_stac

    root = tmp_path / "served"
    root.mkdir()
    with FaultyFileServer(root) as files:
        catalog = export_worldstrat_stac(worldstrat, root, aois=["Landcover-14956"], href_base=files.url)
        cols, items = catalog_objects(catalog)
        lr = {**next(c for c in cols if c["id"] == "worldstrat-lr"), "id": "ws-http"}
        stac_api["server"].load([lr], [{**i, "collection": "ws-http"} for i in items if i["collection"] == "worldstrat-lr"])
        yield files


def test_cog_reads_over_http_survive_5xx_and_fail_cleanly_on_storms_and_empty_files(
    http_assets: Any, stac_api: dict[str, Any], tmp_path: Path
) -> None:
    store = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    spec = _spec(stac_api["url"], stac_api, collection="ws-http", end="2019-09-30", retries=1)
    revisits = sorted((i["properties"]["datetime"], i["id"]) for i in stac_api["items"]
                      if i["id"].startswith("Landcover-14956-") and i["properties"]["datetime"] <= "2019-09-30")  # fmt: skip
    assert len(revisits) >= 2
    first = f"worldstrat-lr/{revisits[0][1]}/B04.tif"
    # Two 503s on one band: GDAL's HTTP retries (GDAL_HTTP_MAX_RETRY=5) absorb them.
    http_assets.faults = {first: [("status", 503)] * 2}
    ok = run_acquire(store, spec.model_copy(update={"aoi": "lc-http"}))
    assert ok.status == "committed" and http_assets.calls[first] >= 3
    ref = run_acquire(store, _spec(stac_api["url"], stac_api, aoi="lc-file", end="2019-09-30"))
    np.testing.assert_array_equal(store.read("raw/lc-http", load=True)["reflectance"].values,
                                  store.read("raw/lc-file", load=True)["reflectance"].values)
    assert ref.dates == ok.dates
    snapshots = len(store.log())
    # Files not read yet (GDAL caches what it has read): a storm of 503s on one band, then a
    # zero-byte band. Each load fails with the reason, and nothing is committed.
    storm = f"worldstrat-lr/{revisits[1][1]}/B11.tif"
    http_assets.faults = {storm: [("status", 503)] * 100}
    with pytest.raises(DataAccessError, match="loading"):
        run_acquire(store, spec.model_copy(update={"aoi": "lc-storm", "bands": ["red", "B11"]}))
    assert http_assets.calls[storm] >= 6
    http_assets.faults = {}
    (http_assets.root / f"worldstrat-lr/{revisits[1][1]}/B05.tif").write_bytes(b"")
    with pytest.raises(DataAccessError, match="loading"):
        run_acquire(store, spec.model_copy(update={"aoi": "lc-empty", "bands": ["red", "B05"]}))
    assert len(store.log()) == snapshots and store.list("raw") == ["raw/lc-file", "raw/lc-http"]


def test_two_providers_with_the_same_acquisitions_are_merged(proxy: FaultProxy, stac_api: dict[str, Any]) -> None:
    """The API directly and through the proxy: two providers serving the same items. Each
    acquisition is kept once, from the preferred (first) provider, the other recorded."""
    found = search(_spec(stac_api["url"], stac_api, providers=[stac_api["url"], proxy.url]))
    n = len(_ids(stac_api))
    assert found.found == {"local": n, "local-2": n} and len(found.items) == n
    for item in found.items:
        assert item.properties["stliif:provider"] == "local"
        (dup,) = item.properties["stliif:duplicates"]
        assert dup["provider"] == "local-2" and dup["id"] == item.id
