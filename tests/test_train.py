"""Dataset geometry, checkpoints (round trip, atomicity, malicious pickles), the training loop
(resume reproduces the loss sequence, a short real run whose loss falls) and the predictor."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from stliif.checkpoint import load_checkpoint, load_model, save_checkpoint
from stliif.errors import CheckpointError, InvalidInputError
from stliif.evaluation import PAPER_TEST_AOIS, evaluate_paper, load_paper_samples
from stliif.models.coords import frame_times
from stliif.models.inference import ModelPredictor
from stliif.models.liif import ResidualBase
from stliif.models.registry import make_model
from stliif.train import TrainSpec, train
from stliif.train.data import CropDataset, Scene, select_frames
from stliif.train.loop import _forward, _same_run, training_loss

torch.set_num_threads(1)

TINY = {
    "name": "temporal-liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}},
        "hidden": [16, 16],
        "fusion_blocks": 0,
    },
}
TRAIN_AOIS = ["Landcover-14956", "UNHCR-CODs026828"]
VAL_AOIS = ["Landcover-8732"]


# ---------------------------------------------------------------------------------- dataset


def _ramp_scene(h_lr: int = 24, w_lr: int = 20, s0: int = 132, offset: tuple[float, float] = (0, 0)) -> Scene:
    """Frames and target sampling the same linear colour field at their own pixel centres (the
    target's moved by ``offset`` LR px on the LR grid)."""

    def field(n_rows: int, n_cols: int, dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
        u = ((np.arange(n_rows) + 0.5) / n_rows + dy / h_lr)[:, None]
        v = ((np.arange(n_cols) + 0.5) / n_cols + dx / w_lr)[None, :]
        rgb = [30 + 150 * u + 60 * v, 30 + 60 * u + 150 * v, 120 + 50 * u - 40 * v]
        return np.clip(np.rint(np.stack(rgb, -1)), 0, 255).astype(np.uint8)

    lr = field(h_lr, w_lr)
    return Scene(aoi="ramp", frames=np.stack([lr] * 5), target=field(s0, s0, *offset),
                 times=np.linspace(-2, 2, 5, dtype=np.float32))  # fmt: skip


@pytest.mark.parametrize(("scales", "offset"), [((7.0, 7.0), (0, 0)), ((2.0, 4.0), (0, 0)), ((2.0, 7.0), (0.6, -0.5))])
def test_crops_targets_and_coordinates_agree_under_augmentation(scales, offset):
    """Bilinear interpolation of the (augmented) LR crop at the query coordinates reproduces the
    HR truth of a linear colour field: coordinates, cells, flips and transposes are consistent
    between frames and target, and the scale is the real HR grid's (capped at native). A target
    sitting ``offset`` off the LR grid is registered by ``target_offset`` under every flip."""
    scene = _ramp_scene(offset=offset)
    ds = CropDataset([scene], crop=8, queries=300, scale_range=scales, augment=True, seed=3,
                     target_offset=offset)  # fmt: skip
    base = ResidualBase("bilinear")
    for i in range(12):
        it = ds[i]
        lr_side = 0.5 * (24 + 20)
        size = round(float(it["scale"]) * lr_side)
        assert (size == 132) if scales[0] == 7.0 else (44 <= size <= 22 * scales[1])
        cells = sorted(it["cell"][0].tolist())
        assert cells == pytest.approx(sorted([2 * (24 / size) / 8, 2 * (20 / size) / 8]), rel=1e-5)
        pred = base(it["frames"][:1], it["coord"][None])[0]
        inside = (it["coord"].abs() <= 1 - 1 / 8).all(dim=1)  # between outer LR centres
        err = (pred - it["gt"])[inside].abs().max().item() * 255
        assert err < 2.0, f"item {i}: max error {err:.2f} grey levels"
        assert it["mask"].all() and it["frames"].shape == (5, 3, 8, 8)


def test_items_are_deterministic_and_strategies_select_adjacent_frames(worldstrat):
    samples = load_paper_samples(worldstrat, TRAIN_AOIS[:1], with_dates=True)
    scene = Scene.from_sample(next(iter(samples.values())))
    days = (samples[TRAIN_AOIS[0]].dates - samples[TRAIN_AOIS[0]].hr_date).astype(float)
    np.testing.assert_allclose(scene.times, days / 30.0, rtol=1e-6)
    ds = CropDataset([scene], crop=16, queries=64, strategy="groups", seed=1)
    a, b = ds[5], ds[5]
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert not torch.equal(ds[6]["coord"], a["coord"])
    rng = np.random.default_rng(0)
    for strategy, lengths in {"complete": {5}, "pairs": {2}, "single": {1},
                              "groups": {2, 3, 4, 5}}.items():  # fmt: skip
        seen = set()
        for _ in range(60):
            idx = select_frames(5, strategy, rng)  # type: ignore[arg-type]
            assert np.all(np.diff(idx) == 1) and 0 <= idx[0] and idx[-1] < 5
            seen.add(len(idx))
        assert seen == lengths
    it = CropDataset([scene], crop=16, queries=64, strategy="pairs", seed=1)[0]
    assert it["mask"].tolist() == [True, True, False, False, False]
    assert (it["frames"][2:] == 0).all()
    with pytest.raises(InvalidInputError):
        CropDataset([scene], strategy="triples")  # type: ignore[arg-type]
    np.testing.assert_allclose(frame_times(["2020-01-01", "2020-01-31"], "2020-01-16"), [-0.5, 0.5])
    np.testing.assert_allclose(frame_times(None, None, n=3), [0, 0, 0])


# ------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_atomic_overwrite(tmp_path):
    torch.manual_seed(0)
    model = make_model(TINY)
    opt = torch.optim.Adam(model.parameters())
    path = tmp_path / "run" / "ck.pt"
    save_checkpoint(path, model, train_spec={"lr": 1e-3}, data={"aois": ["a"]}, optimizer=opt,
                    step=7, extra={"history": [{"step": 1, "loss": 0.5}]})  # fmt: skip
    ck = load_checkpoint(path)
    assert ck.model == TINY and ck.step == 7 and ck.train_spec == {"lr": 1e-3}
    assert ck.data == {"aois": ["a"]} and ck.extra["history"][0]["loss"] == 0.5
    assert ck.stliif_version and ck.optimizer is not None
    rebuilt = load_model(ck)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[k], v)
    save_checkpoint(path, model, step=8)  # overwrite in place
    assert load_checkpoint(path).step == 8
    assert sorted(p.name for p in path.parent.iterdir()) == ["ck.pt"]  # no temporary left
    with pytest.raises(CheckpointError):
        save_checkpoint(path, model, extra={"bad": object()})
    assert load_checkpoint(path).step == 8


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_malicious_and_broken_checkpoints_are_rejected(tmp_path):
    marker = tmp_path / "pwned"
    model = make_model(TINY)
    evil_zip = tmp_path / "evil.pt"
    torch.save({"format": 1, "stliif_version": "0", "model": TINY,
                "state_dict": model.state_dict(), "extra": _Evil(marker)}, evil_zip)  # fmt: skip
    evil_raw = tmp_path / "evil.pkl"
    evil_raw.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    for path in (evil_zip, evil_raw):
        with pytest.raises(CheckpointError, match="refused"):
            load_checkpoint(path)
        assert not marker.exists()
    pickle.loads(evil_raw.read_bytes())  # the payload is live: plain unpickling runs it
    assert marker.exists()
    good = save_checkpoint(tmp_path / "good.pt", model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": torch.zeros(1)}, wrong)
    for path in (truncated, wrong, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


# ---------------------------------------------------------------------------- training loop


def _spec(root: Path, **kw) -> TrainSpec:
    args = dict(model=TINY, data=str(root), train_aois=TRAIN_AOIS, val_aois=VAL_AOIS, steps=6,
                batch_size=2, crop=12, queries=256, lr=3e-3, ckpt_every=2, val_every=3,
                val_scales={"x2": 64, "x6": 96})  # fmt: skip
    args.update(kw)
    return TrainSpec(**args)


def test_spec_refuses_test_aois(worldstrat):
    # pydantic reports the InvalidInputError as a ValidationError (both are ValueErrors)
    with pytest.raises(ValueError, match="test AOIs"):
        _spec(worldstrat, val_aois=[PAPER_TEST_AOIS[0]])
    with pytest.raises(ValueError, match="test AOIs"):
        _spec(worldstrat, train_aois=[*TRAIN_AOIS, PAPER_TEST_AOIS[3]])


def test_resume_continues_the_step_count_and_reproduces_the_losses(worldstrat, tmp_path):
    spec = _spec(worldstrat)
    full = train(spec, tmp_path / "a", progress=False)
    assert full.finished and full.step == 6 and len(full.validation) == 2
    part = train(spec, tmp_path / "b", until=4, progress=False)
    assert part.step == 4 and not part.finished
    assert load_checkpoint(tmp_path / "b" / "last.pt").step == 4
    rest = train(spec, tmp_path / "b", progress=False)
    assert rest.step == 6 and rest.finished
    assert [h["step"] for h in rest.history] == list(range(1, 7))
    np.testing.assert_allclose([h["loss"] for h in rest.history],
                               [h["loss"] for h in full.history], rtol=1e-5)  # fmt: skip
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v)
    for name in ("last.pt", "best.pt", "curves.csv", "val.csv", "history.json", "curves.png"):
        assert (tmp_path / "b" / name).is_file(), name
    ck = load_checkpoint(tmp_path / "b" / "best.pt")
    assert ck.data["val_aois"] == VAL_AOIS and len(ck.data["fingerprint"]) == 64
    assert ck.train_spec is not None and ck.train_spec["model"] == TINY
    with pytest.raises(CheckpointError, match="different spec"):
        train(spec.model_copy(update={"lr": 1e-2}), tmp_path / "b", progress=False)


def test_debiased_loss_ignores_a_crop_s_per_band_colour_offset_but_not_structure():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 50, 3, generator=g)
    offset = torch.tensor([[[0.1, -0.2, 0.05]], [[0.0, 0.3, -0.1]]])  # (B, 1, C): per crop, per band
    assert training_loss(gt + offset, gt, "l1") > 0.05
    assert training_loss(gt + offset, gt, "l1-debiased") < 1e-6
    noisy = gt + 0.1 * torch.randn(2, 50, 3, generator=g)  # structure errors still cost
    assert training_loss(noisy + offset, gt, "l1-debiased") > 0.05
    assert torch.equal(training_loss(noisy, gt, "l1"), torch.nn.functional.l1_loss(noisy, gt))
    with pytest.raises(InvalidInputError, match="unknown loss"):
        training_loss(noisy, gt, "l2")
    with pytest.raises(ValueError):
        TrainSpec(loss="l2")


@pytest.mark.parametrize("augment", [False, True])
def test_shifted_targets_are_each_query_s_neighbourhood_on_the_target_grid(augment):
    # a target that spells its own pixel's row and column: R = row, G = column
    rows, cols = np.mgrid[0:132, 0:132]
    target = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    scene = Scene(aoi="grid", frames=np.zeros((5, 24, 20, 3), np.uint8), target=target,
                  times=np.linspace(-2, 2, 5, dtype=np.float32))  # fmt: skip
    ds = CropDataset([scene], crop=8, queries=200, scale_range=(7.0, 7.0), augment=augment, seed=5, shift=2)
    plain = CropDataset([scene], crop=8, queries=200, scale_range=(7.0, 7.0), augment=augment, seed=5)
    assert "gt_shift" not in plain[0]
    d = np.arange(-2, 3)
    for i in range(6):
        it = ds[i]
        gt, gs = np.rint(it["gt"].numpy() * 255), np.rint(it["gt_shift"].numpy() * 255)
        assert gs.shape == (200, 25, 3)
        np.testing.assert_array_equal(gs[:, 12], gt)  # the middle shift is the query's own pixel
        want = np.stack(np.broadcast_arrays(gt[:, None, None, 0] + d[None, :, None], gt[:, None, None, 1] + d[None, None, :]), -1)
        want = want.reshape(200, 25, 2)
        if augment:  # flips and transposes permute the shifts: the same neighbourhood, in another order
            assert all({tuple(v) for v in gs[q, :, :2]} == {tuple(v) for v in want[q]} for q in range(200))
        else:
            np.testing.assert_array_equal(gs[..., :2], want)
    with pytest.raises(InvalidInputError, match="shift"):
        CropDataset([scene], crop=8, shift=-1)


def test_shift_loss_forgives_a_crop_s_misregistration_but_not_structure():
    g = torch.Generator().manual_seed(0)
    shifts = torch.rand(2, 50, 25, 3, generator=g)  # (B, Q, S, C)
    gt = shifts[:, :, 12]
    moved = torch.stack([shifts[0, :, 13], shifts[1, :, 7]])  # each crop off by its own pixel shift
    assert training_loss(moved, gt, "l1") > 0.2
    assert training_loss(moved, gt, "l1-shift", shifts) == 0
    noisy = moved + 0.1 * torch.randn(2, 50, 3, generator=g)
    assert training_loss(noisy, gt, "l1-shift", shifts) > 0.05
    with pytest.raises(InvalidInputError, match="gt_shift"):
        training_loss(moved, gt, "l1-shift")


def test_a_run_trains_with_the_shift_loss(worldstrat, tmp_path):
    res = train(_spec(worldstrat, val_aois=None, n_val=0, steps=2, loss="l1-shift"), tmp_path / "run", progress=False)
    assert res.finished and all(np.isfinite(h["loss"]) for h in res.history)
    assert load_checkpoint(tmp_path / "run" / "best.pt").train_spec["loss"] == "l1-shift"


def test_resume_treats_fields_added_later_as_their_defaults():
    old = {"lr": 1e-3, "init_colour": False}  # a spec stored before freeze_colour existed
    assert _same_run(old, {**old, "freeze_colour": False}) == []
    assert _same_run(old, {**old, "freeze_colour": True}) == ["freeze_colour"]
    assert _same_run(old, {**old, "lr": 2e-3, "steps": 9}) == ["lr"]
    with pytest.raises(ValueError, match="init_colour"):
        TrainSpec(freeze_colour=True)


def test_run_without_validation_aois_keeps_the_final_step(worldstrat, tmp_path):
    # n_val=0: the schedule was chosen beforehand (bench/cv.py); nothing is scored, best = last
    spec = _spec(worldstrat, val_aois=None, n_val=0, steps=4, val_every=2)
    res = train(spec, tmp_path / "run", progress=False)
    assert res.finished and res.best == {"step": 4}
    assert res.validation == [] and res.baseline == {}
    best, last = load_checkpoint(tmp_path / "run" / "best.pt"), load_checkpoint(tmp_path / "run" / "last.pt")
    assert best.step == last.step == 4 and best.data["val_aois"] == []
    for k, v in last.state_dict.items():
        torch.testing.assert_close(best.state_dict[k], v)
    assert (tmp_path / "run" / "curves.png").is_file() and not (tmp_path / "run" / "val.csv").exists()


def test_short_real_training_lowers_the_loss(worldstrat, tmp_path):
    spec = _spec(worldstrat, steps=40, batch_size=4, lr=5e-3, val_every=0, ckpt_every=40,
                 strategy="groups")  # fmt: skip
    samples = load_paper_samples(worldstrat, TRAIN_AOIS, with_dates=True)
    probe_ds = CropDataset(list(samples.values()), crop=12, queries=256, seed=123)
    probe = torch.utils.data.default_collate([probe_ds[i] for i in range(16)])

    def probe_loss(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.l1_loss(_forward(model, probe), probe["gt"]))

    torch.manual_seed(spec.seed)
    before = probe_loss(make_model(spec.model))
    res = train(spec, tmp_path / "run", progress=False)
    after = probe_loss(load_model(tmp_path / "run" / "last.pt"))
    losses = [h["loss"] for h in res.history]
    assert after < 0.97 * before, (before, after)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_predictor_plugs_into_evaluate_paper(worldstrat):
    samples = load_paper_samples(worldstrat, VAL_AOIS, with_dates=True)
    torch.manual_seed(0)
    temporal = ModelPredictor(make_model(TINY).eval(), name="tiny")
    sample = samples[VAL_AOIS[0]]
    out = temporal(sample.frames, size=(40, 50), dates=sample.dates, target_date=sample.hr_date)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    res = evaluate_paper(temporal, worldstrat, aois=VAL_AOIS, scales={"x2": 64}, ssim=False,
                         samples=samples)  # fmt: skip
    assert res.name == "tiny" and 15 < res.means["x2"]["psnr"] < 40
    single = make_model({"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}},
        "hidden": [16], "residual": "bilinear"}})  # fmt: skip
    for frame in ("middle", "median"):
        img = ModelPredictor(single.eval(), frame=frame)(sample.frames, size=32)  # type: ignore[arg-type]
        assert img.shape == (32, 32, 3)


