"""The pipeline flow: ETL -> evaluation on protocol C -> renders, each a subflow, all versioned."""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.etl import etl
from flows.evaluate import evaluate
from flows.render import render
from stliif.config import PipelineSpec, RenderSpec, StoreSpec
from tasks.common import open_store


@flow(name="pipeline")
def pipeline(spec: PipelineSpec | None = None, store: StoreSpec | None = None) -> dict[str, Any]:
    """Build the artifacts (ETL), score ``spec.model`` and every baseline on protocol C, and
    render AOIs at their HR dates. Every stage is cached by its inputs' versions, so a rerun
    after a data refresh recomputes only what changed. Returns each stage's record."""
    spec = spec or PipelineSpec()
    store = store or StoreSpec()
    out: dict[str, Any] = {"etl": etl(spec.etl, store)}
    repo = open_store(store)
    test_aois: list[str] = []
    if repo.version("splits/paper") is not None:
        test_aois = list(repo.read_json("splits/paper")["test"])
    scored = spec.evaluate_aois or test_aois
    if spec.evaluate and scored:
        out["evaluate"] = evaluate(protocol="clean", model=spec.model, store=store, ssim=spec.ssim,
                                   aois=spec.evaluate_aois)
    out["renders"] = []
    for aoi in spec.render_aois if spec.render_aois is not None else scored[:3]:
        hr_date = str(repo.read(f"raw/{aoi}").attrs.get("hr_date", ""))[:10]
        rs = RenderSpec(aoi=aoi, model=spec.model, date=hr_date, scale=spec.render_scale)
        out["renders"].append(render(rs, store))
    lines = ["# Pipeline run", "", f"Store `{store.uri}` branch `{store.branch}`, snapshot "
             f"`{repo.snapshot_id()}`.", ""]  # fmt: skip
    counts = Counter(r["status"] for r in out["etl"]["records"])
    lines.append("- ETL: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if "evaluate" in out:
        means = out["evaluate"]["means"]
        lines.append(f"- Evaluation of `{spec.model}` on C ({out['evaluate']['status']}): "
                     + ", ".join(f"{s} {m['psnr']:.2f} dB" for s, m in means.items()))  # fmt: skip
    for r in out["renders"]:
        lines.append(f"- Render `{r['path']}` ({r['status']}): " + ", ".join(f"`{f}`" for f in r["files"]))
    create_markdown_artifact("\n".join(lines), key="pipeline-report", description="Pipeline run summary")
    return out
