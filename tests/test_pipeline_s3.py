"""The whole pipeline on S3-compatible storage (moto on 127.0.0.1): the Icechunk store and
Prefect's persisted results on the same endpoint, credentials from the environment only."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from conftest import copy_aois
from stliif.config import ETLSpec, PipelineSpec, StoreSpec
from stliif.store import ArtifactStore

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

AOIS = ["Landcover-14956", "Landcover-31746"]  # a training AOI (colour map) and a test AOI


def test_pipeline_on_s3_with_results_on_s3(worldstrat: Path, tmp_path: Path, s3_env: str) -> None:
    from prefect.settings import (
        PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        temporary_settings,
    )

    from deployments.result_storage import save_result_storage
    from flows.pipeline import pipeline

    bucket = os.environ["STLIIF_TEST_BUCKET"]
    data = copy_aois(worldstrat, tmp_path / "ws", AOIS)
    slug = save_result_storage(f"s3://{bucket}/prefect-results", endpoint_url=s3_env)
    store = StoreSpec(uri=f"s3://{bucket}/store", endpoint_url=s3_env, allow_http=True)
    # Protocol C scores the paper split's test AOIs with a colour map fitted on its training
    # AOIs; 2 AOIs cannot form the study's split, so the manifest is made by hand (as in
    # tests/test_evaluate_clean.py) and the ETL runs every stage but the split.
    ArtifactStore.open(store).commit(
        {"splits/paper": {"name": "paper", "train": AOIS[:1], "val": [], "test": AOIS[1:], "rule": "test fixture", "seed": 0}},
        stage="split", params={"fixture": True},
    )
    stages = ["import", "mask", "pansharpen", "subset", "histogram"]
    spec = PipelineSpec(etl=ETLSpec(data=str(data), stages=stages, modes=["clean"]), evaluate_aois=AOIS[1:])
    with temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: slug, PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}):
        out = pipeline(spec, store)
    assert {r["status"] for r in out["etl"]["records"]} == {"committed"}
    ev = out["evaluate"]
    assert ev["status"] == "committed" and 20 < ev["means"]["x4"]["psnr"] < 40
    (render,) = out["renders"]
    assert render["status"] == "committed" and render["path"].startswith("render/Landcover-31746/")
    repo = ArtifactStore.open(store)
    assert {"metrics", "raw", "render"} <= {p.split("/")[0] for p in repo.list()}
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
            .list_objects_v2(Bucket=bucket, Prefix="prefect-results/").get("Contents", [])]  # fmt: skip
    assert keys, "task results persisted in the bucket"
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    secret = os.environ["AWS_SECRET_ACCESS_KEY"].encode()
    assert not [k for k in keys if secret in s3.get_object(Bucket=bucket, Key=k)["Body"].read()], "no secret in results"
    assert not [c for c in repo.log() if secret.decode() in str(c.metadata) + c.message], "no secret in commits"
    from prefect.filesystems import RemoteFileSystem

    block = RemoteFileSystem.load(slug.split("/")[1])
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(block.model_dump()) and "key" not in block.settings
