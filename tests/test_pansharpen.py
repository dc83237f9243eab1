"""Pansharpening: grid/georeference on synthetic images, colour and detail on real SPOT images."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from scipy import ndimage

from stliif.errors import InvalidInputError
from stliif.preprocess.pansharpen import pansharpen
from stliif.sources.worldstrat import read_aoi

BOUNDS = (10.0, 45.0 - 0.0016, 10.0016, 45.0)  # minx, miny, maxx, maxy (EPSG:4326)


def raster(values: np.ndarray, bounds=BOUNDS, crs: str | None = "EPSG:4326", bands=None) -> xr.DataArray:
    """A north-up georeferenced DataArray (y, x) or (band, y, x) covering ``bounds``."""
    h, w = values.shape[-2:]
    minx, miny, maxx, maxy = bounds
    t = Affine((maxx - minx) / w, 0, minx, 0, -(maxy - miny) / h, maxy)
    coords = {"y": t.f + t.e * (np.arange(h) + 0.5), "x": t.c + t.a * (np.arange(w) + 0.5)}
    if values.ndim == 3:
        coords["band"] = bands or [f"b{i}" for i in range(values.shape[0])]
        da = xr.DataArray(values, dims=("band", "y", "x"), coords=coords)
    else:
        da = xr.DataArray(values, dims=("y", "x"), coords=coords)
    if crs is not None:
        da = da.rio.write_crs(crs)
    return da.rio.write_transform(t)


def synthetic(pan_size=32, ms_size=8, seed=0):
    rng = np.random.default_rng(seed)
    ms = rng.uniform(200, 1000, (3, ms_size, ms_size)).astype(np.uint16)
    ms_up = np.repeat(np.repeat(ms.astype(float), pan_size // ms_size, 1), pan_size // ms_size, 2)
    pan = ms_up.mean(0) + rng.normal(0, 20, (pan_size, pan_size))
    return raster(pan.astype(np.uint16)), raster(ms, bands=["red", "green", "blue"])


@pytest.mark.parametrize("method", ["brovey", "gram-schmidt"])
def test_output_on_pan_grid(method):
    pan, ms = synthetic()
    out = pansharpen(pan, ms, method=method)
    assert out.dims == ("band", "y", "x") and out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out.x.values, pan.x.values)
    np.testing.assert_array_equal(out.y.values, pan.y.values)
    assert list(out.band.values) == ["red", "green", "blue"]
    assert out.rio.crs == pan.rio.crs and out.rio.transform() == pan.rio.transform()
    assert np.isfinite(out.values).all() and (out.values >= 0).all()
    assert out.attrs["pansharpening"] == method and len(out.attrs["pansharpening_weights"]) == 3


@pytest.mark.parametrize("method", ["brovey", "gram-schmidt"])
def test_flat_images_are_unchanged(method):
    ms = raster(np.stack([np.full((6, 6), v, np.float32) for v in (300.0, 500.0, 800.0, 1200.0)]))
    pan = raster(np.full((24, 24), 650.0, np.float32))
    out = pansharpen(pan, ms, method=method, weights=[1, 1, 1, 1])
    np.testing.assert_allclose(out.values, ms.values[:, :1, :1] * np.ones((4, 24, 24)), rtol=1e-5)


def test_brovey_injects_pan_detail_and_keeps_band_ratios():
    ms = raster(np.stack([np.full((6, 6), v, np.float32) for v in (300.0, 600.0, 900.0)]))
    yy, xx = np.mgrid[:24, :24]
    pan = raster((600 + 100 * ((yy + xx) % 2 * 2 - 1)).astype(np.float32))  # checkerboard
    out = pansharpen(pan, ms, weights=[1, 1, 1]).values
    np.testing.assert_allclose(out[1] / out[0], 2.0, rtol=1e-5)
    np.testing.assert_allclose(out[2] / out[0], 3.0, rtol=1e-5)
    intensity = out.mean(0)
    assert np.corrcoef(intensity.ravel(), pan.values.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(out.mean(axis=(1, 2)), [300, 600, 900], rtol=1e-4)


def test_non_integer_ratio_and_ascending_y():
    pan, ms = synthetic()
    pan21 = pan.rio.reproject(pan.rio.crs, shape=(21, 21), resampling=Resampling.average)
    ms5 = ms.rio.reproject(ms.rio.crs, shape=(5, 5), resampling=Resampling.average)
    out = pansharpen(pan21, ms5)
    assert out.shape == (3, 21, 21) and out.rio.transform() == pan21.rio.transform()
    # the box average back on the ms grid stays close to the ms
    back = out.rio.reproject_match(ms5, resampling=Resampling.average).values
    assert np.abs(back - ms5.values).max() / ms5.values.mean() < 0.2
    # a south-up grid (ascending y) gives the same image, flipped
    pan_up, ms_up = (da.sortby("y") for da in (pan21, ms5))
    pan_up, ms_up = (da.rio.write_transform(da.rio.transform(recalc=True)) for da in (pan_up, ms_up))
    flipped = pansharpen(pan_up, ms_up)
    assert flipped.rio.transform().e > 0
    np.testing.assert_allclose(flipped.values[:, ::-1], out.values, rtol=1e-5)


def test_nodata_pixels_become_nan():
    pan, ms = synthetic()
    pan.values[0, :5] = 0
    ms.values[:, 7, 7] = 0
    out = pansharpen(pan, ms).values
    assert np.isnan(out[:, 0, :5]).all()
    assert np.isnan(out[:, 28:, 28:]).all()  # the ms pixel (7, 7) covers pan pixels 28..31
    assert np.isfinite(out[:, 1:27, :27]).all()
    assert np.isfinite(pansharpen(pan, ms, nodata=None).values).all()


def test_bad_inputs():
    pan, ms = synthetic()
    with pytest.raises(InvalidInputError, match="pan: expected 2 dims"):
        pansharpen(ms, ms)
    with pytest.raises(InvalidInputError, match="ms: expected 3 dims"):
        pansharpen(pan, pan)
    with pytest.raises(InvalidInputError, match="method"):
        pansharpen(pan, ms, method="ihs")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="same bounds"):
        shifted = (BOUNDS[0] + 0.0005, BOUNDS[1], BOUNDS[2] + 0.0005, BOUNDS[3])
        pansharpen(pan, raster(ms.values, bounds=shifted))
    with pytest.raises(InvalidInputError, match="different CRS"):
        pansharpen(pan, raster(ms.values, crs="EPSG:3857"))
    with pytest.raises(InvalidInputError, match="must be finer"):
        pansharpen(raster(ms.values[0]), raster(np.stack([pan.values] * 3)))
    with pytest.raises(InvalidInputError, match="weights"):
        pansharpen(pan, ms, weights=[1, -1, 1])
    with pytest.raises(InvalidInputError, match="weights"):
        pansharpen(pan, ms, weights=[1, 1])
    with pytest.raises(InvalidInputError, match="no valid pixel"):
        pansharpen(pan * 0, ms)
    with pytest.raises(InvalidInputError, match="georeferenced"):
        pansharpen(xr.DataArray(pan.values, dims=("a", "b")), ms)


def _highpass(a: np.ndarray) -> np.ndarray:
    return a - ndimage.gaussian_filter(a, 2)


def _spectral_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())


@pytest.mark.integration
@pytest.mark.parametrize("aoi", ["Landcover-31746", "UNHCR-NGAs036019"])
def test_real_spot_colour_and_detail(worldstrat, aoi):
    """Measured: relative error 0.069 / 0.069, spectral angle 0.10 / 0.11 deg, high-pass
    correlation 0.998 / 0.995 (upsampled ms: 0.28 / 0.25), Gram-Schmidt angle 0.57 / 0.46 deg."""
    _, hr = read_aoi(worldstrat, aoi)
    ms = hr.rgbn
    m = ms.values.astype(np.float64)
    ok_ms = ndimage.binary_erosion((m > 0).all(0), iterations=2)  # skip the nodata border
    p = hr.pan.values.astype(np.float64)
    ok_pan = ndimage.binary_erosion(p > 0, iterations=8)
    up = ms.astype(np.float32).rio.reproject_match(hr.pan, resampling=Resampling.cubic).values
    corr_up = np.corrcoef(_highpass(up.mean(0))[ok_pan], _highpass(p)[ok_pan])[0, 1]

    angles = {}
    for method in ("brovey", "gram-schmidt"):
        out = pansharpen(hr.pan, ms, method=method)
        assert out.shape == (4, 1054, 1054) and out.rio.transform() == hr.pan.rio.transform()
        assert np.isnan(out.values).mean() < 0.03  # only the nodata border
        back = out.rio.reproject_match(ms, resampling=Resampling.average).values
        rel = np.linalg.norm(back[:, ok_ms] - m[:, ok_ms]) / np.linalg.norm(m[:, ok_ms])
        assert rel < 0.10, f"{method}: downsampled result differs from the ms by {rel:.3f}"
        angles[method] = _spectral_angle_deg(back[:, ok_ms], m[:, ok_ms])
        r = np.nan_to_num(out.values).mean(0)
        corr = np.corrcoef(_highpass(r)[ok_pan], _highpass(p)[ok_pan])[0, 1]
        assert corr > 0.95 and corr > corr_up + 0.5, (corr, corr_up)
    assert angles["brovey"] < 0.3 < angles["gram-schmidt"]  # why Brovey is the default


@pytest.mark.parametrize(("n", "m"), [(7, 30), (50, 200), (264, 1054)])
def test_upsample_is_map_coordinates(n, m):
    """The separable sparse upsampling equals scipy's 2-D cubic spline (``mode="nearest"``) on
    the grid of its positions, at non-integer ratios, positions up to both edges and beyond."""
    from stliif.preprocess.pansharpen import _upsample

    rng = np.random.default_rng(0)
    bands = rng.random((2, n, n + 3)) * 3000
    rows = np.linspace(-0.5, n - 0.5, m) + 1e-3 * np.sin(np.arange(m))
    cols = np.linspace(-1.5, n + 2.7, m + 5)
    out = _upsample(bands, rows, cols)
    assert out.shape == (2, m, m + 5) and out.dtype == np.float64
    grid = np.meshgrid(rows, cols, indexing="ij")
    for k in range(2):
        reference = ndimage.map_coordinates(bands[k], grid, order=3, mode="nearest")
        np.testing.assert_allclose(out[k], reference, rtol=0, atol=1e-9)
