"""Rendering: georeferenced grids, temporal support, time interpolation, products, bad requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from stliif.errors import InvalidInputError, NoDataError
from stliif.render import (
    render,
    render_series,
    select_revisits,
    series_dates,
    write_animation,
    write_cog,
    write_quicklook,
)

DATES = np.array(["2020-01-01", "2020-01-11", "2020-01-21", "2020-01-31", "2020-02-10"], dtype="datetime64[s]")


def linear_cube(h: int = 16, w: int = 12) -> xr.Dataset:
    """Reflectance that changes linearly in time (+0.02 per 10 days) over a spatial ramp."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.05 + 0.004 * yy + 0.003 * xx
    days = (DATES - DATES[0]).astype(np.int64) / 86400.0
    bands = ["B02", "B03", "B04", "B08"]
    refl = np.stack([np.stack([base * (1 + 0.2 * b) + 0.002 * d for b in range(4)]) for d in days])
    tr = Affine(10.0, 0, 500000.0, 0, -10.0, 4000000.0)
    ds = xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl.astype(np.float32))},
        coords={"time": DATES.astype("datetime64[ns]"), "band": bands,
                "y": 4000000.0 - 10.0 * (np.arange(h) + 0.5), "x": 500000.0 + 10.0 * (np.arange(w) + 0.5)},
        attrs={"aoi": "synthetic"},
    )  # fmt: skip
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(tr)


def test_render_grid_matches_the_cube_footprint() -> None:
    cube = linear_cube()
    da = render("bicubic", cube, "2020-01-21", scale=4)
    assert da.shape == (4, 64, 48) and list(da["band"].values) == ["B04", "B03", "B02", "B08"]  # product: + NIR
    assert da.rio.crs == cube.rio.crs
    np.testing.assert_allclose(da.rio.bounds(), cube.rio.bounds(), atol=1e-6)
    assert da.rio.resolution() == pytest.approx((2.5, -2.5))
    by_gsd = render("bicubic", cube, "2020-01-21", gsd=2.5)  # projected CRS: 10 m pixels
    assert by_gsd.shape == da.shape
    assert da.attrs["temporal_support"] == "at revisit" and da.attrs["nearest_revisit_days"] == 0


def test_a_render_at_a_revisit_date_and_native_scale_reproduces_that_revisit() -> None:
    """Through the whole product path (selection, 8-bit round trip, grid): exact up to quantisation."""
    cube = linear_cube()
    for i in (0, 2, 4):
        da = render("linear", cube, DATES[i], scale=1)
        real = cube["reflectance"].isel(time=i).sel(band=["B04", "B03", "B02"]).values
        assert np.abs(da.values[:3] - real).max() <= da.attrs["uint8_scale"] / 255 / 2 + 1e-6
        nir = cube["reflectance"].isel(time=i).sel(band="B08").values  # the inputs' NIR, never quantised
        assert np.abs(da.values[3] - nir).max() <= 1e-6
        assert da.attrs["temporal_support"] == "at revisit"


def test_linear_in_time_renders_between_the_two_revisits() -> None:
    cube = linear_cube()
    mid = render("linear", cube, "2020-01-16", scale=1, mode="paper")  # halfway between revisits 2 and 3
    a = cube["reflectance"].isel(time=1).sel(band=["B04", "B03", "B02"]).values
    b = cube["reflectance"].isel(time=2).sel(band=["B04", "B03", "B02"]).values
    scale = mid.attrs["uint8_scale"] / 255
    lo, hi = np.minimum(a, b) - scale, np.maximum(a, b) + scale  # 8-bit quantisation
    assert ((mid.values >= lo) & (mid.values <= hi)).all()
    assert abs(float(mid.values.mean()) - float((a.mean() + b.mean()) / 2)) < scale
    assert mid.attrs["temporal_support"] == "interpolated" and mid.attrs["nearest_revisit_days"] == 5


def test_temporal_support_is_enforced_and_cloudy_revisits_skipped() -> None:
    cube = linear_cube()
    with pytest.raises(InvalidInputError, match="outside the model's temporal support"):
        render("linear", cube, "2020-06-01", scale=2)
    far = render("linear", cube, "2020-06-01", scale=2, allow_far=True)
    assert far.attrs["temporal_support"] == "extrapolated" and far.attrs["nearest_revisit_days"] > 100
    idx = select_revisits(DATES, "2020-01-21", k=2, clear_fraction=np.array([1, 1, 0.1, 1, 1.0]))
    assert list(idx) == [1, 3]
    with pytest.raises(NoDataError, match="clear"):
        select_revisits(DATES, "2020-01-21", clear_fraction=np.zeros(5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0}, "scale must be"),
        ({"scale": -2}, "scale must be"),
        ({"scale": 2, "gsd": 5}, "exactly one"),
        ({"gsd": 0.0}, "gsd must be"),
        ({"scale": 2, "date": "2020-13-45"}, "invalid date"),
    ],
)
def test_bad_requests_are_clear_errors(kwargs: dict, message: str) -> None:
    date = kwargs.pop("date", "2020-01-21")
    with pytest.raises(InvalidInputError, match=message):
        render("linear", linear_cube(), date, **kwargs)


