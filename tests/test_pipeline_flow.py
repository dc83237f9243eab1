"""The pipeline flow under Prefect: ETL then renders (evaluation needs the full dataset's split)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stliif.config import ETLSpec, PipelineSpec, StoreSpec
from stliif.store import ArtifactStore

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_pipeline_runs_etl_then_renders_and_reruns_as_no_ops(small_dataset: Path, tmp_path: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.pipeline import pipeline

    spec = PipelineSpec(
        etl=ETLSpec(data=str(small_dataset), stages=["import", "mask", "subset", "split"], modes=["clean"]),
        model="median", render_aois=["Landcover-14956"], render_scale=2,
    )  # fmt: skip
    store = StoreSpec(uri=str(tmp_path / "store"))
    out = pipeline(spec, store)
    assert {r["status"] for r in out["etl"]["records"]} == {"committed"}
    assert "evaluate" not in out  # the 2-AOI split has no paper test AOIs to score
    (render,) = out["renders"]
    assert render["status"] == "committed" and render["path"] == "render/Landcover-14956/median/2019-10-20-x2"
    assert render["attrs"]["date"] == "2019-10-20"
    report = Artifact.get("pipeline-report")
    assert report is not None and "render/Landcover-14956/median/2019-10-20-x2" in str(report.data)
    n = len(ArtifactStore.open(store).log())
    again = pipeline(spec, store)
    assert again["renders"][0]["status"] == "unchanged"
    assert len(ArtifactStore.open(store).log()) == n
