"""The ETL flow: import -> mask -> pansharpen -> subset -> histogram -> split, AOIs in parallel."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from stliif.config import ETLSpec, StoreSpec
from stliif.report import etl_markdown
from stliif.errors import StliifError
from stliif.sources.worldstrat import list_aois, resolve_aois
from stliif.stages import AOI_STAGES, plan_stages, store_aois
from flows.runners import task_runner
from tasks.common import open_store
from tasks.etl import split_task, stage_task


@flow(name="etl", task_runner=task_runner())
def etl(spec: ETLSpec | None = None, store: StoreSpec | None = None) -> dict[str, Any]:
    """Build the versioned, analysis-ready artifacts of a WorldStrat dataset.

    Any subset of stages can run alone (``spec.stages``): each reads its inputs from the store.
    Returns the per-stage records and the final snapshot id.
    """
    spec = spec or ETLSpec()
    store = store or StoreSpec()
    if "import" in spec.stages:
        aois = resolve_aois(spec.data, spec.aois)  # validates the data root before any write
        repo = open_store(store)  # creates the store, and fails early on a bad location
    else:  # stages that read only the store: its AOIs (imported or acquired) are the ones there are
        repo = open_store(store)
        try:
            known = list_aois(spec.data)
        except StliifError:  # no dataset here (an acquisition-only store)
            known = []
        aois = store_aois(repo, spec.aois, known=known)
    # An import that runs without its downstream stages announces new data, so that an automation
    # (deployment etl-downstream) runs them for the AOIs that changed.
    announce = not set(spec.stages) & {"mask", "pansharpen", "subset", "histogram"}
    futures: list[PrefectFuture[dict[str, Any]]] = []
    for aoi in aois:
        done: dict[str, PrefectFuture[dict[str, Any]]] = {}
        for name, stage, params, deps in plan_stages(spec.stages, modes=spec.modes, k=spec.k):
            assert stage in AOI_STAGES
            fut = stage_task.submit(
                stage, aoi, store, spec.data, params, skip_errors=spec.skip_bad,
                announce=announce and stage == "import", wait_for=[done[d] for d in deps if d in done],
            )
            done[name] = fut
            futures.append(fut)
    with tqdm(total=len(futures), desc="etl", unit="stage", disable=None) as bar:
        for fut in as_completed(futures):
            bar.update()
            bar.set_postfix_str(str(fut.task_run_id)[:8], refresh=False)
    records = [f.result() for f in futures]
    if "split" in spec.stages:
        skipped = {r["aoi"] for r in records if r["status"] == "skipped"}
        records.append(split_task(store, [a for a in aois if a not in skipped], spec.split_seed))
    snapshot = repo.snapshot_id()
    create_markdown_artifact(
        etl_markdown(records, store_uri=store.uri, branch=store.branch, snapshot=snapshot),
        key="etl-report",
        description="ETL run: AOIs, revisits, cloud fractions, selected dates",
    )
    return {"snapshot_id": snapshot, "records": records}