def test_memory_budget_refuses_before_any_compute() -> None:
    """16x12 px at x16 is 256x192 px = 6 MiB per date at 128 bytes per pixel: refused under a
    5 MiB budget before the model is even looked up (a model name that does not exist is never
    reached), accepted under 7 MiB."""
    with pytest.raises(InvalidInputError, match=r"about 6 MiB .* above the budget of 5 MiB"):
        render("no-such-model", linear_cube(), "2020-01-21", scale=16, max_mb=5)
    dates = series_dates("2020-01-01", "2020-01-31", "1D")
    with pytest.raises(InvalidInputError, match=r"31 date\(s\)"):
        render_series("no-such-model", linear_cube(), dates, scale=4, max_mb=1)
    assert render("linear", linear_cube(), "2020-01-21", scale=16, max_mb=7).shape == (4, 256, 192)


def test_series_dates_refuse_reversed_and_empty_ranges() -> None:
    assert [str(d)[:10] for d in series_dates("2020-01-01", "2020-01-11", "5D")] == ["2020-01-01", "2020-01-06", "2020-01-11"]
    with pytest.raises(InvalidInputError, match="before start"):
        series_dates("2020-02-01", "2020-01-01")
    with pytest.raises(InvalidInputError, match="invalid step"):
        series_dates("2020-01-01", "2020-02-01", "fortnightly")


def test_products_open_as_georeferenced_files(tmp_path: Path) -> None:
    cube = linear_cube()
    da = render("linear", cube, "2020-01-16", scale=3)
    tif = write_cog(da, tmp_path / "r.tif")
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32633 and src.count == 4 and (src.height, src.width) == (48, 36)
        np.testing.assert_allclose(tuple(src.bounds), cube.rio.bounds(), atol=1e-6)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_allclose(src.read(), da.values)
    png = write_quicklook(da, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image as _Image

    assert _Image.open(png).mode == "RGB"  # the quicklook shows R, G, B of the four bands
    series = render_series("linear", cube, series_dates("2020-01-01", "2020-02-10", "10D"), scale=2)
    assert series.sizes["time"] == 5 and list(series["temporal_support"].values) == ["at revisit"] * 5
    from PIL import Image

    gif = write_animation(series, tmp_path / "s.gif")
    assert Image.open(gif).n_frames == 5
    mp4 = write_animation(series, tmp_path / "s.mp4")
    assert mp4.stat().st_size > 0 and mp4.read_bytes()[4:8] == b"ftyp"


def test_record_model_renders_follow_the_date(worldstrat: Path) -> None:
    """The checkpoint of record on real revisits: a render in early September looks like the
    September revisits, one in mid October like the October ones (the scene changes in between)."""
    from stliif.config import default_model
    from stliif.preprocess.mask import compute_masks
    from stliif.render.tiles import LowRes
    from stliif.sources.worldstrat import find_aoi_files, read_lr

    cube = read_lr(find_aoi_files(worldstrat, "Landcover-14956"))
    clear = compute_masks(cube)["clear_fraction"].values
    frames = LowRes(cube, range(cube.sizes["time"])).window(np.arange(cube.sizes["time"]), slice(None), slice(None))
    sep, octo = 1, 6  # 2019-09-03 and 2019-10-18, both fully clear
    corr = {}
    for i in (sep, octo):
        da = render(default_model(), cube, cube["time"].values[i], scale=1, clear_fraction=clear)
        assert da.attrs["temporal_support"] == "at revisit"
        img = da.values[:3].transpose(1, 2, 0)  # R, G, B: the model's bands (NIR is the inputs')
        corr[i] = [np.corrcoef(img.ravel(), frames[j].ravel())[0, 1] for j in (sep, octo)]
    assert corr[sep][0] > corr[sep][1] + 0.2 and corr[octo][1] > corr[octo][0] + 0.2, corr


def test_files_of_a_render_whose_commit_fails_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A render's files stand only for what the store holds: a failed commit leaves none."""
    from stliif.errors import StoreError
    from stliif.render import run_render
    from stliif.store import ArtifactStore

    store = ArtifactStore.open(str(tmp_path / "store"))
    store.commit({"raw/synthetic": linear_cube()}, stage="import", params={})
    out = tmp_path / "out"
    ok = run_render(store, "synthetic", "median", date="2020-01-11", scale=2, out_dir=out)
    assert ok["status"] == "committed" and all(Path(f).is_file() for f in ok["files"])

    def fail(*args: object, **kwargs: object) -> None:
        raise StoreError("commit failed: No space left on device")

    monkeypatch.setattr(store, "commit", fail)
    with pytest.raises(StoreError, match="No space left"):
        run_render(store, "synthetic", "median", date="2020-01-21", scale=2, out_dir=out)
    left = sorted(p.name for p in out.rglob("*") if p.is_file() and ".partial" not in str(p))
    assert left == sorted(Path(f).name for f in ok["files"])  # only the committed render's files
    # the finished tiles stay in the hidden scratch folder, for a retry to resume from
    assert [p.name for p in out.rglob(".*.partial")] == [".2020-01-21-x2.partial"]
