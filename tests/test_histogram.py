"""Histogram matching: CDF matching, the study's uint8 pipeline (paper) and the clean mode."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from skimage.exposure import match_histograms

from stliif.errors import InvalidInputError, NoDataError
from stliif.preprocess.histogram import (
    PAPER_REFERENCE_REVISIT,
    adapt_clean,
    adapt_paper,
    match_cdf,
    match_nir_clean,
    match_value_channel,
    match_value_channel_paper,
    nanmedian_time,
    to_uint8_paper,
)
from stliif.sources.worldstrat import BANDS, find_aoi_files, list_aois, read_lr


def _value(rgb: np.ndarray) -> np.ndarray:
    return rgb.max(axis=0)


def _lr(n_time: int = 4, ny: int = 12, nx: int = 10, seed: int = 0) -> xr.Dataset:
    """A tiny LR cube shaped like ``read_lr``'s, dates out of revisit-number order."""
    rng = np.random.default_rng(seed)
    dn = rng.integers(1, 3000, size=(n_time, len(BANDS), ny, nx)).astype(np.float32)
    refl = dn * np.float32(1e-4)
    refl *= np.linspace(0.5, 1.5, n_time, dtype=np.float32)[:, None, None, None]
    revisit = np.arange(n_time, 0, -1).astype(np.int16)  # time order: n = 4, 3, 2, 1
    time = np.datetime64("2020-01-01", "ns") + np.arange(n_time) * np.timedelta64(5, "D")
    dims3 = ("time", "y", "x")
    return xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), refl),
            "clm": (dims3, np.zeros((n_time, ny, nx), np.uint8)),
            "data_mask": (dims3, np.ones((n_time, ny, nx), np.uint8)),
        },
        coords={"time": time, "revisit": ("time", revisit), "band": list(BANDS),
                "y": np.arange(ny, dtype=float), "x": np.arange(nx, dtype=float)},
        attrs={"aoi": "synthetic"},
    )


# ---------------------------------------------------------------- CDF matching (generic)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_match_cdf_equals_skimage(dtype):
    rng = np.random.default_rng(1)
    src = rng.integers(0, 200, (30, 40)).astype(dtype)
    tmpl = rng.integers(0, 256, (25, 33)).astype(dtype)
    np.testing.assert_array_equal(match_cdf(src, tmpl), match_histograms(src, tmpl))


