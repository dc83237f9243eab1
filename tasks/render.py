"""Render tasks: render from the store and commit, publish the quicklook or animation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from stliif.config import RenderSpec, StoreSpec
from stliif.render import run_render
from stliif.render.request import nir_text
from tasks.common import embed_image, open_store, retry_transient


@task(task_run_name="render-{spec.aoi}", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_transient)
def render_task(spec: RenderSpec, store: StoreSpec, run_id: str = "") -> dict[str, Any]:
    """Render ``spec`` (see :func:`stliif.render.run_render`) and commit it."""
    fields = spec.model_dump(exclude={"aoi", "model"})
    return run_render(open_store(store), spec.aoi, spec.model, run_id=run_id, progress=True,
                      on_progress=_progress_artifact(spec.aoi), **fields)  # fmt: skip


def _progress_artifact(aoi: str) -> Callable[[int, int], None]:
    """A Prefect progress artifact of the tiles done, updated at each whole percent."""
    state: dict[str, Any] = {"id": None, "pct": -1}

    def update(done: int, total: int) -> None:
        pct = int(100 * done / max(1, total))
        if pct == state["pct"]:
            return
        state["pct"] = pct
        if state["id"] is None:
            key = "render-progress-" + "".join(c if c.isalnum() else "-" for c in aoi.lower())
            state["id"] = create_progress_artifact(float(pct), key=key[:100], description=f"Render of {aoi}: tiles done (%)")
        else:
            update_progress_artifact(state["id"], float(pct))

    return update


@task
def publish_render_task(record: dict[str, Any]) -> str:
    """A markdown artifact: what was rendered, its lineage, and the quicklook or animation."""
    a = record["attrs"]
    lines = [f"# Render `{record['path']}`", "",
             f"Model `{a.get('model')}`, scale {a.get('scale'):.3g}, {record['status']} at snapshot "
             f"`{record['snapshot_id']}`.", ""]  # fmt: skip
    if "revisits" in a:
        lines += [f"Revisits used: {', '.join(a['revisits'])}; nearest {a['nearest_revisit_days']:.1f} days "
                  f"({a['temporal_support']}).", ""]  # fmt: skip
    if "consistency_mae" in a:
        bias = " / ".join(f"{b:+.4f}" for b in a["consistency_bias"])
        names = " / ".join({"B04": "R", "B03": "G", "B02": "B", "B08": "NIR"}.get(b, b) for b in a.get("bands", ["B04", "B03", "B02"]))
        nd = f"{a['consistency_ndvi_mae']:.4f}" if "consistency_ndvi_mae" in a else "n/a (no NIR)"
        lines += [f"Mode `{a.get('mode')}`. Consistency with the inputs (the render averaged back to their grid, against "
                  "their time interpolation):", "",
                  f"| mean abs error | bias {names} | spectral angle (deg) | shift (LR px) | NDVI mean abs error |",
                  "|---|---|---|---|---|", f"| {a['consistency_mae']:.4f} | {bias} | {a['consistency_sam_deg']:.2f} | "
                  f"{a['consistency_shift_px']:.2f} | {nd} |", ""]  # fmt: skip
        if a.get("nir_source"):
            lines += [f"NIR: {nir_text(a['nir_source'])}.", ""]
    elif a.get("consistency"):
        lines += [f"Mode `{a.get('mode')}`; mean abs error against the inputs, per date: "
                  + ", ".join(f"{c['consistency_mae']:.4f}" for c in a["consistency"]), ""]
    lines += ["Files:", *[f"- `{f}`" for f in record["files"]], ""]
    for f in record["files"]:
        p = Path(f)
        image = embed_image(p) if p.suffix in (".png", ".gif") else None
        if image:
            lines.append(image)
    key = "".join(c if c.isalnum() else "-" for c in record["path"].lower())  # render/<aoi>/... -> render-<aoi>-...
    create_markdown_artifact("\n".join(lines), key=key[:100], description=f"Render {record['path']}")
    return key
