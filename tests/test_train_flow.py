"""The train flow under Prefect: trains, versions the best checkpoint, reports; reruns resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stliif.checkpoint import load_checkpoint, restore_checkpoint
from stliif.config import StoreSpec
from stliif.store import ArtifactStore
from stliif.train import TrainSpec
from tests.test_train import TINY, TRAIN_AOIS, VAL_AOIS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_train_flow_commits_the_best_checkpoint(worldstrat: Path, tmp_path: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.train import train

    spec = TrainSpec(model=TINY, data=str(worldstrat), train_aois=TRAIN_AOIS, val_aois=VAL_AOIS,
                     steps=4, batch_size=2, crop=12, queries=64, val_every=2, ckpt_every=2,
                     val_scales={"x2": 314}, threads=1)  # fmt: skip
    store = StoreSpec(uri=str(tmp_path / "store"))
    out = tmp_path / "run"
    rec = train(spec=spec, name="tiny", out_dir=str(out), store=store)
    assert rec["finished"] and rec["step"] == 4 and [v["step"] for v in rec["validation"]] == [2, 4]
    assert rec["model"]["created"] and rec["model"]["path"] == "models/tiny"
    st = ArtifactStore.open(store)
    meta = st.log(limit=1)[0].metadata
    assert meta["stage"] == "train" and meta["inputs"]["data"] == load_checkpoint(out / "best.pt").data["fingerprint"]
    restored = restore_checkpoint(st.read("models/tiny", load=True), tmp_path / "restored.pt")
    assert restored.read_bytes() == (out / "best.pt").read_bytes()
    ck = load_checkpoint(restored)
    assert ck.model["name"] == "temporal-liif" and np.isfinite(ck.extra["best"]["psnr_mean"])
    report = Artifact.get("train-tiny")
    assert report is not None and "| step | psnr_x2" in str(report.data) and "data:image/png;base64," in str(report.data)

    n_commits = len(st.log())
    again = train(spec=spec, name="tiny", out_dir=str(out), store=store)  # finished: nothing to do
    assert again["step"] == 4 and not again["model"]["created"]
    assert len(ArtifactStore.open(store).log()) == n_commits


def test_train_flow_from_the_store_commits_its_inputs_versions(worldstrat: Path, tmp_path: Path) -> None:
    from flows.train import train
    from tests.test_train_store import build_train_store, expected_versions, store_spec

    st = build_train_store(tmp_path / "store", worldstrat)
    rec = train(spec=store_spec(), name="tiny-store", out_dir=str(tmp_path / "run"),
                store=StoreSpec(uri=str(tmp_path / "store")))  # fmt: skip
    assert rec["model"]["created"]
    st = ArtifactStore.open(StoreSpec(uri=str(tmp_path / "store")))
    meta = st.log(limit=1)[0].metadata
    assert meta["stage"] == "train" and meta["inputs"] == expected_versions(st)
    assert load_checkpoint(tmp_path / "run" / "best.pt").data["versions"] == meta["inputs"]
