"""The ETL flow: import -> mask -> pansharpen -> subset -> histogram -> split, AOIs in parallel."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from flows.runners import task_runner
from stliif.config import ETLSpec, Stage, StoreSpec
from stliif.errors import RunFailures
from stliif.report import etl_markdown
from stliif.stages import AOI_STAGES, FOLDER_STAGES, folder_aois, plan_stages, resolve_run_aois
from tasks.common import open_store
from tasks.etl import split_task, stage_task


@flow(name="etl", task_runner=task_runner())
def etl(
    spec: ETLSpec | None = None,
    store: StoreSpec | None = None,
    stages: list[Stage] | None = None,
) -> dict[str, Any]:
    """Build the versioned, analysis-ready artifacts of a WorldStrat dataset.

    Any subset of stages can run alone (``spec.stages``): each reads its inputs from the store.
    ``stages``, when given, replaces ``spec.stages``: the stage deployments fix it, so a run
    given a partial ``spec`` (its AOIs, say) still runs only its stage. The split is made of
    every AOI in the store, whatever this run's AOIs. Returns the per-stage records and the
    final snapshot id.

    Raises:
        RunFailures: a stage failed for some AOI (without ``skip_bad``), or every AOI was
            skipped; it lists every failure. What the other AOIs committed stays committed.
    """
    spec = spec or ETLSpec()
    store = store or StoreSpec()
    if stages:
        spec = spec.model_copy(update={"stages": list(stages)})
    # One rule (stliif.stages.resolve_run_aois): the folder stages (import) run for the WorldStrat
    # folder's AOIs, the store-only stages for every AOI with a cube in the store (imported,
    # acquired, a crop); an AOI only in the store skips the folder stages.
    if set(spec.stages) & FOLDER_STAGES:
        folder = folder_aois(spec.data) or set(resolve_run_aois(spec.stages, None, data=spec.data, store=None))
        repo = open_store(store)  # creates the store, and fails early on a bad location
    else:
        repo, folder = open_store(store), set()
    aois = resolve_run_aois(spec.stages, spec.aois, data=spec.data, store=repo)
    # An import that runs without its downstream stages announces new data, so that an automation
    # (deployment etl-downstream) runs them for the AOIs that changed.
    announce = not set(spec.stages) & {"mask", "pansharpen", "subset", "histogram"}
    futures: list[PrefectFuture[dict[str, Any]]] = []
    runs: list[tuple[str, str]] = []  # (stage, aoi) of each future
    for aoi in aois:
        done: dict[str, PrefectFuture[dict[str, Any]]] = {}
        for name, stage, params, deps in plan_stages(spec.stages, modes=spec.modes, k=spec.k):
            assert stage in AOI_STAGES
            if stage in FOLDER_STAGES and aoi not in folder:  # in the store only
                continue
            fut = stage_task.submit(
                stage, aoi, store, spec.data, params, skip_errors=spec.skip_bad, force=spec.force,
                announce=announce and stage == "import", wait_for=[done[d] for d in deps if d in done],
            )
            done[name] = fut
            futures.append(fut)
            runs.append((stage, aoi))
    with tqdm(total=len(futures), desc="etl", unit="stage", disable=None) as bar:
        for fut in as_completed(futures):
            bar.update()
            bar.set_postfix_str(str(fut.task_run_id)[:8], refresh=False)
    records = [_record(f, stage, aoi) for f, (stage, aoi) in zip(futures, runs, strict=True)]
    if "split" in spec.stages:
        records.append(split_task(store, spec.split_seed))
    snapshot = repo.snapshot_id()
    create_markdown_artifact(
        etl_markdown(records, store_uri=store.uri, branch=store.branch, snapshot=snapshot),
        key=f"etl-report-{repo.store_id[:12]}",  # one report per store
        description="ETL run: AOIs, revisits, cloud fractions, selected dates",
    )
    _raise_failures(records, skip_bad=spec.skip_bad)
    return {"snapshot_id": snapshot, "records": records}


def _record(fut: PrefectFuture[dict[str, Any]], stage: str, aoi: str) -> dict[str, Any]:
    """A stage task's record; a failed one (or one not run after an upstream failure) as a
    ``failed`` / ``not run`` record with the reason, so that every failure can be reported."""
    fut.wait()
    state = fut.state
    if state.is_completed():
        return fut.result()
    if state.is_failed() or state.is_crashed():
        err = state.result(raise_on_failure=False)
        reason = str(err) if isinstance(err, BaseException) else (state.message or state.name)
        return {"stage": stage, "aoi": aoi, "status": "failed", "reason": reason}
    return {"stage": stage, "aoi": aoi, "status": "not run", "reason": "an upstream stage failed"}


def _raise_failures(records: list[dict[str, Any]], *, skip_bad: bool) -> None:
    """Raise :class:`RunFailures` naming every failed AOI, or every skipped one when
    ``skip_bad`` left nothing that succeeded."""
    failed = [r for r in records if r["status"] == "failed"]
    per_aoi = [r for r in records if r["aoi"] is not None]
    if failed:
        lines = [f"{r['aoi']} ({r['stage']}): {r['reason']}" for r in failed]
        raise RunFailures(f"{len(failed)} stage run(s) failed, for {len({r['aoi'] for r in failed})} AOI(s) "
                          "(the others' work is committed): " + "; ".join(lines))
    if skip_bad and per_aoi and all(r["status"] == "skipped" for r in per_aoi):
        lines = sorted({f"{r['aoi']}: {r['reason']}" for r in per_aoi})
        raise RunFailures("nothing succeeded: every AOI was skipped: " + "; ".join(lines))