def test_match_cdf_rejects_nan_and_empty():
    with pytest.raises(InvalidInputError):
        match_cdf(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(NoDataError):
        match_cdf(np.array([]), np.array([1.0]))


def test_value_histogram_matches_reference_and_hue_kept():
    rng = np.random.default_rng(2)
    image = rng.uniform(0.05, 0.3, (3, 16, 16))
    reference = rng.uniform(0.2, 0.9, (3, 16, 16)) ** 2
    out = match_value_channel(image, reference)
    assert out.shape == image.shape and not np.isnan(out).any()
    # same pixel count, distinct values: matched V takes exactly the reference's V values
    np.testing.assert_allclose(np.sort(_value(out).ravel()), np.sort(_value(reference).ravel()))
    # hue and saturation kept: RGB / V unchanged
    np.testing.assert_allclose(out / _value(out), image / _value(image), rtol=1e-12)
    # order of V preserved (monotone mapping)
    assert np.array_equal(np.argsort(_value(out).ravel()), np.argsort(_value(image).ravel()))


def test_value_channel_float32_output_and_black_pixel():
    image = np.zeros((3, 2, 2), np.float32)
    image[:, 0, 1] = [0.1, 0.2, 0.3]
    image[:, 1, 0] = [0.3, 0.2, 0.1]
    image[:, 1, 1] = [0.4, 0.4, 0.4]
    reference = np.stack([np.full((2, 2), 0.5, np.float32)] * 3)
    reference[:, 0, 0] = 0.25
    out = match_value_channel(image, reference)
    assert out.dtype == np.float32
    assert np.allclose(out[:, 0, 0], 0.25)  # black pixel -> grey at the matched V


def test_valid_masks_restrict_cdf_and_output():
    rng = np.random.default_rng(3)
    image = rng.uniform(0.1, 0.5, (3, 10, 10))
    reference = rng.uniform(0.1, 0.5, (3, 10, 10))
    valid = np.ones((10, 10), bool)
    valid[:, :3] = False
    image[:, ~valid] = 50.0  # outliers outside the mask must not shift the CDF
    ref_valid = np.ones((10, 10), bool)
    ref_valid[:4] = False
    reference[:, ~ref_valid] = 100.0
    out = match_value_channel(image, reference, valid=valid, reference_valid=ref_valid)
    assert np.isnan(out[:, ~valid]).all()
    assert not np.isnan(out[:, valid]).any()
    assert _value(out)[valid].max() <= _value(reference)[ref_valid].max() + 1e-12
    # same result as matching the valid pixels alone
    alone = match_value_channel(image[:, :, 3:], reference[:, 4:, :])
    np.testing.assert_allclose(out[:, :, 3:], alone)


def test_nan_pixels_are_invalid_by_default():
    image = np.full((3, 4, 4), 0.2)
    image[0, 1, 1] = np.nan
    image[:, 2, 2] = 0.4
    out = match_value_channel(image, np.full((3, 5, 5), 0.3))
    assert np.isnan(out[:, 1, 1]).all()
    assert np.isfinite(np.delete(out.reshape(3, -1), 5, axis=1)).all()


ONES = np.ones((3, 2, 2))


@pytest.mark.parametrize(
    ("image", "reference", "kwargs", "error"),
    [
        (np.zeros((4, 2)), np.zeros((3, 2, 2)), {}, InvalidInputError),
        (np.zeros((2, 2, 3)), np.zeros((3, 2, 2)), {}, InvalidInputError),
        (ONES, ONES, {"valid": np.ones((3, 3), bool)}, InvalidInputError),
        (ONES, ONES, {"valid": np.ones((2, 2), np.uint8)}, InvalidInputError),
        (ONES, ONES, {"valid": np.zeros((2, 2), bool)}, NoDataError),
        (ONES, np.full((3, 2, 2), np.nan), {}, NoDataError),
    ],
)
def test_value_channel_input_errors(image, reference, kwargs, error):
    with pytest.raises(error):
        match_value_channel(image, reference, **kwargs)


# ---------------------------------------------------------------- paper pipeline pieces


def test_to_uint8_paper_truncates_scales_and_requantizes():
    dn = np.array([[[10000, 9999, 5000, 0]]], dtype=np.float32)
    reader_style = dn * np.float32(1e-4)  # how read_lr decodes uint16 DN
    out = to_uint8_paper(reader_style)
    assert out.dtype == np.uint8
    assert out.ravel().tolist() == [255, 254, 127, 0]  # 9999/10000*255 = 254.97 -> 254
    with_nan = reader_style.copy()
    with_nan[..., 3] = np.nan
    assert np.array_equal(to_uint8_paper(with_nan), out)  # no data counts as 0
    released = dn / np.float32(10000)  # the release's float32 values: requantize is a no-op
    assert np.array_equal(to_uint8_paper(released), to_uint8_paper(released, requantize=False))
    with pytest.raises(NoDataError):
        to_uint8_paper(np.full((3, 2, 2), np.nan))


def test_paper_self_match_keeps_v_and_pure_colours():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (3, 20, 40), dtype=np.uint8)
    image[:, 0, 0] = [255, 0, 0]
    image[:, 0, 1] = [0, 255, 0]
    image[:, 0, 2] = [0, 0, 255]
    image[:, 0, 3] = [128, 128, 128]
    out = match_value_channel_paper(image, image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out.max(axis=0), image.max(axis=0))  # V(image) matched to itself
    assert np.array_equal(out[:, 0, :4], image[:, 0, :4])
    assert np.abs(out.astype(int) - image).max() <= 6  # OpenCV's uint8 HSV round trip


def test_paper_row_tail_rounds_whole_blocks_truncate():
    """OpenCV (AVX2) truncates in 32-pixel SIMD blocks and rounds the remaining pixels."""
    colours = np.array([[200, 100, 50], [180, 127, 86], [90, 170, 30], [33, 66, 250]], np.uint8)
    differing = 0
    for colour in colours:
        image = np.broadcast_to(colour[:, None, None], (3, 1, 40)).copy()
        out = match_value_channel_paper(image, image)
        assert (out[:, :, :32] == out[:, :, :1]).all()
        assert (out[:, :, 32:] == out[:, :, 32:33]).all()
        step = out[:, 0, 32].astype(int) - out[:, 0, 0]
        assert set(step.tolist()) <= {0, 1}
        differing += bool(step.any())
        wide_image = np.broadcast_to(colour[:, None, None], (3, 1, 64)).copy()
        wide = match_value_channel_paper(wide_image, image)
        assert (wide == out[:, :, :1]).all()  # no tail when the width is a multiple of 32
    assert differing >= 1


def test_paper_matching_rejects_float():
    with pytest.raises(InvalidInputError):
        match_value_channel_paper(np.zeros((3, 2, 2)), np.zeros((3, 2, 2), np.uint8))


# ---------------------------------------------------------------- dataset level, synthetic


