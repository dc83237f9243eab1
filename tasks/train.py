"""Training tasks: train (resumable) and version the best checkpoint in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from stliif.checkpoint import checkpoint_dataset
from stliif.config import StoreSpec
from stliif.train import TrainSpec, train
from tasks.common import embed_image, open_store


@task(task_run_name="train-{name}", retries=1, retry_delay_seconds=5)
def train_task(
    spec: TrainSpec, out_dir: str, name: str, time_limit_s: float | None = None, store: StoreSpec | None = None
) -> dict[str, Any]:
    """Train into ``out_dir`` (a ``source="store"`` spec reading ``store``); a retry (or a later
    run) resumes from its ``last.pt``."""
    source = open_store(store) if spec.source == "store" and store is not None else None
    res = train(spec, out_dir, store=source, resume=True, time_limit_s=time_limit_s)
    return {"out_dir": str(res.out_dir), "step": res.step, "finished": res.finished,
            "best": res.best, "baseline": res.baseline, "validation": res.validation}  # fmt: skip


@task(task_run_name="commit-model-{name}")
def commit_model_task(store: StoreSpec, name: str, out_dir: str, run_id: str = "") -> dict[str, Any]:
    """Commit ``models/<name>`` (the best checkpoint's bytes and description) once per checkpoint;
    its inputs are the store artifacts' versions the run read, or the fingerprint of its files."""
    best = Path(out_dir) / "best.pt"
    ds = checkpoint_dataset(best)
    path = f"models/{name}"
    data = json.loads(ds.attrs["data"])
    res = open_store(store).commit(
        {path: ds}, stage="train",
        params={"model": ds.attrs["model"], "train_spec": ds.attrs["train_spec"], "step": ds.attrs["step"],
                "best": ds.attrs["best"]},
        inputs=data.get("versions") or {"data": str(data.get("fingerprint", ""))},
        run_id=run_id,
    )  # fmt: skip
    return {"path": path, "snapshot_id": res.snapshot_id, "created": res.created}


@task
def publish_training_task(record: dict[str, Any], name: str) -> str:
    """A markdown report (validation table, curves figure) and a validation table artifact."""
    rows = record["validation"]
    lines = [f"# Training `{name}`", "",
             f"{record['step']} steps, {'finished' if record['finished'] else 'stopped (resumable)'}; "
             f"run folder `{record['out_dir']}`.", ""]  # fmt: skip
    if rows:
        scales = [k for k in rows[0] if k.startswith("psnr_")]
        lines += ["| step | " + " | ".join(scales) + " |", "|---" * (len(scales) + 1) + "|"]
        lines += [f"| {int(r['step'])} | " + " | ".join(f"{r[s]:.2f}" for s in scales) + " |" for r in rows]
        base = record["baseline"]
        lines += ["| median+bicubic | " + " | ".join(f"{base.get(s, float('nan')):.2f}" for s in scales) + " |", ""]
    png = Path(record["out_dir"]) / "curves.png"
    image = embed_image(png, "training curves") if png.is_file() else None
    if image:
        lines.append(image)
    key = f"train-{name}".lower().replace("_", "-").replace(".", "-")
    create_markdown_artifact("\n".join(lines), key=key, description=f"Training report of {name}")
    if rows:
        create_table_artifact(rows, key=f"{key}-validation", description="Validation PSNR (protocol P, val AOIs)")
    return key
