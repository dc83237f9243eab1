"""The evaluate flow: score a model and every baseline on protocol P or C, commit the metrics."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from stliif.config import StoreSpec, default_data_root
from tasks.evaluate import evaluate_task, publish_task


@flow(name="evaluate")
def evaluate(
    protocol: Literal["paper", "clean"] = "clean",
    model: str = "median",
    store: StoreSpec | None = None,
    data: str | None = None,
    aois: list[str] | None = None,
    scales: list[Literal["x2", "x4", "x6"]] | None = None,
    ssim: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` and the four baselines, commit ``metrics/<model>/<protocol>``.

    Protocol ``paper`` reads the study's references under ``data``; ``clean`` reads the ETL
    artifacts and the ``splits/paper`` manifest from the store. ``aois`` default to the split's
    test AOIs, ``scales`` to x2, x4 and x6 (314, 628, 1054 px). The commit records the versions
    of everything read, so a rerun with nothing changed commits nothing. Publishes the markdown
    report and a per-AOI table as Prefect artifacts. Returns the run record (status, path,
    run key, snapshot id, means).
    """
    store = store or StoreSpec()
    data = data or str(default_data_root())
    record = evaluate_task(protocol, model, store, data, aois, scales, ssim)
    publish_task(store, record["path"])
    return record
