"""Self-supervised pretext scenes and the pretraining phase of a training run (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest

from stliif.checkpoint import load_checkpoint
from stliif.errors import CheckpointError, InvalidInputError
from stliif.train import TrainSpec, train
from stliif.train.data import CropDataset, Scene
from stliif.train.loop import _lr_at
from stliif.train.pretext import block_mean, pretext_scenes
from tests.test_train import _spec


def _scene(t: int = 3, h: int = 7, w: int = 9, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    return Scene(aoi="a", frames=frames, target=np.zeros((40, 40, 3), np.uint8),
                 times=np.array([-3.0, 0.5, 2.0, 4.0][:t], dtype=np.float32))  # fmt: skip


def test_block_mean_rounds_each_block_s_mean():
    f = np.array([[[0, 1], [2, 4]], [[255, 255], [254, 255]]], dtype=np.uint8).reshape(1, 2, 2, 2)
    f = np.concatenate([f, f + 1], axis=2)  # (1, 2, 4, 2): two blocks side by side
    out = block_mean(f, 2)
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.uint8
    want = np.rint(f.reshape(1, 1, 2, 2, 2, 2).astype(float).mean(axis=(2, 4)))
    np.testing.assert_array_equal(out, want)
    with pytest.raises(InvalidInputError, match="divisible"):
        block_mean(np.zeros((1, 3, 4, 1), np.uint8), 2)


def test_each_revisit_is_a_target_of_the_others_downsampled():
    s = _scene()
    out = pretext_scenes([s, _scene(t=1)])  # a single revisit gives nothing
    assert [p.aoi for p in out] == ["a#0", "a#1", "a#2"]
    for j, p in enumerate(out):
        keep = [i for i in range(3) if i != j]
        np.testing.assert_array_equal(p.target, s.frames[j, :6, :6])  # largest even square
        np.testing.assert_array_equal(p.frames, block_mean(s.frames[keep, :6, :6], 2))
        np.testing.assert_allclose(p.times, s.times[keep] - s.times[j])
    with pytest.raises(InvalidInputError, match="at least 2 revisits"):
        pretext_scenes([_scene(t=1)])


def test_pretext_items_query_the_target_on_the_inputs_grid():
    # equal revisits, constant on 2 x 2 blocks: every input pixel equals the target pixels it
    # covers, so each query's value is the inputs' at the LR pixel holding its coordinate
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    frames = np.stack([coarse.repeat(2, axis=0).repeat(2, axis=1)] * 3)
    s = Scene(aoi="b", frames=frames, target=frames[0], times=np.zeros(3, np.float32))
    ds = CropDataset(pretext_scenes([s]), crop=8, queries=64, scale_range=(2.0, 7.0), seed=3)
    for i in range(8):  # random crops, flips and transposes
        item = ds[i]
        assert float(item["scale"]) == pytest.approx(2.0)  # capped at the target's own resolution
        assert int(item["mask"].sum()) == 2
        pix = np.floor((item["coord"].numpy() + 1) / 2 * 8).astype(int)
        np.testing.assert_array_equal(pix, np.clip(pix, 0, 7))
        want = item["frames"][0].numpy()[:, pix[:, 0], pix[:, 1]].T
        np.testing.assert_allclose(item["gt"].numpy(), want, atol=1e-6)


def test_the_learning_rate_restarts_for_the_supervised_phase():
    spec = TrainSpec(pretrain_steps=4, steps=10, lr=1e-3, lr_final=0.0, warmup_steps=2)
    lrs = [_lr_at(spec, k) for k in range(14)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[2] == pytest.approx(5e-4)  # cosine over 4
    assert lrs[4] == pytest.approx(5e-4) and lrs[5] == pytest.approx(1e-3)  # warm-up of 2
    plain = TrainSpec(steps=10, lr=1e-3, lr_final=0.0, warmup_steps=2)
    assert lrs[4:] == [_lr_at(plain, k) for k in range(10)]
    with pytest.raises(ValueError, match="pretrain_steps"):
        TrainSpec(pretrain_steps=4, init_colour=True)


def test_a_pretrained_run_resumes_across_the_phases_and_validates_after_them(worldstrat, tmp_path):
    spec = _spec(worldstrat, pretrain_steps=3, steps=4, val_every=2)
    full = train(spec, tmp_path / "a", progress=False)
    assert full.finished and full.step == 7
    assert [v["step"] for v in full.validation] == [5, 7]  # supervised steps 2 and 4 only
    part = train(spec, tmp_path / "b", until=2, progress=False)  # stopped inside the pretext phase
    assert part.step == 2 and not part.finished
    rest = train(spec, tmp_path / "b", progress=False)
    np.testing.assert_allclose([h["loss"] for h in rest.history], [h["loss"] for h in full.history], rtol=1e-5)
    ck = load_checkpoint(tmp_path / "b" / "last.pt")
    assert ck.step == 7 and ck.train_spec["pretrain_steps"] == 3
    # the supervised phase has the schedule of a run without pretraining, from other weights
    plain = train(_spec(worldstrat, steps=4, val_every=2), tmp_path / "c", progress=False)
    assert [h["lr"] for h in plain.history] == [h["lr"] for h in full.history[3:]]
    assert plain.history[0]["loss"] != pytest.approx(full.history[3]["loss"], rel=1e-4)
    with pytest.raises(CheckpointError, match="different spec"):
        train(spec.model_copy(update={"pretrain_steps": 2}), tmp_path / "b", progress=False)

