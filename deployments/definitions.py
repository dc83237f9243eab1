"""Deployment definitions: one per flow, and one per ETL stage alone.

Parameters are validated against the flows' pydantic specs (``ETLSpec``, ``StoreSpec``), so the
Prefect UI shows a form for each. Defaults (data path, store) are resolved on the machine that
runs the flow (``$STLIIF_DATA``, ``$STLIIF_STORE``), not where the deployment was made.
"""

from __future__ import annotations

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

from flows.etl import etl
from flows.evaluate import evaluate
from flows.render import render
from flows.train import train
from stliif.config import STAGES

# A local Icechunk store takes one committer at a time (the store's lock enforces it; this keeps
# flow runs from queueing on the lock): runs of the same deployment wait for each other.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def etl_deployments() -> list[RunnerDeployment]:
    """``etl-manual`` (the whole ETL) and ``etl-<stage>-manual`` for each stage alone."""
    out = [
        etl.to_deployment(
            name="etl-manual",
            description="Import WorldStrat and build every preprocessing artifact.",
            tags=["stliif", "etl"],
            concurrency_limit=ONE_AT_A_TIME,
        )
    ]
    for stage in STAGES:
        out.append(
            etl.to_deployment(
                name=f"etl-{stage}-manual",
                description=f"Rerun the ETL stage '{stage}' alone, reading its inputs from the store.",
                parameters={"spec": {"stages": [stage]}},
                tags=["stliif", "etl", stage],
                concurrency_limit=ONE_AT_A_TIME,
            )
        )
    return out


def model_deployments() -> list[RunnerDeployment]:
    """``train-manual``, ``evaluate-manual`` (protocol C by default) and ``render-manual``."""
    return [
        train.to_deployment(
            name="train-manual",
            description="Train a (temporal) LIIF, selecting on validation AOIs; commit models/<name>.",
            tags=["stliif", "train"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
        evaluate.to_deployment(
            name="evaluate-manual",
            description="Score a model and every baseline (protocol P or C); commit metrics/<model>/<protocol>.",
            tags=["stliif", "evaluate"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
        render.to_deployment(
            name="render-manual",
            description="Render an AOI at a date or over a range with the checkpoint of record; commit render/<aoi>/...",
            # An example request the UI form starts from (a WorldStrat AOI, its HR date, x4).
            parameters={"spec": {"aoi": "Landcover-14956", "date": "2019-10-20", "scale": 4}},
            tags=["stliif", "render"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
    ]


def all_deployments() -> list[RunnerDeployment]:
    """Every deployment of the project."""
    return [*etl_deployments(), *model_deployments()]
