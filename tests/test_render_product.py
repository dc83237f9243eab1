"""Product mode, the renders' default: the render averaged back to the input grid is the
time-interpolated input reflectance; paper mode keeps the model's output; the LR consistency
goes into the attributes and the COG's tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from stliif.consistency import degrade
from stliif.errors import InvalidInputError
from stliif.models.baselines import blend_in_time
from stliif.render import render, run_render
from stliif.render.request import RGB_BANDS
from stliif.testing import synthetic_cube
from tests.test_render_tiles import AOI, CUBE, TEMPORAL, _cube, _model, _store

DATE = "2024-03-15"


def _target(cube, attrs) -> np.ndarray:
    """The inputs' reflectance interpolated in time at the render's date, recomputed here."""
    used = [str(d) for d in attrs["revisits"]]
    days = [str(t)[:10] for t in cube["time"].values]
    idx = [days.index(d) for d in used]
    frames = cube["reflectance"].isel(time=idx).sel(band=list(RGB_BANDS)).transpose("time", "y", "x", "band").values
    return blend_in_time(frames, np.array(used, dtype="datetime64[s]"), np.datetime64(DATE))


@pytest.mark.parametrize("scale", [4, 2.5])
def test_a_product_render_averages_back_to_its_inputs(scale: float) -> None:
    cube, clear = _cube()
    pred = _model(TEMPORAL)
    out = render(pred, cube, DATE, scale=scale, clear_fraction=clear)
    paper = render(pred, cube, DATE, scale=scale, clear_fraction=clear, mode="paper")
    assert out.attrs["mode"] == "product" and paper.attrs["mode"] == "paper"
    target = _target(cube, out.attrs)
    for da, worst in ((out, 1e-5), (paper, None)):
        deg = degrade(da.values.transpose(1, 2, 0), target.shape[:2])
        whole = degrade(np.isfinite(da.values[0]).astype(float), target.shape[:2])[..., 0] == 1  # every member inside the polygon
        ok = whole & np.isfinite(target).all(axis=2)
        err = np.abs(deg[ok] - target[ok])
        if worst is not None:
            assert err.max() <= worst and da.attrs["consistency_mae"] <= 1e-6
            assert max(abs(b) for b in da.attrs["consistency_bias"]) <= 1e-6
        else:  # the model alone does not keep its inputs' reflectance
            assert err.mean() > 100 * out.attrs["consistency_mae"]
            assert da.attrs["consistency_mae"] == pytest.approx(err.mean(), rel=0.05)
    # detail is the model's: the two modes differ by a low-frequency field only
    hp = [da.values - np.repeat(np.repeat(degrade(da.values.transpose(1, 2, 0), target.shape[:2]), 4, 0), 4, 1).transpose(2, 0, 1)
          for da in (out, paper)] if scale == 4 else None  # fmt: skip
    if hp is not None:
        ok = np.isfinite(hp[0]) & np.isfinite(hp[1])
        assert np.corrcoef(hp[0][ok], hp[1][ok])[0, 1] > 0.7


def test_a_tiled_product_render_equals_the_one_shot_render() -> None:
    cube, clear = _cube()
    pred = _model(TEMPORAL)
    one = render(pred, cube, DATE, scale=2.5, clear_fraction=clear)
    tiled = render(pred, cube, DATE, scale=2.5, clear_fraction=clear, tile=pred.halo(2.5) * 3)
    np.testing.assert_array_equal(np.isnan(tiled.values), np.isnan(one.values))
    assert float(np.nanmax(np.abs(tiled.values - one.values))) <= 1e-5


def test_a_store_render_tags_its_mode_and_consistency(tmp_path: Path) -> None:
    store = _store(tmp_path)
    prod = run_render(store, AOI, "median", date=DATE, scale=4, tile=64, out_dir=tmp_path / "out")
    paper = run_render(store, AOI, "median", date=DATE, scale=4, tile=64, out_dir=tmp_path / "p", mode="paper")
    assert prod["status"] == paper["status"] == "committed"  # two requests, two commits
    with rasterio.open(prod["files"][0]) as src:
        tags = src.tags()
    assert tags["mode"] == "product" and float(tags["consistency_mae"]) <= 1e-6
    assert len(tags["consistency_bias"].split(",")) == 3 and "consistency_shift_px" in tags
    assert paper["attrs"]["consistency_mae"] > 1e-4  # a median of the revisits is not their time interpolation
    with pytest.raises(InvalidInputError, match="mode"):
        run_render(store, AOI, "median", date=DATE, scale=4, out_dir=tmp_path / "x", mode="fast")


def test_a_series_holds_one_consistency_per_date() -> None:
    from stliif.render import render_series

    cube = synthetic_cube(AOI, **CUBE)
    da = render_series("median", cube, ["2024-03-05", "2024-03-20"], scale=2)
    assert len(da.attrs["consistency"]) == 2 and all(c["consistency_mae"] <= 1e-6 for c in da.attrs["consistency"])


@pytest.mark.parametrize("scale", [4, 2.5])
def test_the_consistency_read_block_by_block_is_the_whole_grids(scale: float) -> None:
    """date_consistency reads the output LR block by LR block (memory bounded by a block): its
    figures equal the whole-grid definition (stliif.consistency), NaN members included."""
    from stliif.consistency import members, reflectance_error, spatial_shift
    from stliif.constraint import lr_target
    from stliif.metrics import sam
    from stliif.render.run import _jobs
    from stliif.render.tiles import LowRes, date_consistency

    cube, clear = _cube()
    (job,) = _jobs(cube, [DATE], k=3, clear_fraction=clear, min_clear=0.0, max_gap_days=30, allow_far=False)
    lowres = LowRes(cube, job.idx)
    h, w = lowres.hw
    out_hw = (round(scale * h), round(scale * w))
    out = np.random.default_rng(0).uniform(0.0, 0.3, (1, 3, *out_hw)).astype(np.float32)
    out[:, :, 5:9, 3:20] = np.nan  # LR pixels with a missing member are left out
    whole, blocks = date_consistency(job, lowres, out, 0, block=10**6), date_consistency(job, lowres, out, 0, block=4)
    for key in ("mae", "corr", "sam"):
        assert blocks[key] == pytest.approx(whole[key], rel=1e-9)
    np.testing.assert_allclose(blocks["bias"], whole["bias"], rtol=1e-9)
    np.testing.assert_allclose(blocks["mae_band"], whole["mae_band"], rtol=1e-9)
    # the whole-grid definition, computed directly
    my, mx = members(out_hw[0], h), members(out_hw[1], w)
    sums, size = np.zeros((h, w, 3)), np.zeros((h, w, 3))
    np.add.at(sums, (my[:, None], mx[None, :]), out[0].transpose(1, 2, 0).astype(np.float64))
    np.add.at(size, (my[:, None], mx[None, :]), 1.0)
    deg = sums / size  # NaN wherever a member is NaN
    target = lr_target(lowres.window(job.idx, slice(0, h), slice(0, w)), job.used, job.when)
    ref, ok = reflectance_error(deg, target), np.isfinite(deg).all(axis=2)
    assert whole["mae"] == pytest.approx(ref["mae"], rel=1e-9) and whole["corr"] == pytest.approx(ref["corr"], rel=1e-9)
    np.testing.assert_allclose(whole["bias"], ref["bias"], rtol=1e-9)
    assert whole["sam"] == pytest.approx(sam(np.where(ok[..., None], deg, 0), np.where(ok[..., None], target, 0)), rel=1e-9)
    assert whole["shift_px"] == pytest.approx(float(np.hypot(*spatial_shift(deg, target))), abs=1e-9)
