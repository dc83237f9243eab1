"""Secret canary: an S3 secret key travels through the whole ETL on S3 and appears nowhere
(logs, commit messages and metadata, flow parameters, artifacts, persisted results)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from stliif.config import ETLSpec, StoreSpec
from stliif.store import ArtifactStore

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_canary_secret_never_leaks(small_dataset: Path, s3_env: str, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    from flows.etl import etl

    canary = f"CANARY{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    caplog.set_level(logging.DEBUG)
    spec = StoreSpec(uri=f"s3://{os.environ['STLIIF_TEST_BUCKET']}/canary", endpoint_url=s3_env, allow_http=True)
    state = etl(ETLSpec(data=str(small_dataset), aois=["Landcover-14956"], stages=["import", "mask"]),
                spec, return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id

    store = ArtifactStore.open(spec)
    history = repr([(c.message, c.metadata) for c in store.log()])
    assert "import" in history and canary not in history

    async def prefect_side() -> str:
        async with get_client() as client:
            run = (await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))))[0]
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts()
            return repr(run.parameters) + "".join(log.message for log in logs) + repr([a.data for a in artifacts])

    seen = asyncio.run(prefect_side())
    assert "Landcover-14956" in seen  # the check looked at real content
    assert canary not in seen
    assert canary not in caplog.text
    home = Path(os.environ["PREFECT_HOME"])
    for path in home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert canary.encode() not in path.read_bytes(), path