def test_adapt_paper_synthetic_layout_and_order():
    lr = _lr()
    out = adapt_paper(lr, reference_revisit=2, revisits=[1, 3])
    assert out.dtype == np.uint8 and out.dims == ("time", "band", "y", "x")
    assert out["band"].values.tolist() == ["red", "green", "blue"]
    assert out["revisit"].values.tolist() == [3, 1]  # dataset time order, not the given order
    assert out.attrs["reference_revisit"] == 2
    every = adapt_paper(lr, reference_revisit=2)
    assert every.sizes["time"] == 4
    np.testing.assert_array_equal(every.sel(time=out.time).values, out.values)
    for bad in ([9], [1, 1], "12", [1.5]):
        with pytest.raises(InvalidInputError):
            adapt_paper(lr, reference_revisit=2, revisits=bad)
    with pytest.raises(InvalidInputError):
        adapt_paper(lr, reference_revisit=7)
    with pytest.raises(InvalidInputError):
        adapt_paper(lr.drop_vars("reflectance"), reference_revisit=1)


def test_adapt_clean_synthetic_masks_and_determinism():
    lr = _lr()
    lr["clm"][1, :3, :] = 1  # cloud in revisit n=3
    lr["data_mask"][2, :, :2] = 0  # no data in revisit n=2
    lr["reflectance"][0, 3, 5, 5] = np.nan  # NaN red in revisit n=4
    out = adapt_clean(lr, revisits=[1, 2, 3, 4])
    assert out.dtype == np.float32 and out.dims == ("time", "band", "y", "x")
    valid = (lr["clm"] == 0) & (lr["data_mask"] == 1) & np.isfinite(lr["reflectance"]).all("band")
    v = valid.values
    assert np.isnan(out.values.transpose(1, 0, 2, 3)[:, ~v]).all()
    assert np.isfinite(out.values.transpose(1, 0, 2, 3)[:, v]).all()
    np.testing.assert_allclose(out["valid_fraction"].values, v.mean(axis=(1, 2)))
    again = adapt_clean(lr, revisits=[4, 3, 2, 1])
    np.testing.assert_array_equal(out.values, again.values)
    assert "median" in out.attrs["histogram_matching"]
    assert out.attrs["composite_revisits"] == "4,3,2,1"
    # every frame's V now follows the composite's V distribution: the frames agree in quantiles
    rgb = lr["reflectance"].sel(band=["B04", "B03", "B02"]).values
    before = [np.median(rgb[k].max(axis=0)[v[k]]) for k in range(4)]
    after = [np.median(out.values[k].max(axis=0)[v[k]]) for k in range(4)]
    assert np.ptp(after) < 0.2 * np.ptp(before)


def test_adapt_clean_clear_mask_and_errors():
    lr = _lr()
    clear = np.ones((4, 12, 10), bool)
    clear[3] = False  # revisit n=1 entirely unclear: all NaN, fraction 0
    out = adapt_clean(lr, revisits=[1, 2], clear=clear)
    assert out["revisit"].values.tolist() == [2, 1]
    assert np.isnan(out.sel(time=out.time[1]).values).all() and out["valid_fraction"].values[1] == 0
    assert np.isfinite(out.values[0]).all()
    with pytest.raises(NoDataError):
        adapt_clean(lr, revisits=[1], clear=clear)
    with pytest.raises(InvalidInputError):
        adapt_clean(lr, revisits=[1], clear=clear[:2])
    with pytest.raises(InvalidInputError):
        adapt_clean(lr, revisits=[1], clear=clear.astype(np.uint8))
    with pytest.raises(InvalidInputError):
        adapt_clean(lr, revisits=[])
    with pytest.raises(InvalidInputError):
        adapt_clean(lr.drop_vars("clm"), revisits=[1])


