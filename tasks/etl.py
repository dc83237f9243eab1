"""ETL tasks: one stage for a batch of AOIs (one commit), and the split."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from stliif.config import StoreSpec
from stliif.errors import StliifError
from stliif.stages import run_split, run_stage_batch, stage_key
from tasks.common import open_store, retry_transient


def _cache_key(ctx: TaskRunContext, p: dict[str, Any]) -> str | None:
    """The batch's key in the open store: every AOI's :func:`stliif.stages.stage_key`, hashed;
    ``None``, so no cache lookup, unless the store already holds every AOI's outputs (a blocked
    AOI, or a bad input, gives none: the run reports it)."""
    if p.get("force") or _blocked(p.get("upstream")):
        return None
    try:
        store = open_store(p["store"])
        keys = [stage_key(store, p["stage"], a, data=p["data"], params=p.get("params")) for a in p["aois"]]
    except StliifError:
        return None
    if not keys or None in keys:
        return None
    digest = hashlib.sha256("\n".join(f"{a}={k}" for a, k in zip(p["aois"], keys, strict=True)).encode()).hexdigest()
    return f"{p['stage']}-{len(keys)}-{digest[:40]}"  # a plain name: result storage uses it as a path


def _blocked(upstream: list[list[dict[str, Any]]] | None) -> set[str]:
    """The AOIs that failed, or were not run, in the upstream batches' records."""
    return {r["aoi"] for recs in upstream or [] for r in recs if r["status"] in ("failed", "not run")}


def _run_name() -> str:
    """``<stage>[-<mode>]-<aoi>[-and-<n>-more]``: ``subset-paper-Landcover-14956`` tells the modes
    apart in the UI."""
    from prefect.runtime import task_run

    p = task_run.parameters
    aois = list(p["aois"])
    more = f"-and-{len(aois) - 1}-more" if len(aois) > 1 else ""
    return "-".join(str(x) for x in (p["stage"], (p.get("params") or {}).get("mode"), aois[0] if aois else "") if x) + more


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
    aois: list[str],
    store: StoreSpec,
    data: str,
    params: dict[str, Any] | None = None,
    skip_errors: bool = False,
    announce: bool = False,
    force: bool = False,
    upstream: list[list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Run ``stage`` for a batch of AOIs, committed at once (:func:`stliif.stages.run_stage_batch`);
    returns a small record per AOI, and logs one line per AOI (status, artifacts, run key, reason).

    An AOI that fails is that AOI's ``failed`` record, not the batch's failure; an AOI that
    failed (or was not run) in an ``upstream`` batch's records is ``not run``. With ``announce``,
    each AOI whose run committed new data emits ``stliif.artifact.committed``."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    blocked = _blocked(upstream)
    results = run_stage_batch(
        open_store(store), stage, aois, data=data, params=params, run_id=str(flow_run.id or ""),
        skip_errors=skip_errors, force=force, keep_going=True, blocked=blocked,
    )
    logger = get_run_logger()
    for result in results:
        logger.log(
            logging.ERROR if result.status == "failed" else logging.INFO, "%s %s: %s (run key %s)%s",
            result.status, result.aoi, ", ".join(result.artifacts) or "-", result.run_key or "-",
            f": {result.reason}" if result.reason else "",
        )
        if announce and result.status == "committed":
            announce_commit(store, result.to_dict())
    return [r.to_dict() for r in results]


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
