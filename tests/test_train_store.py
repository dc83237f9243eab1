"""Training fed from the artifact store: the scenes are the store's protocol C artifacts (not the
WorldStrat files), and every input's version is recorded in the checkpoint; a changed artifact
changes both the scenes and the record, and a resume across the change is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stliif.checkpoint import load_checkpoint
from stliif.errors import CheckpointError, InvalidInputError
from stliif.evaluation import load_clean_sample
from stliif.models.predictor import reflectance_to_uint8
from stliif.store import ArtifactStore
from stliif.train import TrainSpec, calibrate, load_inputs, train
from tests.test_train import TINY

pytestmark = pytest.mark.integration
torch.set_num_threads(1)

AOIS = ["Landcover-14956", "Landcover-8732"]
CLEAN_STAGES = (
    ("import", {}), ("mask", {}), ("pansharpen", {}),
    ("subset", {"mode": "clean", "k": 5}), ("histogram", {"mode": "clean"}),
)  # fmt: skip


def build_train_store(path: Path, data: Path) -> ArtifactStore:
    """A store with the clean ETL artifacts of two training AOIs and a ``splits/paper`` manifest."""
    from stliif.stages import run_stage

    store = ArtifactStore.open(str(path))
    for aoi in AOIS:
        for stage, params in CLEAN_STAGES:
            assert run_stage(store, stage, aoi, data=data, params=params).status == "committed"
    manifest = {"name": "paper", "train": AOIS, "val": [], "test": ["Landcover-31746"],
                "rule": "test fixture", "seed": 0}  # fmt: skip
    store.commit({"splits/paper": manifest}, stage="split", params={"fixture": True})
    return store


def store_spec(**kw) -> TrainSpec:
    # data points nowhere: a run that read the WorldStrat files would fail
    args = {"model": TINY, "source": "store", "data": "/nonexistent/worldstrat", "n_val": 1, "steps": 2,
            "batch_size": 2, "crop": 12, "queries": 64, "val_every": 2, "ckpt_every": 2,
            "val_scales": {"x2": 314}, "threads": 1}  # fmt: skip
    return TrainSpec(**(args | kw))


def expected_versions(store: ArtifactStore) -> dict[str, str]:
    paths = ["splits/paper"] + [p for a in AOIS for p in
                                (f"matched/clean/{a}", f"pansharpened/{a}", f"subset/clean/{a}")]  # fmt: skip
    versions = {p: store.version(p) for p in paths}
    assert all(versions.values())
    return versions


def test_training_reads_the_store_and_records_every_input_version(worldstrat: Path, tmp_path: Path) -> None:
    store = build_train_store(tmp_path / "store", worldstrat)
    spec = store_spec()
    with pytest.raises(InvalidInputError, match="needs a store"):
        train(spec, tmp_path / "nostore", progress=False)

    res = train(spec, tmp_path / "run", store=store, progress=False)
    assert res.finished and [v["step"] for v in res.validation] == [2]
    assert np.isfinite(res.validation[0]["psnr_x2"]) and np.isfinite(res.baseline["psnr_x2"])
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck.data["source"] == "store" and ck.data["protocol"] == "C"
    assert ck.data["versions"] == expected_versions(store)
    assert ck.data["snapshot"] == store.snapshot_id() and ck.data["store_id"] == store.store_id
    assert sorted(ck.data["train_aois"] + ck.data["val_aois"]) == sorted(AOIS) and len(ck.data["val_aois"]) == 1
    assert ck.train_spec is not None and ck.train_spec["source"] == "store"

    # the scenes are the store samples' uint8 view
    inputs = load_inputs(spec, store)
    aoi = ck.data["train_aois"][0]
    clean = load_clean_sample(store, aoi)
    np.testing.assert_array_equal(inputs.train[aoi].frames, reflectance_to_uint8(clean.frames, clean.uint8_scale))
    assert inputs.train[aoi].target.shape == (1054, 1054, 3)

    # change one input artifact: new version, new scenes, and the old run is not resumed on it
    m_path = f"matched/clean/{aoi}"
    matched = store.read(m_path, load=True)
    store.commit({m_path: matched.assign(rgb=matched["rgb"] + 0.05)}, stage="histogram",
                 params={"aoi": aoi, "edit": "brighter"})  # fmt: skip
    changed = load_inputs(spec, store)
    assert changed.info["versions"][m_path] != ck.data["versions"][m_path]
    assert changed.info["versions"][m_path] == store.version(m_path)
    assert not np.array_equal(changed.train[aoi].frames, inputs.train[aoi].frames)
    with pytest.raises(CheckpointError, match="other versions"):
        train(spec.model_copy(update={"steps": 4}), tmp_path / "run", store=store, progress=False)

    # calibration reads the run's training AOIs from the store, at the snapshot the run read
    with pytest.raises(InvalidInputError, match="give the store"):
        calibrate(tmp_path / "run" / "best.pt", weight=0.5, v_mean="add")
    cal = calibrate(tmp_path / "run" / "best.pt", weight=0.5, v_mean="add", store=store)
    assert cal.colour_map is not None


def test_cli_trains_from_the_store(worldstrat: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stliif_cli.main import app

    build_train_store(tmp_path / "store", worldstrat)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"model": TINY, "batch_size": 2, "crop": 12, "queries": 64,
                                     "val_scales": {"x2": 314}, "data": "/nonexistent/worldstrat"}))  # fmt: skip
    args = ["train", "--out", str(tmp_path / "run"), "--spec", str(spec_file), "--steps", "1",
            "--n-val", "0", "--threads", "1", "--from-store", "--store", str(tmp_path / "store")]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert set(ck.data["versions"]) >= {"splits/paper", *(f"matched/clean/{a}" for a in AOIS)}
    assert ck.data["train_aois"] == AOIS and ck.data["val_aois"] == []


def test_a_four_band_run_trains_on_nir_and_is_scored_on_its_own_nir(worldstrat: Path, tmp_path: Path) -> None:
    from stliif.evaluation.clean import evaluate_clean, nir_prediction
    from stliif.models.predictor import band_scales, get_predictor, predictor_bands

    store = build_train_store(tmp_path / "store", worldstrat)
    spec = store_spec(bands=4, steps=1, val_every=1, ckpt_every=1)
    inputs = load_inputs(spec, store)
    aoi = inputs.info["train_aois"][0]
    clean = load_clean_sample(store, aoi)
    frames = clean.rgbn_frames()
    scene = inputs.train[aoi]
    assert scene.frames.shape[-1] == scene.target.shape[-1] == 4
    np.testing.assert_array_equal(scene.frames, reflectance_to_uint8(frames, band_scales(frames)))
    assert np.median(scene.frames[..., 3], axis=0).max() == 255  # NIR on its own scale, not clipped at R, G, B's

    res = train(spec, tmp_path / "run4", store=store, progress=False)
    assert res.finished and np.isfinite(res.validation[0]["psnr_x2"])
    ck = load_checkpoint(tmp_path / "run4" / "best.pt")
    assert ck.train_spec["bands"] == 4 and ck.model["args"]["in_channels"] == 4

    pred = get_predictor(tmp_path / "run4", protocol="clean")
    assert predictor_bands(pred) == 4
    val = inputs.info["val_aois"][0]
    sample = load_clean_sample(store, val)
    (result,) = evaluate_clean({"four": pred}, {val: sample}, scales={"x2": 314}, ssim=False, cpsnr=False).values()
    rec = result.records[0]
    # its NIR is the model's output, not the inputs' low frequencies an RGB model gets
    f4 = sample.rgbn_frames()
    own = pred(f4, size=314, dates=sample.dates, target_date=sample.hr_date)[..., 3].astype(np.float64)
    nir_t = sample.nir_target_at(314)
    ok = np.isfinite(sample.target_at(314)).all(axis=-1) & np.isfinite(nir_t)
    assert rec["psnr_refl_nir"] == pytest.approx(10 * np.log10(1.0 / np.mean((own[ok] - nir_t[ok]) ** 2)), abs=1e-9)
    rule = nir_prediction("rgb", pred, sample, 314)
    assert not np.allclose(own, rule, atol=1e-3)
