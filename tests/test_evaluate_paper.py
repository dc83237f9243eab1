"""Protocol P: the per-frame bicubic baseline reproduces the study's table; scoring and deltas."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from stliif.errors import DataAccessError, InvalidInputError, ModelError
from stliif.evaluation.paper import (
    PAPER_SCALES,
    PAPER_TEST_AOIS,
    evaluate_paper,
    load_paper_dates,
    load_paper_sample,
    load_paper_samples,
    paper_train_aois,
    score_image,
)
from stliif.evaluation.results import paired_deltas
from stliif.metrics import psnr, ssim
from stliif.models.baselines import (
    ColourMap,
    median_bicubic,
    per_frame_bicubic,
    temporal_linear,
)

pytestmark = pytest.mark.integration

# The study's per-frame bicubic results, copied from the data README: (MSE, PSNR) at x2, x4, x6.
STUDY_BICUBIC = {
    "Amnesty_POI-13-1-1": ((381.23, 22.36), (461.16, 21.52), (490.31, 21.25)),
    "Landcover-31746": ((208.19, 24.97), (258.37, 24.02), (274.22, 23.76)),
    "Landcover-769356": ((393.17, 22.24), (441.27, 21.73), (456.63, 21.58)),
    "Landcover-769486": ((231.16, 24.60), (281.46, 23.71), (300.29, 23.42)),
    "Landcover-771536": ((404.31, 22.20), (458.00, 21.63), (476.51, 21.45)),
    "Landcover-1865521": ((307.11, 23.56), (352.51, 22.89), (370.24, 22.65)),
    "UNHCR-7977": ((399.99, 22.12), (465.38, 21.46), (487.06, 21.26)),
    "UNHCR-NERs009694": ((298.76, 23.47), (347.19, 22.79), (365.94, 22.56)),
    "UNHCR-NGAs036019": ((352.65, 23.07), (380.54, 22.68), (391.58, 22.54)),
    "UNHCR-THAs001547": ((528.38, 21.72), (559.54, 21.36), (572.88, 21.21)),
}
STUDY_BICUBIC_MEANS = {"x2": 23.03, "x4": 22.38, "x6": 22.17}


@pytest.fixture(scope="module")
def samples(worldstrat):
    return load_paper_samples(worldstrat, PAPER_TEST_AOIS, with_dates=True)


@pytest.fixture(scope="module")
def bicubic(worldstrat, samples):
    return evaluate_paper(per_frame_bicubic, worldstrat, samples=samples, ssim=False)


def test_split_and_scales(worldstrat):
    assert len(PAPER_TEST_AOIS) == 10 and set(PAPER_TEST_AOIS) == set(STUDY_BICUBIC)
    train = paper_train_aois(worldstrat)
    assert len(train) == 21 and not set(train) & set(PAPER_TEST_AOIS)
    assert PAPER_SCALES == {"x2": 314, "x4": 628, "x6": 1054}


def test_per_frame_bicubic_reproduces_every_row_of_the_study_table(bicubic):
    assert len(bicubic.records) == 30
    worst_psnr = worst_mse = 0.0
    for rec in bicubic.records:
        k = list(PAPER_SCALES).index(rec["scale"])
        ref_mse, ref_psnr = STUDY_BICUBIC[rec["aoi"]][k]
        assert rec["psnr"] == pytest.approx(ref_psnr, abs=0.01), rec
        assert rec["mse"] == pytest.approx(ref_mse, abs=0.01), rec
        assert math.isnan(rec["ssim"])
        worst_psnr = max(worst_psnr, abs(rec["psnr"] - ref_psnr))
        worst_mse = max(worst_mse, abs(rec["mse"] - ref_mse))
    # the table is rounded to 2 decimals: an exact reproduction stays within half a unit
    assert worst_psnr <= 0.005 + 1e-9 and worst_mse <= 0.005 + 1e-9
    for scale, ref in STUDY_BICUBIC_MEANS.items():
        assert bicubic.means[scale]["psnr"] == pytest.approx(ref, abs=0.005)


def test_targets_and_frames(samples, worldstrat):
    s = samples["Landcover-31746"]
    assert s.frames.shape == (5, 159, 157, 3) and s.frames.dtype == np.uint8
    assert s.target.shape == (1054, 1054, 3)
    with Image.open(worldstrat / "reference/hr_adapted/Landcover-31746_adapted_x6.png") as im:
        x4 = np.asarray(im.convert("RGB").resize((628, 628), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(s.target_at(628), x4)
    assert s.target_at(1054) is s.target


def test_dates_match_the_study_midpoints(samples, worldstrat):
    # The study's rule telescopes to the midpoint of the earliest and latest selected dates.
    with (worldstrat / "reference/study_temporal_selection.csv").open(newline="") as fh:
        rows = {r["aoi"]: r for r in csv.DictReader(fh)}
    for aoi in PAPER_TEST_AOIS:
        d = samples[aoi].dates
        assert d.shape == (5,) and np.all(np.diff(d.astype(np.int64)) >= 0)
        mid = d[0] + (d[-1] - d[0]) / 2
        assert abs(mid - np.datetime64(rows[aoi]["midpoint_date"])) <= np.timedelta64(1, "D"), aoi
        assert samples[aoi].hr_date == np.datetime64(rows[aoi]["hr_date"])
    assert samples["UNHCR-7977"].hr_date == np.datetime64("2014-10-04")


def test_median_and_colour_map_baselines_land_on_protocol_numbers(worldstrat, samples, bicubic):
    med = evaluate_paper(median_bicubic, worldstrat, samples=samples, ssim=False)
    expected = {"x2": 24.45, "x4": 23.61, "x6": 23.34}  # PROTOCOLS.md
    for scale, ref in expected.items():
        assert med.means[scale]["psnr"] == pytest.approx(ref, abs=0.01)
    train = [load_paper_sample(worldstrat, a) for a in paper_train_aois(worldstrat)]
    cmap = ColourMap.fit((s.frames, s.target) for s in train)
    col = evaluate_paper(cmap.predictor(), worldstrat, samples=samples, ssim=False)
    for scale, ref in {"x2": 24.78, "x4": 23.89, "x6": 23.61}.items():
        assert col.means[scale]["psnr"] == pytest.approx(ref, abs=0.03)
        assert col.means[scale]["psnr"] > med.means[scale]["psnr"] + 0.2
    d = paired_deltas(med.values("psnr", "x4"), bicubic.values("psnr", "x4"))
    assert d.n == 10 and d.ci_low > 0.5 and d.ci_low <= d.mean <= d.ci_high


def test_ssim_and_frame_averaging(worldstrat, samples):
    res = evaluate_paper(
        per_frame_bicubic, worldstrat, aois=["UNHCR-NGAs036019"], scales={"x2": 314}, samples=samples
    )
    s = samples["UNHCR-NGAs036019"]
    target = s.target_at(314)
    preds = per_frame_bicubic(s.frames, size=314)
    rec = res.records[0]
    assert rec["ssim"] == pytest.approx(np.mean([ssim(p, target, data_range=255) for p in preds]))
    assert 0.0 < rec["ssim"] < 1.0
    per_frame = [psnr(p, target, data_range=255) for p in preds]
    assert rec["psnr"] == pytest.approx(np.mean(per_frame))
    pooled = 10 * np.log10(255**2 / rec["mse"])  # PSNR of the mean MSE is not what the study did
    assert abs(pooled - rec["psnr"]) > 1e-3


def test_date_aware_predictor_loads_dates(worldstrat):
    res = evaluate_paper(
        temporal_linear, worldstrat, aois=["Landcover-31746"], scales={"x2": 314},
        ssim=False, with_dates=True,
    )  # fmt: skip
    assert res.name == "temporal_linear" and 24.0 < res.records[0]["psnr"] < 27.0
    with pytest.raises(InvalidInputError, match="dates"):
        evaluate_paper(temporal_linear, worldstrat, aois=["Landcover-31746"], scales={"x2": 314})
    with pytest.raises(InvalidInputError):
        evaluate_paper(median_bicubic, worldstrat, aois="Landcover-31746")


def test_score_image_checks_and_rounds():
    t = np.full((20, 20, 3), 100, np.uint8)
    assert score_image(t.astype(np.float64) + 0.4, t, ssim=False)["mse"] == 0.0  # rounded first
    assert score_image(np.stack([t, t + 1]), t, ssim=False)["mse"] == pytest.approx(0.5)
    with pytest.raises(ModelError):
        score_image(t[:10], t)
    with pytest.raises(ModelError):
        score_image(np.full(t.shape, np.nan), t)


def test_paired_deltas_hand_values():
    d = paired_deltas([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], n_boot=2000, seed=1)
    assert d.mean == pytest.approx(2.0) and d.n == 3
    assert 1.0 <= d.ci_low < 2.0 < d.ci_high <= 3.0
    again = paired_deltas([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], n_boot=2000, seed=1)
    assert (again.ci_low, again.ci_high) == (d.ci_low, d.ci_high)
    const = paired_deltas({"a": 5.0, "b": 6.0}, {"b": 5.5, "a": 4.5})
    assert const.mean == pytest.approx(0.5) and const.ci_low == pytest.approx(0.5)
    assert const.ci_high == pytest.approx(0.5) and const.deltas == {"a": 0.5, "b": 0.5}
    with pytest.raises(InvalidInputError):
        paired_deltas({"a": 1.0}, {"b": 1.0})
    with pytest.raises(InvalidInputError):
        paired_deltas([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInputError):
        paired_deltas([1.0], [1.0], n_boot=0)


def test_missing_and_corrupt_files_name_the_file(worldstrat, tmp_path):
    with pytest.raises(InvalidInputError):
        load_paper_sample(tmp_path, "Landcover-31746")  # not a dataset root
    root = tmp_path / "ws"
    (root / "reference/hr_adapted").mkdir(parents=True)
    folder = root / "reference/temporal_subset/X"
    folder.mkdir(parents=True)
    with pytest.raises(DataAccessError, match=r"1\.png"):
        load_paper_sample(root, "X")
    for i in range(1, 6):
        (folder / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(DataAccessError, match=r"1\.png"):
        load_paper_sample(root, "X")
    with pytest.raises(InvalidInputError):
        load_paper_sample(worldstrat, "../etc")
    with pytest.raises(InvalidInputError):
        load_paper_dates(worldstrat, "Nope")
