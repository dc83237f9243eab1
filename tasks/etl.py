"""ETL tasks: one stage for one AOI, and the split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from stliif.config import StoreSpec
from stliif.errors import StliifError
from stliif.stages import run_split, run_stage, stage_key
from tasks.common import open_store, retry_transient


def _cache_key(ctx: TaskRunContext, p: dict[str, Any]) -> str | None:
    """The stage's key in the open store (:func:`stliif.stages.stage_key`): ``None``, so no cache
    lookup, unless the store already holds the outputs; a bad input is left to the run to report."""
    if p.get("force"):
        return None
    try:
        key = stage_key(open_store(p["store"]), p["stage"], p["aoi"], data=p["data"], params=p.get("params"))
    except StliifError:
        return None
    aoi = str(p["aoi"]).replace("/", "~")  # a crop AOI is a store path
    return None if key is None else f"{p['stage']}-{aoi}-{key}"  # a plain name: result storage uses it as a path


def _run_name() -> str:
    """``<stage>[-<mode>]-<aoi>``: ``subset-paper-Landcover-14956`` tells the modes apart in the UI."""
    from prefect.runtime import task_run

    p = task_run.parameters
    return "-".join(str(x) for x in (p["stage"], (p.get("params") or {}).get("mode"), p["aoi"]) if x)


@task(
    task_run_name=_run_name,
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
    announce: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run ``stage`` for ``aoi`` (see :func:`stliif.stages.run_stage`); returns a small record,
    and logs one line of what happened (status, artifacts, run key, reason).

    With ``announce``, a commit of new data emits ``stliif.artifact.committed``."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    result = run_stage(
        open_store(store), stage, aoi, data=data, params=params,
        run_id=str(flow_run.id or ""), skip_errors=skip_errors, force=force,
    )
    get_run_logger().info(
        "%s %s: %s (run key %s)%s", result.status, aoi, ", ".join(result.artifacts) or "-",
        result.run_key or "-", f": {result.reason}" if result.reason else "",
    )
    if announce and result.status == "committed":
        announce_commit(store, result.to_dict())
    return result.to_dict()


COMMITTED_EVENT = "stliif.artifact.committed"


def _absolute(store: StoreSpec) -> StoreSpec:
    """``store`` with a local folder made absolute (the runs it triggers start elsewhere)."""
    if store.is_s3:
        return store
    return store.model_copy(update={"uri": str(Path(store.uri).expanduser().resolve())})


def announce_commit(store: StoreSpec, record: dict[str, Any]) -> None:
    """Emit ``stliif.artifact.committed`` for a stage run that committed new data.

    The resource is ``stliif.<stage>.<aoi>`` with labels ``stliif.stage``, ``stliif.aoi``,
    ``stliif.store`` and ``stliif.branch``, so automations can run an AOI's downstream stages
    (``deployments/definitions.py``: ``etl-downstream``) in the store named by the payload's
    ``store`` (the StoreSpec's fields: no secret is one of them).
    """
    from prefect.events import emit_event

    store = _absolute(store)
    emit_event(
        event=COMMITTED_EVENT,
        resource={
            "prefect.resource.id": f"stliif.{record['stage']}.{record['aoi']}",
            "stliif.stage": str(record["stage"]),
            "stliif.aoi": str(record["aoi"]),
            "stliif.store": store.uri,
            "stliif.branch": store.branch,
        },
        payload={"snapshot_id": record["snapshot_id"], "artifacts": list(record["artifacts"]),
                 "run_key": record["run_key"], "store": store.model_dump(mode="json")},  # fmt: skip
    )


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def split_task(store: StoreSpec, seed: int = 0, n_val: int = 3) -> dict[str, Any]:
    """Write the split manifests of every AOI in the store (see :func:`stliif.stages.run_split`)."""
    from prefect.runtime import flow_run

    return run_split(open_store(store), seed=seed, n_val=n_val, run_id=str(flow_run.id or "")).to_dict()