def test_match_nir_clean_matches_the_composite_nir_and_leaves_rgb_alone():
    lr = _lr()
    lr["clm"][1, :3, :] = 1
    lr["reflectance"][0, BANDS.index("B08"), 2, 2] = np.nan  # NaN NIR only: RGB still valid there
    clear = (lr["clm"] == 0).values
    rgb = adapt_clean(lr, revisits=[1, 2, 3, 4])
    nir = match_nir_clean(lr, revisits=[1, 2, 3, 4], clear=clear)
    assert nir.name == "nir" and nir.dims == ("time", "y", "x") and nir.dtype == np.float32
    assert nir["revisit"].values.tolist() == rgb["revisit"].values.tolist()
    assert np.isnan(nir.values[1, :3]).all() and np.isnan(nir.values[0, 2, 2])
    assert np.isfinite(rgb.values[0, :, 2, 2]).all()  # NIR is not part of the RGB rule
    raw = lr["reflectance"].sel(band="B08").values
    valid = np.isfinite(nir.values)
    composite = np.nanmedian(np.where(valid, raw, np.nan), axis=0)
    for k in range(4):  # each frame's NIR now has the composite's distribution (same median)
        assert np.median(nir.values[k][valid[k]]) == pytest.approx(np.median(composite), abs=0.02)
        order = np.argsort(raw[k][valid[k]], kind="stable")  # monotone: NIR ordering kept
        assert np.all(np.diff(nir.values[k][valid[k]][order]) >= 0)
    assert "B08" in nir.attrs["histogram_matching"]
    known = match_nir_clean(lr, revisits=[1, 2, 3, 4], clear=clear, rgb_valid=np.isfinite(rgb.values).all(axis=1))
    assert np.array_equal(known.values, nir.values, equal_nan=True)  # the RGB rule's pixels, not computed again
    with pytest.raises(InvalidInputError):
        match_nir_clean(lr, revisits=[1, 2, 3, 4], rgb_valid=np.ones((3, 5, 5), bool))
    with pytest.raises(InvalidInputError):
        match_nir_clean(lr.sel(band=["B04", "B03", "B02"]), revisits=[1])


# ---------------------------------------------------------------- real data


@pytest.mark.integration
def test_paper_reproduces_study_temporal_subset(worldstrat):
    """All 155 study frames (31 AOIs x 5); measured: 100% exact (0 values differ)."""
    with open(worldstrat / "reference" / "study_temporal_selection.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    selection = {r["aoi"]: [int(n) for n in r["selected_revisits"].split(",")] for r in rows}
    assert set(selection) == set(PAPER_REFERENCE_REVISIT) == set(list_aois(worldstrat))
    pngs = worldstrat / "reference" / "temporal_subset"
    total = near = equal = 0
    for aoi, revisits in selection.items():
        lr = read_lr(find_aoi_files(worldstrat, aoi))
        frames = adapt_paper(lr, reference_revisit=PAPER_REFERENCE_REVISIT[aoi], revisits=revisits)
        assert frames.sizes["time"] == 5
        for k in range(5):
            png = np.asarray(Image.open(pngs / aoi / f"{k + 1}.png"))
            diff = np.abs(frames.values[k].transpose(1, 2, 0).astype(np.int16) - png)
            total += diff.size
            near += int((diff <= 1).sum())
            equal += int((diff == 0).sum())
    assert total == 11_618_520
    assert near / total >= 0.9999
    assert equal / total >= 0.999


@pytest.mark.integration
def test_clean_on_real_aoi(worldstrat):
    lr = read_lr(find_aoi_files(worldstrat, "Landcover-1865521"))  # has no-data pixels
    revisits = [4, 5, 1, 7, 8]
    out = adapt_clean(lr, revisits=revisits)
    numbers = lr["revisit"].values.tolist()
    sub = lr.isel(time=sorted(numbers.index(n) for n in revisits))
    valid = ((sub["clm"] == 0) & (sub["data_mask"] == 1)
             & np.isfinite(sub["reflectance"].sel(band=["B04", "B03", "B02"])).all("band")).values
    assert (~valid).any()  # the test covers invalid pixels
    data = out.values.transpose(1, 0, 2, 3)
    assert np.isnan(data[:, ~valid]).all() and np.isfinite(data[:, valid]).all()
    medians = [np.median(out.values[k].max(axis=0)[valid[k]]) for k in range(len(revisits))]
    assert np.ptp(medians) < 0.01  # reflectance units: every frame's V now shares one median
    nir = match_nir_clean(lr, revisits=revisits)
    assert np.array_equal(np.isfinite(nir.values), valid & np.isfinite(sub["reflectance"].sel(band="B08").values))
    known = match_nir_clean(lr, revisits=revisits, rgb_valid=np.isfinite(out.values).all(axis=1))
    assert np.array_equal(known.values, nir.values, equal_nan=True)
    nir_medians = [np.median(nir.values[k][valid[k]]) for k in range(len(revisits))]
    assert np.ptp(nir_medians) < 0.01 and 0.15 < np.median(nir_medians) < 0.6  # vegetated: NIR well above red


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("t", [1, 2, 3, 4, 7])
def test_nanmedian_time_equals_numpy_to_the_bit(t, dtype):
    rng = np.random.default_rng(t)
    a = rng.random((t, 3, 17, 19)).astype(dtype)
    a[rng.random(a.shape) < 0.4] = np.nan  # odd, even and zero counts of valid values
    a[:, 0, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(a, axis=0)
    got = nanmedian_time(a)
    assert got.dtype == expected.dtype
    assert np.isnan(got[0, 0, 0])
    np.testing.assert_array_equal(got, expected)  # NaN where NaN, equal bits elsewhere
