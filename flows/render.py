"""The render flow: a model's image of an AOI at any date and resolution, versioned with lineage."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import RenderSpec, StoreSpec
from tasks.render import publish_render_task, render_task


@flow(name="render")
def render(spec: RenderSpec, store: StoreSpec | None = None) -> dict[str, Any]:
    """Render ``raw/<aoi>`` at ``spec.date`` (or every ``spec.step`` from ``start`` to ``end``),
    write the COG / PNG (or GIF / MP4 / strip), commit ``render/<aoi>/<model>/<name>`` and publish
    the quicklook. Returns the run record (path, status, snapshot id, files, attributes)."""
    from prefect.runtime import flow_run

    record = render_task(spec, store or StoreSpec(), str(flow_run.id or ""))
    publish_render_task(record)
    return record
