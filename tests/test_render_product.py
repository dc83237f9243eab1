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
from stliif.render.request import NIR_SOURCE, RGB_BANDS, RGBN_BANDS
from stliif.testing import synthetic_cube
from tests.test_render_tiles import AOI, CUBE, TEMPORAL, _cube, _model, _store

DATE = "2024-03-15"


def _target(cube, attrs) -> np.ndarray:
    """The inputs' reflectance interpolated in time at the render's date, recomputed here."""
    used = [str(d) for d in attrs["revisits"]]
    days = [str(t)[:10] for t in cube["time"].values]
    idx = [days.index(d) for d in used]
    bands = list(attrs.get("bands", RGB_BANDS))
    frames = cube["reflectance"].isel(time=idx).sel(band=bands).transpose("time", "y", "x", "band").values
    return blend_in_time(frames, np.array(used, dtype="datetime64[s]"), np.datetime64(DATE))


@pytest.mark.parametrize("scale", [4, 2.5])
def test_a_product_render_averages_back_to_its_inputs(scale: float) -> None:
    cube, clear = _cube()
    pred = _model(TEMPORAL)
    out = render(pred, cube, DATE, scale=scale, clear_fraction=clear)
    paper = render(pred, cube, DATE, scale=scale, clear_fraction=clear, mode="paper")
    assert out.attrs["mode"] == "product" and paper.attrs["mode"] == "paper"
    # product: four bands, the NIR labelled as the inputs' (the model is RGB); paper: the model's RGB
    assert out["band"].values.tolist() == out.attrs["bands"] == list(RGBN_BANDS) and out.attrs["nir_source"] == NIR_SOURCE
    assert paper["band"].values.tolist() == list(RGB_BANDS) and "nir_source" not in paper.attrs
    assert "consistency_ndvi_mae" not in paper.attrs and 0 <= out.attrs["consistency_ndvi_mae"] < 0.05
    for da, worst in ((out, 1e-5), (paper, None)):
        target = _target(cube, da.attrs)
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
    hp = [da.values[:3] - np.repeat(np.repeat(degrade(da.values[:3].transpose(1, 2, 0), target.shape[:2]), 4, 0), 4, 1).transpose(2, 0, 1)
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
        tags, descriptions, nir_tags, red_tags = src.tags(), src.descriptions, src.tags(4), src.tags(1)
    with rasterio.open(paper["files"][0]) as src:
        assert src.count == 3 and src.descriptions == RGB_BANDS
    assert tags["mode"] == "product" and float(tags["consistency_mae"]) <= 1e-6
    assert len(tags["consistency_bias"].split(",")) == 4 and "consistency_shift_px" in tags
    assert descriptions == RGBN_BANDS and tags["nir_source"] == NIR_SOURCE
    assert nir_tags["source"] == NIR_SOURCE and red_tags["source"] == "model"
    assert 0 <= float(tags["consistency_ndvi_mae"]) < 0.05
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


def test_the_ndvi_consistency_read_block_by_block_is_the_whole_grids() -> None:
    """A four-band output: date_consistency's ``ndvi_mae`` (block-mean NDVI of the output against
    the inputs' NDVI, read block by block) equals stliif.consistency.ndvi_error on the whole grid;
    an output whose every pixel carries its LR pixel's R and NIR has no NDVI error, and one with
    its red doubled has the error the NDVI formula gives."""
    from stliif.consistency import ndvi, ndvi_error
    from stliif.constraint import lr_target
    from stliif.render.run import _jobs
    from stliif.render.tiles import LowRes, date_consistency

    cube, clear = _cube()
    (job,) = _jobs(cube, [DATE], k=3, clear_fraction=clear, min_clear=0.0, max_gap_days=30, allow_far=False)
    lowres = LowRes(cube, job.idx, bands=RGBN_BANDS)
    h, w = lowres.hw
    target = lr_target(lowres.window(job.idx, slice(0, h), slice(0, w)), job.used, job.when)
    rep = np.repeat(np.repeat(target, 4, 0), 4, 1)  # (4h, 4w, 4): each LR pixel's values
    noisy = rep * np.random.default_rng(1).uniform(0.7, 1.3, rep.shape)
    for img in (rep, noisy):
        out = img.transpose(2, 0, 1)[None].astype(np.float32)
        whole, blocks = date_consistency(job, lowres, out, 0, block=10**6), date_consistency(job, lowres, out, 0, block=5)
        assert blocks["ndvi_mae"] == pytest.approx(whole["ndvi_mae"], rel=1e-6)
        assert whole["ndvi_mae"] == pytest.approx(ndvi_error(img.astype(np.float32), target), rel=1e-5, abs=1e-7)
    assert date_consistency(job, lowres, rep.transpose(2, 0, 1)[None].astype(np.float32), 0)["ndvi_mae"] < 1e-6
    assert date_consistency(job, lowres, noisy.transpose(2, 0, 1)[None].astype(np.float32), 0)["ndvi_mae"] > 0.01
    red2 = target.copy()
    red2[..., 0] *= 2
    expected = np.nanmean(np.abs(ndvi(red2[..., 0], red2[..., 3]) - ndvi(target[..., 0], target[..., 3])))
    assert ndvi_error(np.repeat(np.repeat(red2, 2, 0), 2, 1), target) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(ndvi_error(rep[..., :3], target[..., :3]))  # no NIR: no NDVI
