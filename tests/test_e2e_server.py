"""End to end against a real Prefect server on 127.0.0.1: serve the deployments, trigger runs
through the REST API with parameters, check the store; then refresh one AOI's data and check
that only its stages commit again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from stliif.store import ArtifactStore
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.timeout(600)


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def _prefect_server(tmp_path: Path, small_dataset: Path) -> Iterator[tuple[str, dict[str, str], IO[bytes]]]:
    """A real ``prefect server`` on a free loopback port with a temporary home; stopped after."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "STLIIF_DATA": str(small_dataset),
        "STLIIF_STORE": str(tmp_path / "store"),
    }
    log = open(tmp_path / "server.log", "wb")
    srv = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait(f"{api}/health")
        yield api, env, log
    finally:
        _stop(srv)
        log.close()


@pytest.fixture
def server(tmp_path: Path, small_dataset: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The server, with every deployment served from this checkout (``deployments.serve``)."""
    with _prefect_server(tmp_path, small_dataset) as (api, env, log):
        runner = subprocess.Popen(
            [sys.executable, "-m", "deployments.serve"], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            yield api, env
        finally:
            _stop(runner)


def _request(client: httpx.Client, method: str, url: str, **kw: object) -> httpx.Response:
    """One API call, retrying 503 (SQLite busy under load), as Prefect's own client does."""
    for attempt in range(10):
        r = client.request(method, url, **kw)  # type: ignore[arg-type]
        if r.status_code != 503:
            return r
        time.sleep(0.5 * 2 ** min(attempt, 4))
    return r


def _deployment_id(client: httpx.Client, name: str) -> str:
    flow = name.split("-")[0] if name.endswith("-manual") and not name.startswith("etl") else "etl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = _request(client, "GET", f"/deployments/name/{flow}/{name}")
        if r.status_code == 200:
            return str(r.json()["id"])
        time.sleep(1)
    raise TimeoutError(f"deployment {flow}/{name} never registered")


def _run(client: httpx.Client, deployment: str, parameters: dict) -> dict:
    dep = _deployment_id(client, deployment)
    run = _request(client, "POST", f"/deployments/{dep}/create_flow_run", json={"parameters": parameters})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        flow_run = _request(client, "GET", f"/flow_runs/{run_id}").json()
        if flow_run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
            return dict(flow_run)
        time.sleep(1)
    raise TimeoutError(f"flow run {run_id} did not finish")


def _wait_for_run(client: httpx.Client, deployment: str, timeout: float = 300, skip: set[str] | None = None) -> dict:
    """The first flow run of ``deployment`` (created by an automation) not in ``skip``, once it has finished."""
    dep = _deployment_id(client, deployment)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _request(client, "POST", "/flow_runs/filter",
                        json={"deployments": {"id": {"any_": [dep]}}, "limit": 5}).json()  # fmt: skip
        for run in runs:
            if run["id"] in (skip or set()):
                continue
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                assert run["state"]["type"] == "COMPLETED", run["state"]
                return dict(run)
        time.sleep(1)
    raise TimeoutError(f"no run of {deployment} finished within {timeout} s")


def test_deploy_trigger_and_refresh(
    server: tuple[str, dict[str, str]], small_dataset: Path, stac_api: dict, tmp_path: Path
) -> None:
    api, env = server
    store = ArtifactStore.open(env["STLIIF_STORE"])
    with httpx.Client(base_url=api, timeout=30) as client:
        params = {"spec": {"stages": ["import", "mask", "subset"], "modes": ["clean"]}}
        first = _run(client, "etl-manual", params)
        assert first["parameters"] == params
        head = store.snapshot_id()
        stages = [c.metadata.get("stage") for c in store.log()]
        assert stages.count("import") == 2 and stages.count("subset") == 2
        run_ids = {c.metadata.get("run_id") for c in store.log() if c.metadata.get("stage") == "import"}
        assert run_ids == {first["id"]}, "commits record the Prefect flow run id"

        # Refresh one AOI: a new revisit appears. The import deployment re-imports every AOI but
        # commits only the changed one; its commit event triggers etl-downstream for that AOI.
        folder = small_dataset / "lr_dataset/Landcover-14956/L2A"
        for f in sorted(folder.glob("Landcover-14956-1[-.]*")):
            shutil.copy(f, folder / f.name.replace("Landcover-14956-1", "Landcover-14956-9", 1))
        meta = folder / "Landcover-14956-9.metadata"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "lowres_date": "2019-10-21"}))
        _run(client, "etl-import-manual", {})
        downstream = _wait_for_run(client, "etl-downstream")
        assert downstream["parameters"]["spec"]["aois"] == ["Landcover-14956"]
        log = store.log()
        new = [c for c in log[: [c.snapshot_id for c in log].index(head)] if c.runs]  # not the groups' commits
        assert {r["params"].get("aoi") for c in new for r in c.runs if c.metadata["stage"] != "split"} == {"Landcover-14956"}
        stages = sorted(c.metadata["stage"] for c in new)
        assert stages == ["histogram", "histogram", "import", "mask", "pansharpen", "split", "subset", "subset"], stages
        assert store.version("pansharpened/Landcover-14956") and not store.version("pansharpened/Amnesty_POI-13-1-1")
        # the split is made of every AOI in the store, not of the one AOI the event named
        split = store.read_json("splits/stratified")
        assert sorted(split["train"] + split["val"] + split["test"]) == sorted(["Amnesty_POI-13-1-1", "Landcover-14956"])

        # A single-stage deployment given a partial spec (its AOIs) runs its stage only.
        head = store.snapshot_id()
        _run(client, "etl-histogram-manual", {"spec": {"aois": ["Amnesty_POI-13-1-1"]}})
        log = store.log()
        new = log[: [c.snapshot_id for c in log].index(head)]
        assert {c.metadata["stage"] for c in new} == {"histogram"} and new
        assert {c.metadata["params"]["aoi"] for c in new} == {"Amnesty_POI-13-1-1"}
        # ... and with its defaults, every AOI of the store.
        _run(client, "etl-histogram-manual", {})
        assert store.version("matched/clean/Landcover-14956") and store.version("matched/paper/Amnesty_POI-13-1-1")
        assert store.log()[0].metadata["stage"] == "histogram"

        # An import into a second store: its event triggers etl-downstream in that store, not
        # in the default store the deployments serve.
        other = tmp_path / "store2"
        _run(client, "etl-import-manual", {"spec": {"aois": ["Landcover-14956"]}, "store": {"uri": str(other)}})
        second = _wait_for_run(client, "etl-downstream", skip={downstream["id"]})
        assert second["parameters"]["store"]["uri"] == str(other)
        store2 = ArtifactStore.open(str(other), create=False)
        assert store2.version("mask/Landcover-14956") and store2.version("matched/clean/Landcover-14956")
        assert store2.read_json("splits/stratified")["train"] + store2.read_json("splits/stratified")["val"] + \
            store2.read_json("splits/stratified")["test"] == ["Landcover-14956"]

        # An acquisition from the local STAC API commits raw/<aoi>; its event masks that AOI
        # (acquire-downstream). A later refresh adds only the new dates and masks again.
        bbox = next(i["bbox"] for i in stac_api["items"] if i["id"].startswith("Landcover-14956-"))
        acq = {"aoi": "field", "providers": [stac_api["url"]], "collection": "worldstrat-lr", "bbox": bbox,
               "start": "2019-08-01", "end": "2019-09-30", "quicklooks": str(tmp_path / "ql")}  # fmt: skip
        _run(client, "acquire-manual", {"spec": acq})
        first_mask = _wait_for_run(client, "acquire-downstream")
        assert first_mask["parameters"]["spec"]["aois"] == ["field"]
        n_dates = store.read("mask/field")["clear_fraction"].size
        _run(client, "acquire-manual", {"spec": {**acq, "end": "2019-12-31"}})
        _wait_for_run(client, "acquire-downstream", skip={first_mask["id"]})
        assert store.read("mask/field")["clear_fraction"].size > n_dates
        assert [c.metadata["stage"] for c in store.log()[:4]] == ["mask", "acquire", "mask", "acquire"]


def test_process_work_pool_and_worker(tmp_path: Path, small_dataset: Path) -> None:
    """The same deployments on a process work pool, run by `stliif worker` (not served)."""
    with _prefect_server(tmp_path, small_dataset) as (api, env, log):
        deployed = subprocess.run([sys.executable, "-m", "deployments.deploy", "--pool", "test-pool"], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr[-2000:]
        assert "on work pool 'test-pool'" in deployed.stdout
        worker = subprocess.Popen([str(Path(sys.executable).with_name("stliif")), "worker", "--pool", "test-pool"],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
        try:
            with httpx.Client(base_url=api, timeout=30) as client:
                pool = _request(client, "GET", "/work_pools/test-pool").json()
                assert pool["type"] == "process"
                run = _run(client, "etl-import-manual", {"spec": {"aois": ["Landcover-14956"]}})
                assert run["work_pool_name"] == "test-pool"
        finally:
            _stop(worker)
        store = ArtifactStore.open(env["STLIIF_STORE"])
        assert store.version("raw/Landcover-14956") and not store.version("raw/Amnesty_POI-13-1-1")
        assert store.log(limit=1)[0].metadata["run_id"] == run["id"]
