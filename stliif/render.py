"""Render a continuous space-time model at any date and resolution, as georeferenced products.

A render asks a model (a checkpoint, a run folder or any protocol-P style predictor) for the
image of an LR cube (``raw/<aoi>`` in the store, or a crop of one, ``crop/raw/<aoi>/<name>``:
``reflectance`` (time, band, y, x) with CRS) at one date and one scale:

1. **Revisits**: the ``k`` revisits closest in time to the date among those with a clear
   fraction (over the area, :func:`stliif.preprocess.mask.clear_fraction`) of at least
   ``min_clear`` (all revisits when the clear fractions are unknown), in date order. Dates are
   matched by acquisition day: a revisit acquired at 10:30 on the requested day is 0 days away.
2. **Temporal support**: the distance in days to the nearest revisit used is recorded
   (``nearest_revisit_days``); beyond ``max_gap_days`` the request is refused unless
   ``allow_far=True``, in which case the result is flagged (``temporal_support="extrapolated"``).
3. **Radiometry**: RGB reflectance (B04, B03, B02) becomes 8-bit: divided by the brightest
   clear pixel of the revisits used (at least the maximum of their temporal median, protocol C's
   scale), so no clear pixel is clipped, with missing pixels filled from the median; the model's
   8-bit output is mapped back with the same scale, so renders are reflectance.
4. **Grid**: the LR footprint divided into ``round(scale * H) x round(scale * W)`` pixels: the
   bounds are the cube's, the CRS the cube's; ``gsd`` (metres) sets the scale from the LR pixel
   size (10 m for Sentinel-2 unless the cube's CRS is projected).
5. **Area**: output pixels outside the cube's area (its pixels with data on some date,
   ``data_mask``, within its ``geometry`` attribute when it has one) are NaN, the declared
   nodata of the render and of its COG.

:func:`render` returns an ``xarray.DataArray`` (band, y, x) with coordinates and CRS
(rioxarray); :func:`render_series` stacks dates along ``time``. :func:`write_cog`,
:func:`write_quicklook` and :func:`write_animation` write what QGIS and people open.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from stliif.cog import write_cog
from stliif.errors import DataAccessError, InvalidInputError, ModelError, NoDataError
from stliif.models.predictor import model_name, reflectance_to_uint8, uint8_scale

__all__ = [
    "RGB_BANDS",
    "check_render_budget",
    "load_predictor",
    "render",
    "render_series",
    "select_revisits",
    "series_dates",
    "write_animation",
    "write_cog",
    "write_quicklook",
]

RGB_BANDS = ("B04", "B03", "B02")
S2_GSD_M = 10.0
Predictor = Callable[..., np.ndarray]


def load_predictor(model: str | Path | Predictor) -> Predictor:
    """A predictor from a checkpoint file, a run folder (``best.pt``) or a baseline name.

    A checkpoint's output calibration is kept without its blend with the time-invariant median
    (weight 1: a render must follow the query date) and without the grid offset of the study's
    targets (a render stays on the inputs' georeferenced grid); the V-mean match stays.
    """
    if callable(model):
        return model
    from stliif.models.predictor import get_predictor

    pred = get_predictor(model, protocol="paper")
    cal = getattr(pred, "calibration", None)
    if cal is not None:
        pred.calibration = dataclasses.replace(cal, weight=1.0, offset=(0.0, 0.0))  # type: ignore[attr-defined]
    return pred


def _date(value: Any, what: str = "date") -> np.datetime64:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"invalid {what} {value!r}: use YYYY-MM-DD") from err
    if ts is pd.NaT:
        raise InvalidInputError(f"invalid {what} {value!r}: use YYYY-MM-DD")
    return np.datetime64(ts.tz_localize(None) if ts.tzinfo else ts, "s")


def _days(times: Any) -> np.ndarray:
    """Acquisition days (the time of day dropped), as ``datetime64[s]`` at midnight."""
    out = np.asarray(times, dtype="datetime64[s]").astype("datetime64[D]").astype("datetime64[s]")
    return out[()] if out.ndim == 0 else out


def _scale(cube: xr.Dataset, scale: float | None, gsd: float | None) -> float:
    if (scale is None) == (gsd is None):
        raise InvalidInputError("give exactly one of scale and gsd")
    if gsd is not None:
        if not (isinstance(gsd, int | float) and math.isfinite(gsd) and gsd > 0):
            raise InvalidInputError(f"gsd must be a positive number of metres, got {gsd!r}")
        crs = cube.rio.crs
        native = abs(cube.rio.resolution()[0]) if crs is not None and crs.is_projected else S2_GSD_M
        scale = native / float(gsd)
    if not (isinstance(scale, int | float) and math.isfinite(scale) and 0 < scale <= 16):
        raise InvalidInputError(f"scale must be a number in (0, 16], got {scale!r}")
    return float(scale)


def select_revisits(
    times: np.ndarray,
    date: Any,
    *,
    k: int = 5,
    clear_fraction: np.ndarray | None = None,
    min_clear: float = 0.5,
) -> np.ndarray:
    """Indices of the ``k`` usable revisits closest to ``date`` by acquisition day (ties: earlier
    first), in date order.

    Raises:
        NoDataError: No revisit has a clear fraction of at least ``min_clear``.
    """
    if k < 1:
        raise InvalidInputError(f"k must be >= 1, got {k}")
    t = _days(times)
    usable = np.ones(t.shape[0], bool) if clear_fraction is None else np.asarray(clear_fraction) >= min_clear
    if not usable.any():
        raise NoDataError(f"no revisit is at least {min_clear:.0%} clear")
    cand = np.flatnonzero(usable)
    gap = np.abs((t[cand] - _days(_date(date))).astype(np.int64))
    chosen = cand[np.lexsort((t[cand].astype(np.int64), gap))[:k]]
    return np.sort(chosen)


def _rgb_frames(cube: xr.Dataset, idx: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) float32 RGB reflectance of the chosen revisits, gaps filled from the median."""
    if "reflectance" not in cube:
        raise InvalidInputError("the cube has no 'reflectance' variable (an LR cube, raw/<aoi>, is needed)")
    missing = sorted(set(RGB_BANDS) - {str(b) for b in cube["band"].values})
    if missing:
        raise InvalidInputError(f"the cube lacks bands {missing}")
    refl = cube["reflectance"].isel(time=idx).sel(band=list(RGB_BANDS))
    f = np.asarray(refl.transpose("time", "y", "x", "band").values, dtype=np.float32)
    bad = ~np.isfinite(f)
    if bad.any():
        import warnings

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: outside the area
            med = np.nanmedian(np.where(bad, np.nan, f), axis=0)
        med = np.where(np.isfinite(med), med, 0.0).astype(np.float32)
        f = np.where(bad, med[None], f)
    return f


def _display_scale(cube: xr.Dataset, idx: np.ndarray, frames: np.ndarray) -> float:
    """The 8-bit scale of a render: the brightest clear pixel of the revisits used (no clear
    pixel is clipped), and at least protocol C's scale (max of the temporal median)."""
    vals = frames
    if {"data_mask", "clm"} <= set(cube.data_vars):
        from stliif.preprocess.mask import clear_mask

        clear = np.asarray(clear_mask(cube.isel(time=idx)).values, dtype=bool)
        if clear.any():
            vals = frames[clear]
    return max(uint8_scale(frames), float(np.max(vals)))


def _grid(cube: xr.Dataset, h: int, w: int) -> tuple[Affine, np.ndarray, np.ndarray]:
    left, bottom, right, top = cube.rio.bounds()
    tr = Affine((right - left) / w, 0.0, left, 0.0, -(top - bottom) / h, top)
    x = left + (np.arange(w) + 0.5) * tr.a
    y = top + (np.arange(h) + 0.5) * tr.e
    return tr, x, y


BYTES_PER_OUTPUT_PIXEL = 128
"""Working memory per rendered pixel: query coordinates and cells, the decoded output, the
uint8 and float32 images and the file copy; measured 108 bytes per pixel of peak RSS over the
imports for a x16 render (6.4 MP) with malloc arenas capped (bench/memory.py), plus margin."""


def temporal_support(
    times: np.ndarray,
    when: Any,
    *,
    k: int = 5,
    clear_fraction: np.ndarray | None = None,
    min_clear: float = 0.5,
    max_gap_days: float = 30.0,
    allow_far: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, str]:
    """The revisits a render at ``when`` uses: ``(indices, gaps in days, nearest gap, support)``.

    Raises:
        InvalidInputError: ``when`` is farther than ``max_gap_days`` from every usable revisit
            (unless ``allow_far``).
        NoDataError: No usable revisit.
    """
    when = _days(_date(when))
    t = _days(times)
    idx = select_revisits(t, when, k=k, clear_fraction=clear_fraction, min_clear=min_clear)
    gaps = (t[idx] - when).astype(np.int64) / 86400.0
    nearest = float(np.min(np.abs(gaps)))
    support = "at revisit" if nearest == 0 else ("interpolated" if gaps.min() < 0 < gaps.max() else "extrapolated")
    if nearest > max_gap_days and not allow_far:
        raise InvalidInputError(
            f"{str(when)[:10]} is {nearest:.0f} days from the nearest usable revisit (limit "
            f"{max_gap_days:g}): outside the model's temporal support; pass allow_far to render anyway"
        )
    return idx, gaps, nearest, support


def check_render_budget(cube: xr.Dataset, scale: float, n_dates: int, max_mb: float) -> int:
    """Bytes a render of ``n_dates`` dates needs; refuse it before any compute if over ``max_mb``.

    Raises:
        InvalidInputError: the request exceeds the budget.
    """
    h, w = cube.sizes["y"], cube.sizes["x"]
    out_h, out_w = max(1, round(scale * h)), max(1, round(scale * w))
    need = out_h * out_w * BYTES_PER_OUTPUT_PIXEL * max(1, n_dates)
    if need > max_mb * 2**20:
        raise InvalidInputError(
            f"render needs about {need / 2**20:.0f} MiB ({n_dates} date(s) of {out_h}x{out_w} px), above the "
            f"budget of {max_mb:g} MiB: render a --bbox, a smaller scale or fewer dates, or raise max_mb"
        )
    return need


def render(
    model: str | Path | Predictor,
    cube: xr.Dataset,
    date: Any,
    *,
    scale: float | None = None,
    gsd: float | None = None,
    k: int = 5,
    clear_fraction: np.ndarray | None = None,
    min_clear: float = 0.5,
    max_gap_days: float = 30.0,
    allow_far: bool = False,
    max_mb: float = 2048.0,
) -> xr.DataArray:
    """The model's RGB reflectance at ``date`` on a grid ``scale`` times finer than the cube's.

    Args:
        model: Checkpoint path, run folder, baseline name or predictor
            (``f(frames (T, H, W, 3) uint8, *, size, dates, target_date) -> (h, w, 3) uint8``).
        cube: LR cube with ``reflectance`` (time, band, y, x) and a CRS (``raw/<aoi>``).
        date: Date to render.
        scale: Output pixels per LR pixel side (e.g. 4), or
        gsd: the output pixel size in metres.
        k: Revisits given to the model.
        clear_fraction: Per-revisit clear fraction (``mask/<aoi>``) to skip cloudy revisits.
        min_clear: Least clear fraction of a usable revisit.
        max_gap_days: Farthest allowed distance from the date to the nearest revisit used.
        allow_far: Render beyond ``max_gap_days`` anyway (flagged in the attributes).
        max_mb: Memory budget (MiB); a larger output is refused before any compute.

    Returns:
        DataArray (band, y, x) float32 reflectance, ``x``/``y`` pixel centres, CRS and transform
        written; attributes: model, date, scale, revisits used, ``nearest_revisit_days``,
        ``temporal_support`` (``"interpolated"``, ``"extrapolated"`` or ``"at revisit"``).

    Raises:
        InvalidInputError: Bad date, scale/gsd, or a date beyond the temporal support.
        NoDataError: No usable revisit.
    """
    when = _date(date)
    s = _scale(cube, scale, gsd)
    check_render_budget(cube, s, 1, max_mb)
    if cube.rio.crs is None:
        raise InvalidInputError("the cube has no CRS: a render must be georeferenced")
    times = _days(cube["time"].values)
    idx, gaps, nearest, support = temporal_support(
        times, when, k=k, clear_fraction=clear_fraction, min_clear=min_clear, max_gap_days=max_gap_days,
        allow_far=allow_far,
    )  # fmt: skip
    used = times[idx]
    frames = _rgb_frames(cube, idx)
    top = _display_scale(cube, idx, frames)
    h, w = frames.shape[1:3]
    out_h, out_w = max(1, round(s * h)), max(1, round(s * w))
    predictor = load_predictor(model)
    level = str(cube.attrs.get("processing_level", "L2A"))
    pred = np.asarray(
        predictor(reflectance_to_uint8(frames, top), size=(out_h, out_w), dates=used, target_date=when)
    )
    if pred.ndim == 4 and pred.shape[0] == len(idx):  # a per-frame model: its nearest revisit
        pred = pred[int(np.argmin(np.abs(gaps)))]
    if pred.shape != (out_h, out_w, 3):
        raise ModelError(f"the model returned {pred.shape}, expected {(out_h, out_w, 3)}")
    values = pred.astype(np.float32).transpose(2, 0, 1) * np.float32(top / 255.0)
    tr, x, y = _grid(cube, out_h, out_w)
    values[:, ~_area_on_grid(cube, tr, out_h, out_w)] = np.nan
    da = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": list(RGB_BANDS), "y": y, "x": x},
                      name="reflectance")  # fmt: skip
    da.attrs = {
        "model": str(getattr(predictor, "__name__", model)),
        "date": str(when)[:10],
        "scale": s,
        "revisits": [str(t)[:10] for t in used],
        "nearest_revisit_days": nearest,
        "temporal_support": support,
        "uint8_scale": float(top),
        "aoi": str(cube.attrs.get("aoi", "")),
        "min_clear": float(min_clear),
        "processing_level": level,
        "reflectance_units": str(cube.attrs.get("reflectance_units", "surface reflectance")),
    }
    if level == "L1C" and hasattr(predictor, "model"):  # a trained checkpoint: WorldStrat L2A
        da.attrs["warning"] = (
            "a top-of-atmosphere (L1C) cube rendered with a model trained on surface reflectance "
            "(L2A): the inputs carry the atmosphere the model never saw"
        )
        warnings.warn(da.attrs["warning"], UserWarning, stacklevel=2)
    return da.rio.write_crs(cube.rio.crs).rio.write_transform(tr)


