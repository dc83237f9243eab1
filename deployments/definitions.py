"""Deployment definitions: one per flow, and one per ETL stage alone.

Parameters are validated against the flows' pydantic specs (``ETLSpec``, ``StoreSpec``), so the
Prefect UI shows a form for each. Defaults (data path, store) are resolved on the machine that
runs the flow (``$STLIIF_DATA``, ``$STLIIF_STORE``), not where the deployment was made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from flows.acquire import acquire
from flows.etl import etl
from flows.evaluate import evaluate
from flows.pipeline import pipeline
from flows.render import render
from flows.train import train
from stliif.config import STAGES
from tasks.etl import COMMITTED_EVENT

# A local Icechunk store takes one committer at a time (the store's lock enforces it; this keeps
# flow runs from queueing on the lock): runs of the same deployment wait for each other.
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
REPO = Path(__file__).resolve().parents[1]
Flows = dict[str, Flow[..., Any]]


def flows(source: str | Path | None = None) -> Flows:
    """The project's flows: imported here (for ``serve``), or loaded from ``source`` (a checkout
    path or git URL) so that a work pool's workers fetch the code from there (for ``deploy``)."""
    local = {"acquire": acquire, "etl": etl, "evaluate": evaluate, "pipeline": pipeline, "render": render, "train": train}
    if source is None:
        return local
    return {name: Flow.from_source(str(source), f"flows/{name}.py:{name}") for name in local}  # type: ignore[misc]


def etl_deployments(f: Flows | None = None) -> list[RunnerDeployment]:
    """``etl-manual`` (the whole ETL) and ``etl-<stage>-manual`` for each stage alone."""
    f = f or flows()
    out = [
        f["etl"].to_deployment(
            name="etl-manual",
            description="Import WorldStrat and build every preprocessing artifact.",
            tags=["stliif", "etl"],
            concurrency_limit=ONE_AT_A_TIME,
        )
    ]
    for stage in STAGES:
        out.append(
            f["etl"].to_deployment(
                name=f"etl-{stage}-manual",
                description=f"Rerun the ETL stage '{stage}' alone, reading its inputs from the store.",
                # `stages`, not spec.stages: a run given its own `spec` (its AOIs, say) still runs
                # only this stage, since Prefect replaces a parameter whole.
                parameters={"stages": [stage]},
                tags=["stliif", "etl", stage],
                concurrency_limit=ONE_AT_A_TIME,
            )
        )
    return out


DOWNSTREAM = [s for s in STAGES if s != "import"]
"""What ``etl-downstream`` runs for an AOI whose import committed: its stages, and the split
(made of every AOI in the store: unchanged unless the store's set of AOIs changed)."""
EVENT_STORE = "{{ event.payload.store }}"
"""The store (a StoreSpec's fields) that the event's commit went to: downstream runs target it."""
REFRESH_FILE = Path(__file__).with_name("refresh.json")


def refresh_config(kind: str = "refreshes", path: Path | None = None) -> list[dict[str, Any]]:
    """The scheduled ``refreshes`` (WorldStrat re-imports) or ``acquisitions`` (STAC areas):
    ``$STLIIF_REFRESH_FILE`` or ``deployments/refresh.json``."""
    p = path or Path(os.environ.get("STLIIF_REFRESH_FILE", REFRESH_FILE))
    return list(json.loads(p.read_text()).get(kind, []))


def _scheduled(flow: Flow[..., Any], name: str, r: dict[str, Any], parameters: dict[str, Any], kind: str,
               what: str) -> RunnerDeployment:
    """A deployment of ``flow`` on refresh entry ``r``'s cron schedule, with ``parameters``."""
    return flow.to_deployment(
        name=name,
        description=f"Scheduled ({r['cron']}): {what}",
        schedules=[CronSchedule(cron=r["cron"], timezone=r.get("timezone", "UTC"))],
        parameters=parameters,
        tags=["stliif", kind, "refresh"],
        concurrency_limit=ONE_AT_A_TIME,
    )


