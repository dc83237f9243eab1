"""The ETL flow: import -> mask -> pansharpen -> subset -> histogram -> split, batches of AOIs in parallel."""

from __future__ import annotations

import math
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from tqdm import tqdm

from flows.runners import parallelism, task_runner
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
    # AOIs in batches, one per worker (at most spec.batch_size AOIs each): each batch runs the
    # stages in order, one task and one commit per stage; batches run side by side.
    runner = FlowRunContext.get().task_runner  # type: ignore[union-attr]
    workers = parallelism(runner)
    n = max(min(len(aois), workers), math.ceil(len(aois) / spec.batch_size))
    batches = [aois[i::n] for i in range(n)] if aois else []
    futures: list[PrefectFuture[list[dict[str, Any]]]] = []
    runs: list[tuple[str, list[str]]] = []  # (stage, AOIs) of each future
    # Submitted in waves of one batch per worker, stage by stage within a wave: a thread pool's
    # worker that picks a task whose upstream has not finished waits in it, so submitting a
    # batch's stages together filled every worker with one batch (the batches ran one after
    # another); and a wave's batches go through every stage before the next wave starts, so
    # what a stage reads (an AOI's cube) was read or written moments before.
    for wave in (batches[i:i + workers] for i in range(0, len(batches), workers)):
        done: list[dict[str, PrefectFuture[list[dict[str, Any]]]]] = [{} for _ in wave]
        for name, stage, params, deps in plan_stages(spec.stages, modes=spec.modes, k=spec.k):
            assert stage in AOI_STAGES
            for batch, batch_done in zip(wave, done, strict=True):
                todo = [a for a in batch if stage not in FOLDER_STAGES or a in folder]  # else in the store only
                if not todo:
                    continue
                upstream = [batch_done[d] for d in deps if d in batch_done]
                fut = stage_task.submit(
                    stage, todo, store, spec.data, params, skip_errors=spec.skip_bad, force=spec.force,
                    announce=announce and stage == "import", upstream=upstream or None,  # type: ignore[arg-type]
                )
                batch_done[name] = fut
                futures.append(fut)
                runs.append((stage, todo))
    size = {f.task_run_id: len(names) for f, (_, names) in zip(futures, runs, strict=True)}
    with tqdm(total=sum(size.values()), desc="etl", unit="AOI stage", disable=None) as bar:
        for fut in as_completed(futures):
            bar.update(size[fut.task_run_id])
    records = [r for f, (stage, names) in zip(futures, runs, strict=True) for r in _records(f, stage, names)]
    order = {a: i for i, a in enumerate(aois)}
    records.sort(key=lambda r: order[r["aoi"]])  # AOI by AOI, stages in order
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


def _records(fut: PrefectFuture[list[dict[str, Any]]], stage: str, aois: list[str]) -> list[dict[str, Any]]:
    """A stage task's records, one per AOI; when the task itself failed (or was not run after
    an upstream failure), a ``failed`` / ``not run`` record per AOI with the reason, so that
    every failure can be reported."""
    fut.wait()
    state = fut.state
    if state.is_completed():
        return list(fut.result())
    if state.is_failed() or state.is_crashed():
        err = state.result(raise_on_failure=False)
        reason = str(err) if isinstance(err, BaseException) else (state.message or state.name)
        return [{"stage": stage, "aoi": a, "status": "failed", "reason": reason} for a in aois]
    return [{"stage": stage, "aoi": a, "status": "not run", "reason": "an upstream stage failed"} for a in aois]


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
