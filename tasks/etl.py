"""ETL tasks: one stage for one AOI, and the split."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from stliif.config import StoreSpec
from stliif.stages import run_split, run_stage, stage_key
from tasks.common import open_store, retry_transient


def _cache_key(ctx: TaskRunContext, p: dict[str, Any]) -> str:
    """The store's own run key (inputs' versions + parameters + code version + outputs' state)."""
    store = open_store(p["store"])
    key = stage_key(store, p["stage"], p["aoi"], data=p["data"], params=p.get("params"))
    return f"{p['stage']}-{p['aoi']}-{p['store'].uri}-{p['store'].branch}-{key}"


@task(
    task_run_name="{stage}-{aoi}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_key_fn=_cache_key,
    persist_result=True,
)
def stage_task(
    stage: str,
    aoi: str,
    store: StoreSpec,
    data: str,
    params: dict[str, Any] | None = None,
    skip_errors: bool = False,
) -> dict[str, Any]:
    """Run ``stage`` for ``aoi`` (see :func:`stliif.stages.run_stage`); returns a small record."""
    from prefect.runtime import flow_run

    result = run_stage(
        open_store(store), stage, aoi, data=data, params=params,
        run_id=str(flow_run.id or ""), skip_errors=skip_errors,
    )
    return result.to_dict()


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def split_task(store: StoreSpec, aois: list[str], seed: int = 0, n_val: int = 3) -> dict[str, Any]:
    """Write the split manifests (see :func:`stliif.stages.run_split`)."""
    from prefect.runtime import flow_run

    return run_split(open_store(store), aois, seed=seed, n_val=n_val, run_id=str(flow_run.id or "")).to_dict()
