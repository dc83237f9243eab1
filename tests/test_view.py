"""``stliif view``: the API over a tiny store (TestClient) and the page in a real headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from conftest import REPO, free_port
from typer.testing import CliRunner

from stliif.store import ArtifactStore
from stliif.testing import synthetic_cube

AOIS = ("alpha", "beta")
RENDER_DATE = "2024-03-11"


@pytest.fixture(scope="module")
def view_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with two AOIs (``raw/alpha``, ``raw/beta``; four dates each, cloud on some) and
    a median render of ``alpha`` at x2 (``render/alpha/median/<date>-x2``)."""
    from stliif.render import run_render
    from stliif.stages import run_crop

    root = tmp_path_factory.mktemp("view")
    store = ArtifactStore.open(str(root / "store"))
    for i, aoi in enumerate(AOIS):
        cube = synthetic_cube(aoi, h=24 + 4 * i, w=20, seed=i)
        if i:  # the second AOI 30 km east, without a geometry attribute (its footprint: the grid)
            cube = cube.assign_coords(x=cube["x"] + 30000.0).rio.write_transform(
                Affine.translation(30000.0, 0) * cube.rio.transform())
            cube.attrs.pop("geometry")
        store.commit({f"raw/{aoi}": cube}, stage="import", params={"aoi": aoi})
    res = run_render(store, "alpha", "median", date=RENDER_DATE, scale=2, out_dir=root / "out")
    series = run_render(store, "alpha", "median", start="2024-03-01", end="2024-03-31", step="10D", scale=2,
                        out_dir=root / "out", allow_far=True)  # fmt: skip
    box = synthetic_cube().rio.transform_bounds("EPSG:4326")
    mid = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    run_crop(store, "raw/alpha", "centre", center=mid, size_m=100.0)
    return {"uri": str(root / "store"), "store": store, "render": res["path"], "series": series["path"], "root": root}


@pytest.fixture(scope="module")
def client(view_store: dict[str, Any]) -> Any:
    from fastapi.testclient import TestClient

    from stliif_cli.view.app import create_app

    with TestClient(create_app(view_store["store"]), base_url="http://127.0.0.1:8765") as c:
        yield c


def test_aois_are_footprints_with_dates_and_clear_fractions(client: Any, view_store: dict[str, Any]) -> None:
    fc = client.get("/api/aois").json()
    assert fc["type"] == "FeatureCollection"
    assert fc["snapshot"] == view_store["store"].snapshot_id()
    feats = {f["id"]: f for f in fc["features"]}
    assert sorted(feats) == [*AOIS, "crop/raw/alpha/centre"]  # a crop is an AOI too
    a = feats["alpha"]["properties"]
    assert a["dates"] == ["2024-03-01", "2024-03-11", "2024-03-21", "2024-03-31"]
    assert a["clear_fraction"] == pytest.approx([1.0, 0.7, 0.1, 1.0], abs=0.02)
    assert a["source"] == "synthetic" and a["providers"] == ["synthetic"]
    assert feats["alpha"]["geometry"]["type"] == "Polygon"
    lon, lat = np.array(feats["alpha"]["geometry"]["coordinates"][0]).mean(0)
    assert 1.5 < lon < 2.5 and 41 < lat < 42  # UTM 31N near Barcelona
    # without a geometry attribute: the grid's bounds
    assert len(feats["beta"]["geometry"]["coordinates"][0]) == 5


def test_aoi_detail_has_renders_and_lineage(client: Any, view_store: dict[str, Any]) -> None:
    a = client.get("/api/aoi/alpha").json()
    assert a["lineage"]["stage"] == "import" and a["lineage"]["path"] == "raw/alpha"
    assert a["lineage"]["version"] == view_store["store"].version("raw/alpha")
    assert sorted(r["path"] for r in a["renders"]) == sorted([view_store["render"], view_store["series"]])
    rs = {r["path"]: r for r in client.get("/api/renders", params={"aoi": "alpha"}).json()["renders"]}
    series = rs[view_store["series"]]
    assert series["dates"] == ["2024-03-01", "2024-03-11", "2024-03-21", "2024-03-31"]
    assert series["input_t"] == [0, 1, 2, 3]
    r = rs[view_store["render"]]
    assert r["model"] == "median" and r["dates"] == [RENDER_DATE]
    assert r["input_t"] == [1]  # the revisit of the render's date
    assert r["lineage"]["stage"] == "render" and "raw/alpha" in r["lineage"]["inputs"]
    assert r["attrs"]["scale"] == 2
    assert client.get("/api/renders", params={"aoi": "beta"}).json()["renders"] == []
    lin = client.get("/api/lineage", params={"path": view_store["render"]}).json()
    assert lin["snapshot_id"] == r["lineage"]["snapshot_id"]