def test_init_colour_map_starts_at_the_fitted_baseline(worldstrat) -> None:
    from stliif.models.baselines import ColourMap
    from stliif.train import init_colour_map

    samples = load_paper_samples(worldstrat, TRAIN_AOIS, with_dates=True)
    model = make_model(TINY)
    init_colour_map(model, samples.values())
    cmap = ColourMap.fit((s.frames, s.target) for s in samples.values())
    colour = model.base.colour
    np.testing.assert_allclose(colour.weight[:, :, 0, 0].detach().numpy(), cmap.matrix[:, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(colour.bias.detach().numpy() * 255, cmap.matrix[:, 3], rtol=1e-4, atol=1e-3)
    assert not np.allclose(cmap.matrix[:, :3], np.eye(3))  # the fit is not the identity start


def test_frozen_colour_map_stays_at_the_fit_while_the_rest_learns(worldstrat, tmp_path) -> None:
    from stliif.models.baselines import ColourMap

    tiny = {**TINY, "args": {**TINY["args"], "residual": "bilinear", "colour_map": True}}
    spec = _spec(worldstrat, model=tiny, init_colour=True, freeze_colour=True, steps=4, val_every=0)
    train(spec, tmp_path / "run", progress=False, until=2)
    train(spec, tmp_path / "run", progress=False)  # the freeze holds across a resume too
    model = load_model(tmp_path / "run" / "last.pt")
    torch.manual_seed(spec.seed)
    start = make_model(tiny)
    cmap = ColourMap.fit((s.frames, s.target) for s in load_paper_samples(worldstrat, TRAIN_AOIS).values())
    np.testing.assert_allclose(model.base.colour.weight[:, :, 0, 0].detach().numpy(), cmap.matrix[:, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.base.colour.bias.detach().numpy() * 255, cmap.matrix[:, 3], rtol=1e-4, atol=1e-3)
    moved = [k for k, v in start.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert any(k.startswith("encoder.") for k in moved)  # the rest did train