def refresh_deployments(f: Flows | None = None) -> list[RunnerDeployment]:
    """``etl-refresh-<name>`` on a cron schedule per configured AOI list (import only), and
    ``etl-downstream``, triggered by each ``stliif.artifact.committed`` event of the import stage:
    it runs that AOI's downstream stages (mask, pansharpen, subset, histogram) and the split, in
    the store and branch that the event names."""
    f = f or flows()
    out = []
    for r in refresh_config():
        params: dict[str, Any] = {"stages": ["import"]}
        if r.get("aois"):
            params["spec"] = {"aois": list(r["aois"])}
        out.append(_scheduled(f["etl"], f"etl-refresh-{r['name']}", r, params, "etl",
                              "re-import; changed AOIs trigger etl-downstream."))
    out.append(
        f["etl"].to_deployment(
            name="etl-downstream",
            description="The downstream stages of one AOI, run when its import commits new data.",
            parameters={"stages": DOWNSTREAM},
            triggers=[
                DeploymentEventTrigger(
                    name="new data for an AOI",
                    expect={COMMITTED_EVENT},
                    match={"stliif.stage": "import"},
                    parameters={"stages": DOWNSTREAM, "store": EVENT_STORE,
                                "spec": {"aois": ["{{ event.resource['stliif.aoi'] }}"]}},
                )
            ],
            tags=["stliif", "etl", "downstream"],
            concurrency_limit=ONE_AT_A_TIME,
        )
    )
    return out


def acquire_deployments(f: Flows | None = None) -> list[RunnerDeployment]:
    """``acquire-manual`` (one query into ``raw/<aoi>``; a rerun adds only new dates) and
    ``acquire-downstream``: when an acquisition commits new dates, mask that AOI (the stages
    that need SPOT imagery apply to WorldStrat AOIs only)."""
    f = f or flows()
    return [
        f["acquire"].to_deployment(
            name="acquire-manual",
            description="Search STAC providers for an area and dates; commit the datacube raw/<aoi>.",
            # An example request the UI form starts from (a WorldStrat AOI's area, its autumn 2019).
            parameters={"spec": {"aoi": "kyiv-oblast-field", "bbox": [28.5745, 50.4624, 28.5968, 50.4766],
                                 "start": "2019-08-01", "end": "2019-11-30", "max_cloud": 40}},
            tags=["stliif", "acquire"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
        *(
            _scheduled(f["acquire"], f"acquire-refresh-{r['name']}-{area['aoi']}", r, {"spec": area}, "acquire",
                       f"acquire {area['aoi']}'s new dates; a commit triggers acquire-downstream.")
            for r in refresh_config("acquisitions")
            for area in r["areas"]
        ),
        f["etl"].to_deployment(
            name="acquire-downstream",
            description="Mask an acquired AOI when its acquisition commits new dates.",
            parameters={"stages": ["mask"]},
            triggers=[
                DeploymentEventTrigger(
                    name="new acquisition for an AOI",
                    expect={COMMITTED_EVENT},
                    match={"stliif.stage": "acquire"},
                    parameters={"stages": ["mask"], "store": EVENT_STORE,
                                "spec": {"aois": ["{{ event.resource['stliif.aoi'] }}"]}},
                )
            ],
            tags=["stliif", "acquire", "downstream"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
    ]


def model_deployments(f: Flows | None = None) -> list[RunnerDeployment]:
    """``train-manual``, ``evaluate-manual`` (protocol C by default) and ``render-manual``."""
    f = f or flows()
    return [
        f["train"].to_deployment(
            name="train-manual",
            description="Train a (temporal) LIIF, selecting on validation AOIs; commit models/<name>.",
            tags=["stliif", "train"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
        f["evaluate"].to_deployment(
            name="evaluate-manual",
            description="Score a model and every baseline (protocol P or C); commit metrics/<model>/<protocol>.",
            tags=["stliif", "evaluate"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
        f["render"].to_deployment(
            name="render-manual",
            description="Render an AOI at a date or over a range with the checkpoint of record; commit render/<aoi>/...",
            # An example request the UI form starts from (a WorldStrat AOI, its HR date, x4).
            parameters={"spec": {"aoi": "Landcover-14956", "date": "2019-10-20", "scale": 4}},
            tags=["stliif", "render"],
            concurrency_limit=ONE_AT_A_TIME,
        ),
    ]


def pipeline_deployments(f: Flows | None = None) -> list[RunnerDeployment]:
    """``pipeline-manual``: ETL, evaluation of the checkpoint of record on C, renders."""
    f = f or flows()
    return [
        f["pipeline"].to_deployment(
            name="pipeline-manual",
            description="The whole pipeline: ETL, protocol C evaluation of the checkpoint of record, renders.",
            tags=["stliif", "pipeline"],
            concurrency_limit=ONE_AT_A_TIME,
        )
    ]


def all_deployments(source: str | Path | None = None) -> list[RunnerDeployment]:
    """Every deployment of the project (``source``: see :func:`flows`)."""
    f = flows(source)
    return [*acquire_deployments(f), *etl_deployments(f), *refresh_deployments(f), *model_deployments(f), *pipeline_deployments(f)]
