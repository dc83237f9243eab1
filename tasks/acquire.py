"""Acquisition tasks: search + load + commit one area, write its quicklooks, publish them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from stliif.acquire import run_acquire
from stliif.config import AcquireSpec, StoreSpec
from stliif.quicklook import write_quicklooks
from stliif.sources.dem import add_dem
from stliif.store import ArtifactStore
from tasks.common import embed_image, open_store, retry_transient
from tasks.etl import announce_commit


@task(task_run_name="acquire-{spec.aoi}", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def acquire_task(spec: AcquireSpec, store: StoreSpec, announce: bool = True) -> dict[str, Any]:
    """Run :func:`stliif.acquire.run_acquire`; a commit emits ``stliif.artifact.committed``
    (stage ``acquire``) so that the AOI's downstream stages can follow."""
    from prefect.runtime import flow_run

    s = open_store(store)
    result = run_acquire(s, spec, run_id=str(flow_run.id or "")).to_dict()
    return after_raw(s, store, spec.aoi, spec.quicklooks, result, announce)


@task(task_run_name="dem-{aoi}")
def add_dem_task(store: StoreSpec, aoi: str, files: list[str], nodata: float | None = None) -> dict[str, Any]:
    """Commit local DEM ``files`` into ``raw/<aoi>`` (:func:`stliif.sources.dem.add_dem`), after
    an acquisition or import of the area; a rerun with the same files commits nothing."""
    from prefect.runtime import flow_run

    res = add_dem(open_store(store), aoi, files, nodata, run_id=str(flow_run.id or ""))
    return {"created": res.created, "snapshot_id": res.snapshot_id, "files": len(files)}


def after_raw(
    s: ArtifactStore, store: StoreSpec, aoi: str, quicklooks: str | None, result: dict[str, Any], announce: bool
) -> dict[str, Any]:
    """After an acquisition or an import of ``raw/<aoi>``: the quicklooks of the stored cube, and
    on a commit the ``stliif.artifact.committed`` event (stage ``acquire``) its downstream follows."""
    if quicklooks and result["status"] in ("committed", "unchanged") and result["dates"]:
        files = write_quicklooks(s.read(f"raw/{aoi}", load=True), Path(quicklooks) / aoi)
        result["quicklooks"] = {k: [str(p) for p in v] for k, v in files.items()}
    if announce and result["status"] == "committed":
        announce_commit(store, {"stage": "acquire", "aoi": aoi, "snapshot_id": result["snapshot_id"],
                                "artifacts": [f"raw/{aoi}"], "run_key": ""})
    return result


@task
def publish_acquire_task(result: dict[str, Any]) -> None:
    """The metadata table and the contact sheet / hillshade as Prefect artifacts."""
    key = "acquire-" + "".join(c if c.isalnum() else "-" for c in result["aoi"].lower())
    if result["table"]:
        create_table_artifact(result["table"], key=f"{key}-dates"[:100],
                              description=f"Dates of raw/{result['aoi']} ({result['status']})")
    lines = [f"# Acquisition `raw/{result['aoi']}`: {result['status']}", ""]
    if result["reason"]:
        lines += [result["reason"], ""]
    lines += [f"Found per provider: {result['found']}; failed providers: {result['errors'] or 'none'}.",
              f"New dates: {', '.join(result['new_dates']) or 'none'}; dropped: {result['dropped'] or 'none'}.", ""]
    for kind in ("sheet", "dem"):
        for f in result.get("quicklooks", {}).get(kind, []):
            image = embed_image(Path(f))
            if image:
                lines.append(image)
    create_markdown_artifact("\n".join(lines), key=key[:100], description=f"Acquisition of {result['aoi']}")
