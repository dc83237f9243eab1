"""Evaluation tasks: run (or find) a committed evaluation, and publish it as Prefect artifacts."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import TaskRunContext

from stliif.config import StoreSpec
from stliif.errors import InvalidInputError, StliifError
from stliif.evaluation import PAPER_SCALES, Evaluation, evaluation_key, run_evaluation
from stliif.evaluation.report import table_rows
from tasks.common import open_store, retry_transient


def _scales(names: list[str] | None) -> dict[str, int]:
    unknown = sorted(set(names or []) - set(PAPER_SCALES))
    if unknown:
        raise InvalidInputError(f"unknown scales {unknown}: use {', '.join(PAPER_SCALES)}")
    return {s: n for s, n in PAPER_SCALES.items() if not names or s in names}


def _cache_key(ctx: TaskRunContext, p: dict[str, Any]) -> str | None:
    """Like the ETL stages' key: given only when the open store (by its identity) already holds
    ``metrics/<model>/<protocol>`` at the run key the evaluation would commit under now."""
    try:
        store = open_store(p["store"])
        key, _, _, plan = evaluation_key(
            store, p["protocol"], p["model"], data=p.get("data"), aois=p.get("aois"),
            scales=_scales(p.get("scales")), ssim=p.get("ssim", True),
        )  # fmt: skip
    except StliifError:
        return None
    if store.version(f"metrics/{plan.model}/{p['protocol']}") != key:
        return None
    return f"evaluate-{p['protocol']}-{store.store_id}-{store.spec.branch}-{key}"


@task(
    task_run_name="evaluate-{model}-{protocol}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_transient,
    cache_key_fn=_cache_key,
    persist_result=True,
)
def evaluate_task(
    protocol: str,
    model: str,
    store: StoreSpec,
    data: str | None = None,
    aois: list[str] | None = None,
    scales: list[str] | None = None,
    ssim: bool = True,
) -> dict[str, Any]:
    """Evaluate and commit ``metrics/<model>/<protocol>`` (see :func:`stliif.evaluation.run_evaluation`)."""
    from prefect.runtime import flow_run

    run = run_evaluation(
        open_store(store), protocol, model, data=data, aois=aois, scales=_scales(scales),
        ssim=ssim, run_id=str(flow_run.id or ""),
    )  # fmt: skip
    return run.to_dict()


@task
def publish_task(store: StoreSpec, path: str) -> str:
    """Create the markdown report and the per-AOI table artifacts of a committed evaluation."""
    doc = open_store(store).read_json(path)
    ev = Evaluation.from_dict(doc["evaluation"])
    key = f"eval-{ev.protocol}-{ev.model}".lower().replace("_", "-").replace(".", "-")
    create_markdown_artifact(doc["report"], key=key, description=f"Evaluation report, {path}")
    create_table_artifact(
        table_rows(ev), key=f"{key}-table", description=f"Per-AOI metrics of {ev.model}, {path}"
    )
    return key