def _png(resp: Any) -> np.ndarray:
    import io

    from PIL import Image

    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGBA"))


def _tile_of(client: Any, aoi: str, z: int) -> tuple[int, int]:
    import math

    w, s, e, n = client.get(f"/api/aoi/{aoi}").json()["bounds"]
    lon, lat = (w + e) / 2, (s + n) / 2
    x = int((lon + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
    return x, y


def test_tiles_of_dates_clouds_and_renders(client: Any, view_store: dict[str, Any]) -> None:
    z = 16
    x, y = _tile_of(client, "alpha", z)
    snap = view_store["store"].snapshot_id()
    imgs = [_png(client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": "raw/alpha", "t": t, "ref": snap})) for t in range(4)]
    assert all(i.shape == (256, 256, 4) for i in imgs)
    assert (imgs[0][..., 3] == 255).sum() > 1000  # the area is opaque
    assert (imgs[0][..., 3] == 0).sum() > 0  # outside the polygon: transparent
    assert not np.array_equal(imgs[0], imgs[2])  # another date, another image
    cloud = [_png(client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": "raw/alpha", "t": t, "layer": "cloud"})) for t in (0, 2)]
    assert (cloud[0][..., 3] > 0).sum() == 0 and (cloud[1][..., 3] > 0).sum() > 1000
    render = _png(client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": view_store["render"]}))
    assert (render[..., 3] == 255).sum() > 1000
    for t in (0, 3):  # a date of a series
        assert (_png(client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": view_store["series"], "t": t}))[..., 3] == 255).sum() > 1000
    assert client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": view_store["series"], "t": 4}).status_code == 400
    crop = client.get("/api/aoi/crop/raw/alpha/centre").json()
    assert crop["path"] == "crop/raw/alpha/centre" and crop["lineage"]["stage"] == "crop"
    assert (_png(client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": "crop/raw/alpha/centre"}))[..., 3] == 255).sum() > 100
    far = _png(client.get(f"/tiles/{z}/0/0.png", params={"path": "raw/alpha"}))
    assert (far[..., 3] == 0).all()  # outside: a transparent tile, never an error


def test_zoomed_out_tiles_read_a_block_averaged_overview(client: Any, view_store: dict[str, Any]) -> None:
    """A tile far coarser than the render is read from its overview (block means), and looks
    like the tile read from the full array."""
    import io

    from PIL import Image

    from stliif_cli.view import tiles

    da = view_store["store"].read(view_store["render"])["reflectance"]  # ~5 m pixels
    assert [tiles.overview_factor(da, z) for z in (18, 15, 13, 12)] == [1, 1, 2, 4]
    ov = tiles.overview(da, 4)
    assert ov.sizes["x"] == da.sizes["x"] // 4 and ov.rio.resolution()[0] == pytest.approx(4 * da.rio.resolution()[0])
    assert ov.rio.bounds()[:2] == pytest.approx(da.rio.bounds()[:2])  # the same origin
    for z in (12, 13):
        x, y = _tile_of(client, "alpha", z)
        served = _png(client.get(f"/tiles/{z}/{x}/{y}.png", params={"path": view_store["render"]})).astype(float)
        full = np.asarray(Image.open(io.BytesIO(tiles.rgb_tile(da, x, y, z, top=client.get("/api/aoi/alpha").json()["display_max"])))
                          .convert("RGBA")).astype(float)  # fmt: skip
        both = (served[..., 3] == 255) & (full[..., 3] == 255)
        assert both.sum() > 0.8 * (full[..., 3] == 255).sum()
        assert np.abs(served[..., :3] - full[..., :3])[both].mean() < 12


@pytest.mark.parametrize(
    "url",
    [
        "/api/aoi/..%2F..%2Fetc",
        "/api/aoi/a..b",
        "/api/renders?aoi=../raw",
        "/api/lineage?path=raw/../../secret",
        "/api/lineage?path=models/record",
        "/tiles/3/1/1.png?path=raw/..%2F..%2Fetc",
        "/tiles/3/1/1.png?path=/etc/passwd",
        "/tiles/3/1/1.png?path=hr/alpha/pan",
        "/tiles/3/1/1.png?path=raw/alpha&ref=../x",
        "/tiles/3/9/1.png?path=raw/alpha",
    ],
)
def test_paths_outside_the_store_are_refused(client: Any, url: str) -> None:
    r = client.get(url)
    assert r.status_code in (400, 404, 422), (url, r.status_code, r.text)
    assert r.status_code != 500


def test_unknown_aoi_is_404(client: Any) -> None:
    assert client.get("/api/aoi/nowhere").status_code == 404


def test_only_loopback_host_names_are_answered(view_store: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from stliif_cli.view.app import create_app

    app = create_app(view_store["store"])
    with TestClient(app, base_url="http://evil.example:8765") as c:
        assert c.get("/api/aois").status_code == 403
    with TestClient(app, base_url="http://localhost:8765") as c:
        assert c.get("/api/aois").status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_view_refuses_non_loopback_binds(host: str, view_store: dict[str, Any]) -> None:
    from stliif_cli.main import app

    res = CliRunner().invoke(app, ["view", "--store", view_store["uri"], "--host", host])
    assert res.exit_code == 2
    assert "refusing to bind" in res.output


def test_view_refuses_a_port_in_use(view_store: dict[str, Any]) -> None:
    import socket

    from stliif_cli.main import app

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = CliRunner().invoke(app, ["view", "--store", view_store["uri"], "--port", str(port)])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output


def test_view_refuses_a_missing_store(tmp_path: Path) -> None:
    from stliif_cli.main import app

    res = CliRunner().invoke(app, ["view", "--store", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no store" in res.output


# -- starting runs on Prefect -------------------------------------------------------------------
def test_runs_need_a_prefect_api(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert client.get("/api/config").json()["prefect_api"] is None
    r = client.post("/api/runs", json={"deployment": "render-manual", "spec": {"aoi": "alpha", "date": "2024-03-11", "scale": 2}})
    assert r.status_code == 400 and "PREFECT_API_URL" in r.json()["detail"]


def test_runs_start_the_deployments_on_the_viewers_store(client: Any, view_store: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import uuid
    from types import SimpleNamespace

    from stliif_cli.view import runs

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake(name: str, parameters: dict[str, Any]) -> Any:
        calls.append((name, parameters))
        return SimpleNamespace(id=uuid.uuid4(), name="calm-otter")

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.setattr(runs, "_run_deployment", fake)
    assert client.get("/api/config").json()["deployments"] == ["acquire-manual", "render-manual"]
    r = client.post("/api/runs", json={"deployment": "render-manual",
                                       "spec": {"aoi": "alpha", "date": "2024-03-11", "scale": 2, "model": "median"}})
    assert r.status_code == 200, r.text
    assert r.json()["ui"].startswith("http://127.0.0.1:4200/runs/flow-run/") and r.json()["flow_run_name"] == "calm-otter"
    name, params = calls[-1]
    assert name == "render/render-manual"
    assert params["spec"]["aoi"] == "alpha" and params["spec"]["scale"] == 2 and params["spec"]["model"] == "median"
    assert params["store"]["uri"] == view_store["uri"]  # the viewer's store, not the worker's default
    r = client.post("/api/runs", json={"deployment": "acquire-manual", "spec": {
        "aoi": "alpha", "bbox": [2.0, 41.0, 2.01, 41.01], "start": "2024-04-01", "end": "2024-04-30"}})
    assert r.status_code == 200 and calls[-1][0] == "acquire/acquire-manual"
    n = len(calls)
    for body in (
        {"deployment": "etl-manual", "spec": {}},  # only the two deployments
        {"deployment": "render-manual", "spec": {"aoi": "../x", "date": "2024-03-11", "scale": 2}},
        {"deployment": "render-manual", "spec": {"aoi": "alpha", "scale": 2}},  # no date
        {"deployment": "render-manual"},
    ):
        r = client.post("/api/runs", json=body)
        assert r.status_code == 400, (body, r.text)
    # another site's form or script
    assert client.post("/api/runs", data={"deployment": "render-manual"}).status_code == 415
    assert client.post("/api/runs", json={"deployment": "render-manual", "spec": {}},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert len(calls) == n


def test_a_prefect_api_that_does_not_answer(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    r = client.post("/api/runs", json={"deployment": "render-manual",
                                       "spec": {"aoi": "alpha", "date": "2024-03-11", "scale": 2, "model": "median"}})
    assert r.status_code == 502 and "does not answer" in r.json()["detail"], r.text


def test_an_undeployed_deployment_is_named(prefect_harness: None, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a real Prefect API (the test harness) where nothing is deployed."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    r = client.post("/api/runs", json={"deployment": "render-manual",
                                       "spec": {"aoi": "alpha", "date": "2024-03-11", "scale": 2, "model": "median"}})
    assert r.status_code == 404 and "python -m deployments.deploy" in r.json()["detail"], r.text


def test_render_manual_is_scheduled_on_prefect(prefect_harness: None, client: Any, view_store: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The project's render-manual deployment applied to a real Prefect API: the viewer's
    request becomes a scheduled flow run of it, with the request and the viewer's store."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    from deployments.definitions import model_deployments

    (dep,) = [d for d in model_deployments() if d.name == "render-manual"]
    dep_id = dep.apply()
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    r = client.post("/api/runs", json={"deployment": "render-manual",
                                       "spec": {"aoi": "alpha", "date": "2024-03-21", "scale": 2, "model": "median"}})
    assert r.status_code == 200, r.text
    with get_client(sync_client=True) as pc:
        run = pc.read_flow_run(r.json()["flow_run_id"])
    assert run.deployment_id == dep_id and run.state is not None and run.state.is_scheduled()
    assert run.parameters["spec"]["date"] == "2024-03-21" and run.parameters["spec"]["aoi"] == "alpha"
    assert run.parameters["store"]["uri"] == view_store["uri"]


# -- in a real browser ---------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def view_server(view_store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``stliif view`` running on 127.0.0.1 (the real command, as a user starts it)."""
    port = free_port()
    log = tmp_path_factory.mktemp("view-log") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "stliif_cli.main", "view", "--store", view_store["uri"],
                                 "--port", str(port)], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                env={**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
                                     "PYTHONPATH": str(REPO)})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/api/aois", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"stliif view did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # SIGTERM: a graceful stop, one line, exit 0
    assert proc.returncode == 0 and "stliif view stopped" in log.read_text(), log.read_text()[-2000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian through its chromedriver (no driver download)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("the viewer's tests need Debian's chromium and chromium-driver: run scripts/setup")
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, script: str, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(script))


_TILE_URLS = "return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/tiles/'))"
_LOADED = ("const t = [...document.querySelectorAll('.{cls} img')]; return t.length > 0 && t.every(i => i.complete"
           " && i.naturalWidth > 0 && i.classList.contains('leaflet-tile-loaded') && i.src.includes('{needle}'))")
"""Every tile of a layer (class ``cls``) loaded, each of the URL with ``needle``."""


@pytest.mark.services
def test_viewer_in_a_real_browser(view_server: str, browser: Any, view_store: dict[str, Any], tmp_path: Path) -> None:
    from urllib.parse import quote

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    d = browser
    d.get(view_server + "/")
    # every AOI of the store is a footprint on the map and an entry of the list
    _wait(d, "return window.stliifView && window.stliifView.state.ready")
    assert _wait(d, "return document.querySelectorAll('path.aoi-footprint').length === 3")
    assert [li.get_attribute("data-aoi") for li in d.find_elements(By.CSS_SELECTOR, "#aoi-list li")] == [
        *AOIS, "crop/raw/alpha/centre"]
    d.save_screenshot(str(tmp_path / "1-footprints.png"))

    # one AOI: its revisits on the date slider, tiles of the date shown
    d.find_element(By.CSS_SELECTOR, '#aoi-list li[data-aoi="alpha"]').click()
    _wait(d, _LOADED.format(cls="input-tiles", needle="t=0"))
    assert "2024-03-01" in d.find_element(By.ID, "date-label").text
    assert "raw/alpha" in d.find_element(By.ID, "lineage").text
    assert not d.find_element(By.ID, "runs-box").is_displayed()  # no PREFECT_API_URL: no runs offered
    d.save_screenshot(str(tmp_path / "2-aoi.png"))
    before = set(d.execute_script(_TILE_URLS))
    slider = d.find_element(By.ID, "date-slider")
    slider.send_keys(Keys.ARROW_RIGHT)
    slider.send_keys(Keys.ARROW_RIGHT)
    _wait(d, _LOADED.format(cls="input-tiles", needle="t=2"))
    new = set(d.execute_script(_TILE_URLS)) - before
    assert new and all("t=" in u for u in new) and any("t=2" in u for u in new)
    assert "2024-03-21" in d.find_element(By.ID, "date-label").text
    bars = d.find_elements(By.CSS_SELECTOR, "#date-bars .bar")  # one per revisit, by clear fraction
    assert len(bars) == 4 and "current" in bars[2].get_attribute("class") and "cloudy" in bars[2].get_attribute("class")
    bars[3].click()
    _wait(d, _LOADED.format(cls="input-tiles", needle="t=3"))
    bars[2].click()
    _wait(d, _LOADED.format(cls="input-tiles", needle="t=2"))
    d.find_element(By.ID, "cloud-toggle").click()
    _wait(d, _LOADED.format(cls="cloud-tiles", needle="layer=cloud"))
    d.save_screenshot(str(tmp_path / "3-date-clouds.png"))

    # a render, swiped against the 10 m input at its date
    Select(d.find_element(By.ID, "render-select")).select_by_visible_text("median / " + view_store["render"].split("/")[-1])
    _wait(d, _LOADED.format(cls="render-tiles", needle=quote(view_store["render"], safe="")))
    _wait(d, _LOADED.format(cls="input-tiles", needle="t=1"))
    assert "2024-03-11" in d.find_element(By.ID, "date-label").text  # the input at the render's date
    lineage = d.find_element(By.ID, "lineage").text
    assert view_store["render"] in lineage and "median" in lineage
    assert view_store["store"].snapshot_id() in d.find_element(By.ID, "store").text
    assert d.execute_script("return document.querySelector('.leaflet-pane.leaflet-render-pane').style.clip").startswith("rect(")
    d.save_screenshot(str(tmp_path / "4-render-swipe.png"))

    # a series: one of its dates at a time, the input following
    Select(d.find_element(By.ID, "render-select")).select_by_visible_text("median / " + view_store["series"].split("/")[-1])
    assert d.find_element(By.ID, "render-date").is_displayed()
    Select(d.find_element(By.ID, "render-date")).select_by_index(3)
    _wait(d, _LOADED.format(cls="render-tiles", needle="t=3"))
    _wait(d, _LOADED.format(cls="input-tiles", needle="t=3"))
    assert "2024-03-31" in d.find_element(By.ID, "date-label").text
    d.save_screenshot(str(tmp_path / "5-series.png"))

    # a crop is an AOI of its own
    d.find_element(By.CSS_SELECTOR, '#aoi-list li[data-aoi="crop/raw/alpha/centre"]').click()
    _wait(d, _LOADED.format(cls="input-tiles", needle=quote("crop/raw/alpha/centre", safe="")))
    assert "crop/raw/alpha/centre" in d.find_element(By.ID, "lineage").text

    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("1-footprints.png", "4-render-swipe.png"))


def test_an_array_asked_for_by_many_tiles_at_once_is_read_once() -> None:
    import threading

    from stliif_cli.view.app import _Arrays

    cache, made = _Arrays(size=2), []

    def make() -> int:
        made.append(1)
        time.sleep(0.2)
        return len(made)

    threads = [threading.Thread(target=cache.get, args=(("render", 0), make)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and cache.get(("render", 0), make) == 1
    for k in range(3):  # least recently used out
        cache.get(("other", k), make)
    assert cache.get(("render", 0), make) == 5


def test_an_empty_store_is_an_empty_map(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from stliif_cli.view.app import create_app

    store = ArtifactStore.open(str(tmp_path / "empty"))
    with TestClient(create_app(store), base_url="http://127.0.0.1:8765") as c:
        fc = c.get("/api/aois").json()
        assert fc["features"] == [] and fc["snapshot"] == store.snapshot_id()
        assert c.get("/api/renders").json()["renders"] == []
        assert c.get("/api/aoi/anything").status_code == 404
        page = c.get("/")
        assert page.status_code == 200 and "/static/vendor/leaflet/leaflet.js" in page.text
        assert c.get("/static/vendor/leaflet/leaflet.js").status_code == 200
