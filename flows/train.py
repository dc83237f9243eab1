"""The train flow: train a (temporal) LIIF, version the best checkpoint, report the curves."""

from __future__ import annotations

from typing import Any

from prefect import flow

from stliif.config import StoreSpec
from stliif.names import validate_name
from stliif.train import TrainSpec
from tasks.train import commit_model_task, publish_training_task, train_task


@flow(name="train")
def train(
    spec: TrainSpec | None = None,
    name: str = "temporal-liif",
    out_dir: str | None = None,
    time_limit_s: float | None = None,
    store: StoreSpec | None = None,
) -> dict[str, Any]:
    """Train ``spec`` into ``out_dir`` (default ``stliif-runs/<name>``; resumed when it holds a
    ``last.pt``), commit ``models/<name>`` to the store with its lineage (a ``source="store"``
    spec reads its scenes from that store, and the commit lists their versions as its inputs),
    and publish the validation table and training curves. Selection uses the validation AOIs only.
    """
    from prefect.runtime import flow_run

    name = validate_name(name, what="model name")
    spec = spec or TrainSpec()
    store = store or StoreSpec()
    record = train_task(spec, out_dir or f"stliif-runs/{name}", name, time_limit_s, store)
    publish_training_task(record, name)
    if record["best"] is None:
        return {**record, "model": None}
    return {**record, "model": commit_model_task(store, name, record["out_dir"], str(flow_run.id or ""))}
