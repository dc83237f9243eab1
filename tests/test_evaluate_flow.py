"""The evaluate flow under Prefect: commits metrics with lineage, reruns commit nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stliif.config import StoreSpec
from stliif.store import ArtifactStore
from tests.test_evaluate_clean import build_eval_store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_evaluate_flow_commits_once_with_lineage(
    tmp_path_factory: pytest.TempPathFactory, worldstrat: Path, tmp_path: Path
) -> None:
    from prefect.artifacts import Artifact

    from flows.evaluate import evaluate

    shutil.copytree(build_eval_store(tmp_path_factory, worldstrat), tmp_path / "store")
    spec = StoreSpec(uri=str(tmp_path / "store"))
    store = ArtifactStore.open(spec)
    n_commits = len(store.log())
    kwargs = dict(protocol="clean", model="median", store=spec, aois=["Landcover-31746"],
                  scales=["x4"], ssim=False)  # fmt: skip

    first = evaluate(**kwargs)
    assert first["status"] == "committed" and first["path"] == "metrics/median/clean"
    assert len(store.log()) == n_commits + 1
    doc = store.read_json("metrics/median/clean")
    ev = doc["evaluation"]
    assert ev["aois"] == ["Landcover-31746"] and ev["protocol"] == "clean"
    assert 20 < ev["means"]["x4"]["psnr"] < 35 and ev["means"]["x4"]["ssim"] is None
    assert set(ev["deltas"]) == {"bicubic", "median-colour", "linear"}
    assert doc["report"].startswith("# Evaluation of `median` on protocol C")
    meta = store.log(limit=1)[0].metadata
    assert meta["stage"] == "evaluate" and meta["run_key"] == first["run_key"]
    assert meta["inputs"]["matched/clean/Landcover-31746"] == store.version("matched/clean/Landcover-31746")
    assert meta["inputs"]["splits/paper"] == store.version("splits/paper")
    assert "pansharpened/Landcover-14956" in meta["inputs"]  # the colour map's training AOI
    assert first["means"]["x4"]["psnr"] == ev["means"]["x4"]["psnr"]

    report = Artifact.get("eval-clean-median")
    assert report is not None and "Paired per-AOI deltas" in str(report.data)
    table = Artifact.get("eval-clean-median-table")
    assert table is not None and "Landcover-31746" in str(table.data)

    # nothing changed: nothing is computed or committed
    second = evaluate(**kwargs)
    assert second["status"] == "unchanged" and second["run_key"] == first["run_key"]
    assert len(store.log()) == n_commits + 1 and second["snapshot_id"] == first["snapshot_id"]
    assert store.version("metrics/median/clean") == first["run_key"]

    # other parameters are another run key, committed to the same path
    third = evaluate(**{**kwargs, "aois": ["Amnesty_POI-13-1-1"]})
    assert third["status"] == "committed" and third["run_key"] != first["run_key"]
    assert len(store.log()) == n_commits + 2


def test_evaluate_flow_paper_protocol(worldstrat: Path, tmp_path: Path) -> None:
    from flows.evaluate import evaluate

    spec = StoreSpec(uri=str(tmp_path / "store"))
    kwargs = dict(protocol="paper", model="bicubic", store=spec, data=str(worldstrat),
                  aois=["UNHCR-NGAs036019"], scales=["x2"], ssim=False)  # fmt: skip
    first = evaluate(**kwargs)
    assert first["status"] == "committed" and first["path"] == "metrics/bicubic/paper"
    store = ArtifactStore.open(spec)
    doc = store.read_json("metrics/bicubic/paper")["evaluation"]
    assert doc["metrics"]["UNHCR-NGAs036019"]["x2"]["psnr"] == pytest.approx(23.07, abs=0.005)
    assert set(store.log(limit=1)[0].metadata["inputs"]) == {"reference"}
    assert evaluate(**kwargs)["status"] == "unchanged"