def _area_on_grid(cube: xr.Dataset, tr: Affine, h: int, w: int) -> np.ndarray:
    """Boolean (h, w): output pixels inside the cube's area (:func:`stliif.preprocess.mask.area_mask`,
    nearest LR pixel) and inside its ``geometry`` attribute (lon/lat GeoJSON) when it has one."""
    inside = np.ones((h, w), bool)
    if "data_mask" in cube:
        from stliif.preprocess.mask import area_mask

        area = np.asarray(area_mask(cube).values, dtype=bool)
        rows = np.minimum((np.arange(h) + 0.5) * area.shape[0] // h, area.shape[0] - 1).astype(int)
        cols = np.minimum((np.arange(w) + 0.5) * area.shape[1] // w, area.shape[1] - 1).astype(int)
        inside &= area[np.ix_(rows, cols)]
    geom = cube.attrs.get("geometry")
    if geom:
        import json

        from odc.geo.geom import Geometry
        from rasterio.features import geometry_mask

        try:
            shape = Geometry(json.loads(geom) if isinstance(geom, str) else dict(geom), "EPSG:4326").to_crs(cube.rio.crs)
            inside &= geometry_mask([shape.geom], out_shape=(h, w), transform=tr, invert=True)
        except Exception as err:
            raise InvalidInputError(f"the cube's geometry attribute is not a GeoJSON polygon: {err}") from err
    return inside


def series_dates(start: Any, end: Any, step: str = "5D") -> list[np.datetime64]:
    """Dates from ``start`` to ``end`` (inclusive) every ``step`` (a pandas offset such as ``5D``)."""
    a, b = _date(start, "start date"), _date(end, "end date")
    if b < a:
        raise InvalidInputError(f"end {str(b)[:10]} is before start {str(a)[:10]}")
    try:
        dates = pd.date_range(pd.Timestamp(a), pd.Timestamp(b), freq=step)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"invalid step {step!r}: use a pandas offset such as 5D or 1W") from err
    if len(dates) == 0 or pd.Timedelta(pd.tseries.frequencies.to_offset(step).nanos, "ns") <= pd.Timedelta(0):
        raise InvalidInputError(f"step {step!r} gives no dates")
    if len(dates) > 400:
        raise InvalidInputError(f"{len(dates)} dates: at most 400 per series (use a longer step)")
    return [np.datetime64(d, "s") for d in dates]


def render_series(
    model: str | Path | Predictor,
    cube: xr.Dataset,
    dates: Sequence[Any],
    *,
    progress: bool = False,
    **kwargs: Any,
) -> xr.DataArray:
    """:func:`render` at each date, stacked along ``time`` (same grid); per-date support in coords.
    The whole series is checked against ``max_mb`` (default 2048 MiB) before the first date."""
    check_render_budget(cube, _scale(cube, kwargs.get("scale"), kwargs.get("gsd")), len(dates), kwargs.get("max_mb", 2048.0))
    predictor = load_predictor(model)
    it: Any = dates
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(dates, desc="render", unit="date")
    frames = [render(predictor, cube, d, **kwargs) for d in it]
    if not frames:
        raise InvalidInputError("no dates to render")
    out = xr.concat(frames, dim=pd.Index([np.datetime64(f.attrs["date"], "s") for f in frames], name="time"))
    out = out.assign_coords(
        nearest_revisit_days=("time", [f.attrs["nearest_revisit_days"] for f in frames]),
        temporal_support=("time", [f.attrs["temporal_support"] for f in frames]),
    )
    out.attrs = {k: v for k, v in frames[0].attrs.items() if k not in ("date", "revisits", "nearest_revisit_days", "temporal_support")}
    return out.rio.write_crs(frames[0].rio.crs).rio.write_transform(frames[0].rio.transform())


def _display(values: np.ndarray, top: float) -> np.ndarray:
    """(band, y, x) reflectance -> (y, x, 3) uint8 with the render's own 8-bit scale (NaN: black)."""
    return reflectance_to_uint8(np.moveaxis(values, 0, -1), top)


def write_quicklook(da: xr.DataArray, path: str | Path) -> Path:
    """An 8-bit PNG of a render (its own uint8 scale)."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_display(da.values, float(da.attrs["uint8_scale"]))).save(p)
    return p


def write_animation(series: xr.DataArray, path: str | Path, *, fps: float = 4.0, max_side: int = 640) -> Path:
    """An animated GIF (``.gif``) or MP4 (``.mp4``, through ffmpeg) of a series, dates captioned."""
    from PIL import Image, ImageDraw

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    top = float(series.attrs["uint8_scale"]) if "uint8_scale" in series.attrs else float(np.nanmax(series.values))
    images = []
    for i in range(series.sizes["time"]):
        img = Image.fromarray(_display(series.isel(time=i).values, top))
        if max(img.size) > max_side:
            f = max_side / max(img.size)
            img = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(img)
        label = str(series["time"].values[i])[:10]
        flag = str(series["temporal_support"].values[i]) if "temporal_support" in series.coords else ""
        if flag == "extrapolated":
            label += " (extrapolated)"
        draw.rectangle((0, 0, 8 + 7 * len(label), 16), fill=(0, 0, 0))
        draw.text((4, 2), label, fill=(255, 255, 255))
        images.append(img)
    if p.suffix.lower() == ".gif":
        images[0].save(p, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    elif p.suffix.lower() == ".mp4":
        _write_mp4(images, p, fps)
    else:
        raise InvalidInputError(f"{p}: animations are .gif or .mp4")
    return p


def _write_mp4(images: list[Any], path: Path, fps: float) -> None:
    import shutil
    import subprocess

    exe = shutil.which("ffmpeg")
    if exe is None:
        try:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError) as err:
            raise DataAccessError("writing MP4 needs ffmpeg (install imageio-ffmpeg)") from err
    w, h = images[0].size
    w2, h2 = w - w % 2, h - h % 2  # yuv420p needs even sides
    raw = b"".join(np.asarray(im.convert("RGB"))[:h2, :w2].tobytes() for im in images)
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w2}x{h2}",
           "-r", f"{fps:g}", "-i", "-", "-pix_fmt", "yuv420p", "-vcodec", "libx264", str(path)]  # fmt: skip
    res = subprocess.run(cmd, input=raw, capture_output=True, timeout=600)
    if res.returncode != 0:
        raise DataAccessError(f"ffmpeg failed writing {path}: {res.stderr.decode(errors='replace')[-300:]}")


def model_id(model: str | Path) -> dict[str, str]:
    """What identifies a model in a render's lineage: its name and, for checkpoints, a content hash."""
    import hashlib

    name = model_name(model)
    p = Path(str(model)).expanduser()
    file = p / "best.pt" if p.is_dir() else p
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.is_file() else name
    return {"name": name, "sha256": digest}


def check_render(
    store: Any,
    aoi: str,
    model: str | Path,
    *,
    date: Any | None = None,
    start: Any | None = None,
    end: Any | None = None,
    step: str = "5D",
    scale: float | None = None,
    gsd: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    k: int = 5,
    min_clear: float = 0.5,
    max_gap_days: float = 30.0,
    allow_far: bool = False,
    max_mb: float = 2048.0,
    load: bool = False,
) -> tuple[list[np.datetime64], xr.Dataset, np.ndarray | None, dict[str, str]]:
    """Check a render request against the store before any pixel is computed: the AOI's cube,
    the dates (each within the temporal support), scale or gsd, the memory budget, the bbox and
    the model. Reads only metadata unless ``load``. ``aoi`` is a plain AOI (``raw/<aoi>``) or a
    crop's store path (``crop/raw/<aoi>/<name>``). Clear fractions come from ``mask/<aoi>`` when
    the mask stage ran, else from the cube's masks (the same rule); revisits below
    ``min_clear`` are not used.

    Returns:
        ``(dates, cube (cropped to ``bbox``), clear fractions or None, input versions)``.

    Raises:
        InvalidInputError: a bad argument, a date beyond the support, or over the budget.
        NoDataError: the cube is not in the store, or no revisit is usable.
    """
    from stliif.names import aoi_cube_path, is_crop_aoi
    from stliif.preprocess.crop import crop_square
    from stliif.preprocess.mask import clear_fraction

    source = aoi_cube_path(aoi)
    if (date is None) == (start is None and end is None) or (start is None) != (end is None):
        raise InvalidInputError("give a date, or a start and an end (with a step)")
    if not (isinstance(min_clear, int | float) and 0 <= min_clear <= 1):
        raise InvalidInputError(f"min_clear must be a fraction in [0, 1], got {min_clear!r}")
    dates = [_date(date)] if date is not None else series_dates(start, end, step)
    version = store.version(source)
    if version is None:
        how = "make it with `stliif crop`" if is_crop_aoi(aoi) else f"import or acquire it (`stliif etl --aoi {aoi} --stage import`, `stliif acquire`)"
        raise NoDataError(f"{source} is not in the store: {how} first")
    from stliif.cubes import read_cube

    cube = read_cube(store, aoi, load=load)
    s = _scale(cube, scale, gsd)
    if bbox is not None:
        cube = crop_square(cube, bbox=bbox)
    check_render_budget(cube, s, len(dates), max_mb)  # before reading the model or the masks
    ident = model_id(model)
    inputs = {source: version, "model": ident["sha256"]}
    clear = None
    if store.version(f"mask/{aoi}") is not None:
        clear = np.asarray(store.read(f"mask/{aoi}", load=True)["clear_fraction"].values)
        inputs[f"mask/{aoi}"] = str(store.version(f"mask/{aoi}"))
    elif {"data_mask", "clm"} <= set(cube.data_vars):  # no mask stage yet: the same rule
        clear = np.asarray(clear_fraction(cube).values)
    for d in dates if date is not None else []:  # a series flags far dates, one render refuses them
        temporal_support(cube["time"].values, d, k=k, clear_fraction=clear, min_clear=min_clear,
                         max_gap_days=max_gap_days, allow_far=allow_far)  # fmt: skip
    return dates, cube, clear, inputs


def run_render(
    store: Any,
    aoi: str,
    model: str | Path,
    *,
    date: Any | None = None,
    start: Any | None = None,
    end: Any | None = None,
    step: str = "5D",
    scale: float | None = None,
    gsd: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    out_dir: str | Path = "stliif-out/render",
    k: int = 5,
    min_clear: float = 0.5,
    max_gap_days: float = 30.0,
    allow_far: bool = False,
    max_mb: float = 2048.0,
    run_id: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Render ``aoi``'s cube (``raw/<aoi>``, or a crop's path ``crop/raw/<aoi>/<name>``) from the
    store at one date or a date range, using the revisits at least ``min_clear`` clear; write the
    files, commit.

    One date writes ``<name>.tif`` (COG) and ``<name>.png``; a range writes ``<name>.gif``,
    ``<name>.mp4`` and ``<name>-strip.png`` (renders beside the nearest real revisits) and stores
    the series as a Zarr cube. The render is committed as ``render/<aoi>/<model>/<name>`` with the
    model's hash and the cube's version as inputs; an identical request commits nothing.

    Returns:
        ``{"path", "status", "snapshot_id", "files", "attrs"}``.
    """
    dates, cube, clear, inputs = check_render(
        store, aoi, model, date=date, start=start, end=end, step=step, scale=scale, gsd=gsd, bbox=bbox,
        k=k, min_clear=min_clear, max_gap_days=max_gap_days, allow_far=allow_far, max_mb=max_mb, load=True,
    )  # fmt: skip
    from stliif.names import aoi_cube_path

    source = aoi_cube_path(aoi)
    mid = model_name(model)
    tag = f"x{scale:g}" if scale is not None else f"gsd{gsd:g}m"
    name = (f"{str(dates[0])[:10]}-{tag}" if date is not None
            else f"{str(dates[0])[:10]}_{str(dates[-1])[:10]}_{step}-{tag}")  # fmt: skip
    predictor = load_predictor(model)
    opts: dict[str, Any] = dict(scale=scale, gsd=gsd, k=k, clear_fraction=clear, min_clear=min_clear,
                                max_gap_days=max_gap_days, allow_far=allow_far, max_mb=max_mb)
    out = Path(out_dir) / aoi / mid
    files: list[Path] = []
    if date is not None:
        da = render(predictor, cube, dates[0], **opts)
        files += [write_cog(da, out / f"{name}.tif"), write_quicklook(da, out / f"{name}.png")]
    else:
        da = render_series(predictor, cube, dates, progress=progress, **opts)
        files += [write_animation(da, out / f"{name}.gif"), write_animation(da, out / f"{name}.mp4"),
                  write_strip(da, cube, out / f"{name}-strip.png")]  # fmt: skip
    attrs = dict(da.attrs)
    ds = da.to_dataset(name="reflectance")
    ds.attrs = {**attrs, "model_sha256": inputs["model"], "source": source}
    params = {"dates": [str(d)[:10] for d in dates], "scale": scale, "gsd": gsd, "bbox": bbox, "k": k,
              "min_clear": min_clear, "max_gap_days": max_gap_days, "allow_far": allow_far}  # fmt: skip
    path = f"render/{aoi}/{mid}/{name}"
    try:
        res = store.commit({path: ds}, stage="render", params=params, inputs=inputs, run_id=run_id)
    except BaseException:  # files stand only for what the store holds
        for f in files:
            f.unlink(missing_ok=True)
        raise
    return {"path": path, "status": "committed" if res.created else "unchanged",
            "snapshot_id": res.snapshot_id, "files": [str(f) for f in files], "attrs": attrs}  # fmt: skip


def write_strip(series: xr.DataArray, cube: xr.Dataset, path: str | Path, *, max_frames: int = 8) -> Path:
    """A side-by-side strip: up to ``max_frames`` renders of a series above the nearest real revisit of each."""
    from PIL import Image, ImageDraw

    top = float(series.attrs["uint8_scale"])
    n = series.sizes["time"]
    pick = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    times = np.asarray(cube["time"].values, dtype="datetime64[s]")
    side = 192
    sheet = Image.new("RGB", (side * len(pick), 2 * side + 28), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for col, i in enumerate(pick):
        when = np.datetime64(series["time"].values[i], "s")
        j = int(np.argmin(np.abs((times - when).astype(np.int64))))
        real = _rgb_frames(cube, np.array([j]))[0]
        panels = [_display(series.isel(time=i).values, top), reflectance_to_uint8(real, top)]
        for row, img in enumerate(panels):
            sheet.paste(Image.fromarray(img).resize((side, side), Image.Resampling.NEAREST if row else Image.Resampling.LANCZOS),
                        (col * side, row * side))  # fmt: skip
        draw.text((col * side + 4, 2 * side + 2), f"render {str(when)[:10]}", fill=(0, 0, 0))
        draw.text((col * side + 4, 2 * side + 14), f"revisit {str(times[j])[:10]}", fill=(90, 90, 90))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(p)
    return p
