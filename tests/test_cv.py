"""Cross-validation over every AOI (stliif.train.cv): folds, out-of-fold scoring, paired
deltas, resume, and the fold model committed to the store, on tiny synthetic arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stliif.checkpoint import load_checkpoint, save_checkpoint
from stliif.errors import InvalidInputError
from stliif.evaluation.clean import CleanSample
from stliif.evaluation.paper import PAPER_TEST_AOIS, PaperSample
from stliif.models.baselines import resize
from stliif.models.registry import make_model
from stliif.store import ArtifactStore
from stliif.train import TrainSpec
from stliif.train.cv import (
    calibrate_fold,
    calibration_rule,
    check_out_of_fold,
    commit_fold,
    fold_spec,
    kfold,
    merge,
    score_fold,
    summarize,
    train_fold,
)

TINY = {"name": "temporal-liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 8, "n_resblocks": 1}},
    "hidden": [16], "fusion_blocks": 0}}  # fmt: skip
SCALES = {"x2": 24, "x4": 36}
AOIS = ["Landcover-14956", "UNHCR-CODs026828", "Landcover-8732", *sorted(PAPER_TEST_AOIS)[:4]]


def _paper(aoi: str, seed: int) -> PaperSample:
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, size=(12, 10, 3))
    frames = np.clip(base[None] + rng.normal(0, 4, size=(5, 12, 10, 3)), 0, 255).astype(np.uint8)
    target = np.clip(resize(base, 48) * 0.9 + 12, 0, 255).astype(np.uint8)
    dates = np.array(["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01", "2020-05-01"], "datetime64[D]")
    return PaperSample(aoi=aoi, frames=frames, target=target, dates=dates, hr_date=np.datetime64("2020-03-10"))


def _clean(p: PaperSample) -> CleanSample:
    frames = p.frames.astype(np.float32) / 1000.0
    target = p.target.astype(np.float32) / 1000.0
    target[:3, :3] = np.nan  # a corner without HR data: left out of every metric
    return CleanSample(
        aoi=p.aoi, frames=frames, valid=np.ones(frames.shape[:3], bool), composite=np.median(frames, axis=0),
        dates=p.dates, hr_date=p.hr_date, target=target, uint8_scale=float(np.median(frames, axis=0).max()),
        crs="EPSG:4326", bounds=(0.0, 0.0, 1.0, 1.0), versions={},
    )  # fmt: skip


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, PaperSample], dict[str, CleanSample]]:
    paper = {a: _paper(a, i) for i, a in enumerate(AOIS)}
    return paper, {a: _clean(s) for a, s in paper.items()}


def _fake_trainer(calls: list[Any]):
    """A trainer that writes a finished run's best.pt recording its spec's training AOIs."""

    class Res:
        finished = True
        step = 0

    def trainer(spec: TrainSpec, out: Path, progress: bool = False) -> Res:
        calls.append(spec)
        torch.manual_seed(0)
        save_checkpoint(Path(out) / "best.pt", make_model(TINY), train_spec=spec.model_dump(mode="json"),
                        data={"train_aois": list(spec.train_aois)}, step=spec.steps)  # fmt: skip
        return Res()

    return trainer


def _predictors(truth: dict[str, dict[int, np.ndarray]], good: bool):
    """(P, C) predictors: the target plus a little noise (good) or a flat grey image (bad)."""

    def make(scale: float):
        def predict(frames: np.ndarray, *, size: int, **_: Any) -> np.ndarray:
            key = next(a for a, s in truth.items() if s["frames"] is frames or np.array_equal(s["frames"], frames))
            t = np.nan_to_num(resize(truth[key]["target"].astype(np.float64), size), nan=0.0)
            noise = np.random.default_rng(size).normal(0, 1.0, t.shape)
            img = t + noise if good else np.full(t.shape, 128.0)
            return np.clip(img, 0, 255).astype(np.uint8) if scale == 1 else (np.clip(img, 0, 255) * scale).astype(np.float32)

        return predict

    return lambda path: (make(1), make(1 / 1000.0))


def test_kfold_is_disjoint_covering_balanced_and_seeded() -> None:
    aois = [f"A{i:02d}" for i in range(31)]
    parts = kfold(aois, 5, seed=0)
    assert len(parts) == 5
    flat = [a for p in parts for a in p]
    assert sorted(flat) == aois and len(set(flat)) == 31  # covering, disjoint
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == kfold(reversed(aois), 5, seed=0)  # order of the input does not matter
    assert parts != kfold(aois, 5, seed=1)
    with pytest.raises(InvalidInputError):
        kfold(aois, 1)
    with pytest.raises(InvalidInputError):
        kfold(["a", "a", "b"], 2)


def test_calibration_rule_is_the_checkpoint_s_choice_without_its_fitted_terms() -> None:
    fitted = {"weight": 0.4, "v_mean": "add", "offset": [0.35, 0.3], "colour_map": [[1.0]]}
    assert calibration_rule(fitted) == {"weight": 0.4, "v_mean": "add", "offset": True}
    assert calibration_rule({**fitted, "offset": [0.0, 0.0]})["offset"] is False
    assert calibration_rule({"weight": 1, "v_mean": "none"})["offset"] is False


def test_fold_spec_trains_on_test_aois_without_validation_and_keeps_the_base() -> None:
    base = TrainSpec(model=TINY, steps=7, lr=5e-4).model_dump(mode="json")
    test = sorted(PAPER_TEST_AOIS)[:2]
    with pytest.raises((InvalidInputError, ValueError), match="test AOIs"):  # the paper split's guard
        TrainSpec(model=TINY, train_aois=test)
    spec = fold_spec(base, ["Landcover-14956", *test], steps=3, threads=1)
    assert spec.cross_validation  # the guard is off by an explicit, recorded flag, not bypassed
    with pytest.raises((InvalidInputError, ValueError), match="test AOIs"):  # and only with it
        TrainSpec.model_validate({**spec.model_dump(mode="json"), "cross_validation": False})
    assert TrainSpec.model_validate(spec.model_dump(mode="json")) == spec  # a fold's stored spec reloads
    assert spec.train_aois == sorted(["Landcover-14956", *test])
    assert spec.val_aois is None and spec.n_val == 0 and spec.val_every == 0
    assert (spec.steps, spec.threads, spec.lr) == (3, 1, 5e-4)
    with pytest.raises(InvalidInputError):
        fold_spec(base, [])


def test_train_fold_reuses_a_finished_fold_and_retrains_another(tmp_path: Path) -> None:
    base = TrainSpec(model=TINY, steps=4).model_dump(mode="json")
    calls: list[Any] = []
    spec = fold_spec(base, AOIS[:3])
    best = train_fold(spec, tmp_path / "f0", trainer=_fake_trainer(calls))
    assert best.is_file() and len(calls) == 1

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("a finished fold must not be trained again")

    assert train_fold(spec, tmp_path / "f0", trainer=refuse) == best  # resume: skipped
    other = fold_spec(base, AOIS[1:4])  # other AOIs in the same folder: trained again
    train_fold(other, tmp_path / "f0", trainer=_fake_trainer(calls))
    assert len(calls) == 2 and load_checkpoint(best).data["train_aois"] == sorted(AOIS[1:4])
    longer = fold_spec(base, AOIS[:3], steps=8)  # more steps: trained again (resumes from last.pt)
    train_fold(longer, tmp_path / "f1", trainer=_fake_trainer(calls))
    assert len(calls) == 3


def test_every_aoi_is_scored_by_a_model_that_never_saw_it(tmp_path: Path, data: Any) -> None:
    paper, clean = data
    parts = kfold(AOIS, 3, seed=0)
    base = TrainSpec(model=TINY, steps=2).model_dump(mode="json")
    truth = {a: {"frames": paper[a].frames, "target": paper[a].target} for a in AOIS}
    truth |= {f"c-{a}": {"frames": clean[a].frames, "target": paper[a].target} for a in AOIS}
    psnr: dict = {}
    scored_by: dict[str, list[str]] = {}
    for k, held in enumerate(parts):
        spec = fold_spec(base, [a for a in AOIS if a not in held])
        best = train_fold(spec, tmp_path / f"fold{k}", trainer=_fake_trainer([]))
        cal = calibrate_fold(best, paper, held, weight=0.4, v_mean="add", offset=False)
        assert cal.weight == 0.4 and cal.colour_map is not None and cal.offset == (0.0, 0.0)
        ck = load_checkpoint(best)
        assert ck.extra["cv"]["held_out"] == held and ck.extra["calibration"]["weight"] == 0.4
        part = score_fold(best, held, paper, clean, colour_map_clean=None, scales=SCALES,
                          predictors=_predictors(truth, good=True))  # fmt: skip
        for a in part["P"]["record"]:
            scored_by.setdefault(a, []).extend(ck.data["train_aois"])
        merge(psnr, part)
    assert sorted(scored_by) == sorted(AOIS)  # every AOI scored once...
    for a, trained_on in scored_by.items():  # ...by a model whose recorded training AOIs exclude it
        assert a not in trained_on
    assert set(psnr["P"]) == {"record", "record-product", "median-colour", "median-colour-cal", "median"}
    assert set(psnr["C"]["record"]) == set(AOIS) and set(psnr["C"]["record"]["Landcover-8732"]) == set(SCALES)
    with pytest.raises(InvalidInputError, match="not out of fold"):  # a fold model on its own AOIs
        score_fold(tmp_path / "fold0" / "best.pt", [parts[1][0]], paper, clean, scales=SCALES,
                   predictors=_predictors(truth, good=True))  # fmt: skip


def test_check_out_of_fold() -> None:
    check_out_of_fold(["a", "b"], ["c"])
    with pytest.raises(InvalidInputError, match="'b'"):
        check_out_of_fold(["a", "b"], ["b", "c"])


@pytest.mark.parametrize("good", [True, False])
def test_paired_delta_sign_follows_the_better_method(tmp_path: Path, data: Any, good: bool) -> None:
    paper, clean = data
    held = AOIS[:4]
    calls: list[Any] = []
    best = train_fold(fold_spec(TrainSpec(model=TINY, steps=2).model_dump(mode="json"), AOIS[4:]),
                      tmp_path, trainer=_fake_trainer(calls))  # fmt: skip
    calibrate_fold(best, paper, held, weight=1.0, v_mean="none", offset=False)
    truth = {a: {"frames": paper[a].frames, "target": paper[a].target} for a in AOIS}
    truth |= {f"c-{a}": {"frames": clean[a].frames, "target": paper[a].target} for a in AOIS}
    from stliif.evaluation.clean import fit_colour_map_clean

    cmap_c = fit_colour_map_clean(clean[a] for a in AOIS[4:])
    psnr = score_fold(best, held, paper, clean, colour_map_clean=cmap_c, scales=SCALES,
                      predictors=_predictors(truth, good=good))  # fmt: skip
    summary = summarize(psnr, n_boot=500)
    for proto in ("P", "C"):
        cell = summary[proto]["record"]["x2"]
        ref = summary[proto]["median-colour"]["x2"]
        assert cell["n"] == 4 and ref["delta"] is None
        per = psnr[proto]
        expect = np.mean([per["record"][a]["x2"] - per["median-colour"][a]["x2"] for a in held])
        assert cell["delta"] == pytest.approx(expect)
        assert cell["mean"] - ref["mean"] == pytest.approx(expect)
        if good:  # the near-perfect model beats median + colour map on every AOI: CI above 0
            assert cell["delta"] > 0 and cell["ci_low"] > 0
        else:  # a flat grey image loses on every AOI: CI below 0
            assert cell["delta"] < 0 and cell["ci_high"] < 0
        assert cell["ci_low"] <= cell["delta"] <= cell["ci_high"]


def test_commit_fold_records_the_held_out_aois(tmp_path: Path, data: Any) -> None:
    paper, _ = data
    held = AOIS[:2]
    best = train_fold(fold_spec(TrainSpec(model=TINY, steps=2).model_dump(mode="json"), AOIS[2:]),
                      tmp_path / "run", trainer=_fake_trainer([]))  # fmt: skip
    calibrate_fold(best, paper, held, weight=0.4, v_mean="add", offset=False)
    store = ArtifactStore.open(str(tmp_path / "store"))
    res = commit_fold(store, "cv-fold0", best, held=held, fold=0, folds=3)
    assert res["created"] and res["path"] == "models/cv-fold0"
    ds = store.read("models/cv-fold0", load=True)
    assert json.loads(ds.attrs["cv_held_out"]) == sorted(held) and int(ds.attrs["cv_fold"]) == 0
    assert not set(json.loads(ds.attrs["data"])["train_aois"]) & set(held)
    assert bytes(ds["checkpoint"].values.astype(np.uint8)) == best.read_bytes()
    assert not commit_fold(store, "cv-fold0", best, held=held, fold=0, folds=3)["created"]  # idempotent
    with pytest.raises(InvalidInputError, match="not out of fold"):
        commit_fold(store, "cv-fold9", best, held=[AOIS[3]], fold=9, folds=3)
