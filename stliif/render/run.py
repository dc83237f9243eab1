"""Renders: in memory (:func:`render`, :func:`render_series`) and from the store, streamed,
resumable and committed (:func:`check_render`, :func:`run_render`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from stliif.cog import write_cog_blocks
from stliif.constraint import check_mode
from stliif.errors import DataAccessError, InvalidInputError, NoDataError
from stliif.models.predictor import model_name, predictor_bands
from stliif.models.window import WindowPredictor
from stliif.render.products import decimate, write_animation, write_quicklook, write_strip
from stliif.render.request import (
    NIR_MODEL,
    NIR_SOURCE,
    RGB_BANDS,
    _date,
    _days,
    _grid,
    _scale,
    check_render_budget,
    load_predictor,
    model_id,
    render_bands,
    series_dates,
    temporal_support,
)
from stliif.render.tiles import (
    Area,
    DateJob,
    LowRes,
    MemorySink,
    Tile,
    ZarrSink,
    check_tile,
    date_consistency,
    finalise,
    plan_tiles,
    render_tiles,
    tile_side,
)

__all__ = ["RenderPlan", "check_render", "dask_client", "render", "render_series", "run_render"]

_PER_DATE = ("date", "revisits", "nearest_revisit_days", "temporal_support", "consistency_mae", "consistency_bias",
             "consistency_mae_band", "consistency_corr", "consistency_sam_deg", "consistency_shift_px",
             "consistency_ndvi_mae")  # fmt: skip

QUICKLOOK_SIDE = 1024
"""Largest side of a render's PNG quicklook (a larger render is decimated; the COG is full size)."""

_L1C_WARNING = (
    "a top-of-atmosphere (L1C) cube rendered with a model trained on surface reflectance "
    "(L2A): the inputs carry the atmosphere the model never saw"
)


def _jobs(cube: xr.Dataset, dates: Sequence[Any], **support: Any) -> list[DateJob]:
    times = _days(cube["time"].values)
    jobs = []
    for d in dates:
        when = _days(_date(d))
        idx, gaps, nearest, kind = temporal_support(times, when, **support)
        jobs.append(DateJob(when, idx, times[idx], gaps, nearest, kind))
    return jobs


def _geometry(cube: xr.Dataset) -> Any:
    """The cube's ``geometry`` attribute (lon/lat GeoJSON) in its CRS, or None."""
    geom = cube.attrs.get("geometry")
    if not geom:
        return None
    from odc.geo.geom import Geometry

    try:
        return Geometry(json.loads(geom) if isinstance(geom, str) else dict(geom), "EPSG:4326").to_crs(cube.rio.crs).geom
    except Exception as err:
        raise InvalidInputError(f"the cube's geometry attribute is not a GeoJSON polygon: {err}") from err


def _attrs(predictor: WindowPredictor, model: Any, cube: xr.Dataset, job: DateJob, s: float, min_clear: float,
           bands: Sequence[str] = RGB_BANDS) -> dict[str, Any]:  # fmt: skip
    level = str(cube.attrs.get("processing_level", "L2A"))
    attrs: dict[str, Any] = {
        "model": str(getattr(predictor, "__name__", model)),
        "date": str(job.when)[:10],
        "scale": s,
        "revisits": [str(t)[:10] for t in job.used],
        "nearest_revisit_days": job.nearest,
        "temporal_support": job.support,
        "uint8_scale": float(job.top),
        "aoi": str(cube.attrs.get("aoi", "")),
        "min_clear": float(min_clear),
        "processing_level": level,
        "reflectance_units": str(cube.attrs.get("reflectance_units", "surface reflectance")),
        "bands": list(bands),
    }
    if len(bands) > len(RGB_BANDS):  # say where the NIR comes from
        attrs["nir_source"] = NIR_MODEL if predictor_bands(predictor) == 4 else NIR_SOURCE
    if level == "L1C" and hasattr(predictor, "model"):  # a trained checkpoint: WorldStrat L2A
        attrs["warning"] = _L1C_WARNING
    return attrs


def _consistency_attrs(c: dict[str, Any]) -> dict[str, Any]:
    """A date's LR consistency (:func:`~stliif.render.tiles.date_consistency`) as flat attributes/tags
    (``consistency_ndvi_mae`` only where there is an NDVI: a four-band render)."""
    nd = c.get("ndvi_mae", math.nan)
    return {"consistency_mae": c["mae"], "consistency_bias": c["bias"], "consistency_mae_band": c["mae_band"],
            "consistency_corr": c["corr"], "consistency_sam_deg": c["sam"], "consistency_shift_px": c["shift_px"],
            **({"consistency_ndvi_mae": nd} if math.isfinite(nd) else {})}  # fmt: skip


def _v_mean(predictor: WindowPredictor) -> str:
    cal = getattr(predictor, "calibration", None)
    return str(cal.v_mean) if cal is not None else "none"


def _series_coords(da: xr.DataArray, jobs: Sequence[DateJob]) -> xr.DataArray:
    return da.assign_coords(
        time=np.array([j.when for j in jobs], dtype="datetime64[s]"),
        nearest_revisit_days=("time", [j.nearest for j in jobs]),
        temporal_support=("time", [j.support for j in jobs]),
    )


def _render_memory(
    model: str | Path | WindowPredictor,
    cube: xr.Dataset,
    dates: Sequence[Any],
    *,
    scale: float | None,
    gsd: float | None,
    min_clear: float,
    max_mb: float,
    tile: int | None,
    client: Any,
    support: dict[str, Any],
    mode: str = "product",
) -> tuple[xr.DataArray, list[dict[str, Any]]]:
    check_mode(mode)
    s = _scale(cube, scale, gsd)
    check_render_budget(cube, s, len(dates), max_mb)
    if cube.rio.crs is None:
        raise InvalidInputError("the cube has no CRS: a render must be georeferenced")
    jobs = _jobs(cube, dates, min_clear=min_clear, **support)
    predictor = load_predictor(model)
    lr_hw = (cube.sizes["y"], cube.sizes["x"])
    out_hw = (max(1, round(s * lr_hw[0])), max(1, round(s * lr_hw[1])))
    if tile is not None:
        check_tile(predictor, s, tile)
    tiles = plan_tiles(lr_hw, out_hw, tile or max(out_hw), predictor.halo(s))
    model_bands = predictor_bands(predictor)
    bands = render_bands(cube, mode, model_bands)
    lowres = LowRes(cube, np.concatenate([j.idx for j in jobs]), bands=bands)
    v_mean = _v_mean(predictor)
    for job in jobs:
        lowres.date_stats(job, v_mean=v_mean != "none")
    sink = MemorySink(len(jobs), out_hw, model_bands)
    render_tiles(predictor, jobs, tiles, lowres, sink, out_hw, client=client)
    tr, x, y = _grid(cube, *out_hw)
    area = Area(lowres, out_hw, tr, _geometry(cube))
    values = np.empty((len(jobs), len(bands), *out_hw), np.float32)

    def write(d: int, t: Tile, v: np.ndarray) -> None:
        values[d, :, t.r0 : t.r1, t.c0 : t.c1] = v

    checks = _finalise_dates(jobs, tiles, sink, area, v_mean, write, mode, values)
    attrs = [{**_attrs(predictor, model, cube, job, s, min_clear, bands), "mode": mode, **_consistency_attrs(c)}
             for job, c in zip(jobs, checks, strict=True)]  # fmt: skip
    if "warning" in attrs[0]:
        warnings.warn(attrs[0]["warning"], UserWarning, stacklevel=3)
    da = xr.DataArray(values, dims=("time", "band", "y", "x"), coords={"band": list(bands), "y": y, "x": x},
                      name="reflectance")  # fmt: skip
    da = _series_coords(da, jobs).rio.write_crs(cube.rio.crs).rio.write_transform(tr)
    return da, attrs


def render(
    model: str | Path | WindowPredictor,
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
    tile: int | None = None,
    client: Any = None,
    mode: str = "product",
) -> xr.DataArray:
    """The model's reflectance at ``date`` on a grid ``scale`` times finer than the cube's: R, G,
    B (B04, B03, B02) and, in product mode on a cube with B08, NIR (:func:`render_bands`; the
    NIR of an RGB model is the inputs' low frequencies, attribute ``nir_source``; a four-band
    model renders its own NIR in both modes, ``nir_source`` ``"model"``).

    Args:
        model: Checkpoint path, run folder, baseline name (``bicubic``, ``median``, ``linear``)
            or a :class:`~stliif.models.window.WindowPredictor`.
        cube: LR cube with ``reflectance`` (time, band, y, x) and a CRS (``raw/<aoi>``).
        date: Date to render.
        scale: Output pixels per LR pixel side (e.g. 4), or
        gsd: the output pixel size in metres.
        k: Revisits given to the model.
        clear_fraction: Per-revisit clear fraction (``mask/<aoi>``) to skip cloudy revisits.
        min_clear: Least clear fraction of a usable revisit.
        max_gap_days: Farthest allowed distance from the date to the nearest revisit used.
        allow_far: Render beyond ``max_gap_days`` anyway (flagged in the attributes).
        max_mb: Memory budget (MiB) of the in-memory result; a larger one is refused before any
            compute (:func:`run_render` streams any size).
        tile: Render by tiles of this many output pixels a side (default: one tile); the
            result is the same.
        client: A ``distributed.Client`` to predict the tiles on.
        mode: ``"product"`` (default: the output degraded to the cube's grid equals the
            time-interpolated input reflectance, :mod:`stliif.constraint`) or ``"paper"``
            (the model's output as protocol P scores it).

    Returns:
        DataArray (band, y, x) float32 reflectance, ``x``/``y`` pixel centres, CRS and transform
        written; attributes: model, date, scale, revisits used, ``nearest_revisit_days``,
        ``temporal_support`` (``"interpolated"``, ``"extrapolated"`` or ``"at revisit"``),
        ``mode`` and the LR consistency (``consistency_mae``, ``consistency_bias`` per band,
        ``consistency_sam_deg``, ``consistency_shift_px``, ...).

    Raises:
        InvalidInputError: Bad date, scale/gsd, tile, or a date beyond the temporal support.
        NoDataError: No usable revisit.
    """
    support = {"k": k, "clear_fraction": clear_fraction, "max_gap_days": max_gap_days, "allow_far": allow_far}
    da, attrs = _render_memory(model, cube, [date], scale=scale, gsd=gsd, min_clear=min_clear, max_mb=max_mb,
                               tile=tile, client=client, support=support, mode=mode)  # fmt: skip
    out = da.isel(time=0, drop=True)
    out.attrs = attrs[0]
    return out


def render_series(
    model: str | Path | WindowPredictor,
    cube: xr.Dataset,
    dates: Sequence[Any],
    *,
    progress: bool = False,
    **kwargs: Any,
) -> xr.DataArray:
    """:func:`render` at each date, stacked along ``time`` (same grid); per-date support in
    coords. A date beyond the temporal support is rendered only with ``allow_far`` (flagged)."""
    if not dates:
        raise InvalidInputError("no dates to render")
    support: dict[str, Any] = {key: kwargs.pop(key) for key in ("k", "clear_fraction", "max_gap_days", "allow_far") if key in kwargs}
    opts = {"scale": None, "gsd": None, "min_clear": 0.5, "max_mb": 2048.0, "tile": None, "client": None, "mode": "product", **kwargs}
    da, attrs = _render_memory(model, cube, dates, support={"k": 5, "max_gap_days": 30.0, "allow_far": False, **support}, **opts)
    da.attrs = {k: v for k, v in attrs[0].items() if k not in _PER_DATE}
    da.attrs["consistency"] = [{k: a[k] for k in a if k.startswith("consistency_")} for a in attrs]
    return da


@contextlib.contextmanager
def dask_client(address: str | None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client for ``address``: ``None`` (no client: this process), ``"local"`` (a
    LocalCluster of ``workers`` single-threaded processes on 127.0.0.1, closed after) or a
    scheduler's ``tcp://host:port``.

    Raises:
        InvalidInputError: Another address.
        DataAccessError: No scheduler answers at the address.
    """
    if not address:
        yield None
        return
    from distributed import Client, LocalCluster

    if address == "local":
        n = workers or max(1, (os.cpu_count() or 1))
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
            yield client
        return
    if not address.startswith("tcp://"):
        raise InvalidInputError(f"dask must be 'local' or a scheduler address tcp://host:port, got {address!r}")
    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError) as err:
        raise DataAccessError(f"no Dask scheduler answers at {address}: {err}") from err
    with client:
        yield client


@dataclass
class RenderPlan:
    """A checked render request: what :func:`run_render` computes, nothing computed yet."""

    dates: list[np.datetime64]
    cube: xr.Dataset
    clear: np.ndarray | None
    inputs: dict[str, str]
    predictor: WindowPredictor
    scale: float
    out_hw: tuple[int, int]
    tile: int


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
    tile: int | None = None,
    dask: str | None = None,
    workers: int | None = None,
    mode: str = "product",
) -> RenderPlan:
    """Check a render request against the store before any pixel is computed: the AOI's cube,
    the dates (each within the temporal support), scale or gsd, the bbox (inside the cube), the
    model and the tile (sized from ``max_mb`` unless given; never smaller than the model's
    halo). Reads only metadata and the masks. ``aoi`` is a plain AOI (``raw/<aoi>``) or a crop's
    store path (``crop/raw/<aoi>/<name>``). Clear fractions come from ``mask/<aoi>`` when the
    mask stage ran, else from the cube's masks (the same rule); revisits below ``min_clear``
    are not used.

    Raises:
        InvalidInputError: a bad argument, a bbox beyond the cube, a date beyond the support, a
            tile smaller than its halo or a budget too small for any tile.
        NoDataError: the cube is not in the store, or no revisit is usable.
    """
    from stliif.cubes import read_cube
    from stliif.names import aoi_cube_path, is_crop_aoi
    from stliif.preprocess.crop import crop_square
    from stliif.preprocess.mask import clear_fraction

    source = aoi_cube_path(aoi)
    check_mode(mode)
    if (date is None) == (start is None and end is None) or (start is None) != (end is None):
        raise InvalidInputError("give a date, or a start and an end (with a step)")
    if not (isinstance(min_clear, int | float) and 0 <= min_clear <= 1):
        raise InvalidInputError(f"min_clear must be a fraction in [0, 1], got {min_clear!r}")
    if dask is not None and dask != "local" and not str(dask).startswith("tcp://"):
        raise InvalidInputError(f"dask must be 'local' or a scheduler address tcp://host:port, got {dask!r}")
    dates = [_date(date)] if date is not None else series_dates(start, end, step)
    version = store.version(source)
    if version is None:
        how = "make it with `stliif crop`" if is_crop_aoi(aoi) else f"import or acquire it (`stliif etl --aoi {aoi} --stage import`, `stliif acquire`)"
        raise NoDataError(f"{source} is not in the store: {how} first")
    cube = read_cube(store, aoi, load=False)  # lazy: revisits are read one at a time, never the whole cube
    s = _scale(cube, scale, gsd)
    if bbox is not None:
        try:
            cube = crop_square(cube, bbox=bbox)
        except NoDataError as err:
            raise InvalidInputError(f"bbox {tuple(bbox)} is not inside {source}: {err}") from err
    if cube.rio.crs is None:
        raise InvalidInputError("the cube has no CRS: a render must be georeferenced")
    predictor = load_predictor(model)
    out_hw = (max(1, round(s * cube.sizes["y"])), max(1, round(s * cube.sizes["x"])))
    if tile is not None:
        check_tile(predictor, s, tile)
    side = tile or tile_side(predictor, s, k, max_mb, out_hw)
    if dask and tile is None:
        side = _balanced_tile(side, out_hw, (workers or os.cpu_count() or 1) if dask == "local" else 8,
                              math.ceil(predictor.halo(s) * s / 64) * 64)  # fmt: skip
    inputs = {source: version, "model": model_id(model)["sha256"]}
    clear = None
    if store.version(f"mask/{aoi}") is not None:
        clear = np.asarray(store.read(f"mask/{aoi}", load=True)["clear_fraction"].values)
        inputs[f"mask/{aoi}"] = str(store.version(f"mask/{aoi}"))
    elif {"data_mask", "clm"} <= set(cube.data_vars):  # no mask stage yet: the same rule
        clear = np.asarray(clear_fraction(cube).values)
    for d in dates if date is not None else []:  # a series flags far dates, one render refuses them
        temporal_support(cube["time"].values, d, k=k, clear_fraction=clear, min_clear=min_clear,
                         max_gap_days=max_gap_days, allow_far=allow_far)  # fmt: skip
    return RenderPlan(dates, cube, clear, inputs, predictor, s, out_hw, side)


def _balanced_tile(side: int, out_hw: tuple[int, int], n: int, least: int) -> int:
    """A tile side at most ``side`` (and at least ``least``) that gives ``n`` workers at least
    two tiles each and, where a few smaller sides allow it, a multiple of ``n`` tiles."""

    def count(t: int) -> int:
        return math.ceil(out_hw[0] / t) * math.ceil(out_hw[1] / t)

    cands = [max(least, math.ceil(max(out_hw) / k / 64) * 64) for k in range(1, 64)]
    cands = [t for t in dict.fromkeys(cands) if t <= side and count(t) >= 2 * n][:4]
    if not cands:
        return max(least, min(side, 64))
    return next((t for t in cands if count(t) % n == 0), cands[0])


def _scratch(folder: Path, request: dict[str, Any]) -> Path:
    """The scratch folder of a request: kept from an interrupted run of the same request,
    emptied for any other."""
    ident = json.dumps(request, sort_keys=True, default=str)
    marker = folder / "request.json"
    if folder.exists() and (not marker.exists() or marker.read_text() != ident):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(ident)
    return folder


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
    tile: int | None = None,
    dask: str | None = None,
    workers: int | None = None,
    run_id: str | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    mode: str = "product",
) -> dict[str, Any]:
    """Render ``aoi``'s cube (``raw/<aoi>``, or a crop's path ``crop/raw/<aoi>/<name>``) from the
    store at one date or a date range, tile by tile; write the files, commit.

    Tiles (``tile`` output pixels a side, sized from ``max_mb`` by default) are predicted in
    this process or on a Dask cluster (``dask="local"`` with ``workers`` processes, or a
    scheduler's ``tcp://host:port``) and written as they finish to a scratch folder beside the
    files (``.<name>.partial``); a render killed halfway resumes from the finished tiles when
    the same request is run again. One date writes ``<name>.tif`` (a tiled COG with overviews)
    and ``<name>.png``; a range writes ``<name>.gif``, ``<name>.mp4`` and ``<name>-strip.png``.
    The render (``(band, y, x)``, or ``(time, band, y, x)`` for a range; one Zarr chunk per
    tile) is committed once, as ``render/<aoi>/<model>/<name>``, with the model's hash and the
    cube's version as inputs; an identical request commits nothing.

    ``mode`` is ``"product"`` (default) or ``"paper"``, as in :func:`render`.

    Returns:
        ``{"path", "status", "snapshot_id", "files", "attrs", "tile_seconds"}``; attrs include
        ``tiles``, ``tile_px``, ``tiles_resumed``, ``mode`` and the LR consistency
        (``consistency_*``, in the COG's tags too; a series holds one per date in
        ``consistency``); ``tile_seconds`` is the time spent predicting tiles.
    """
    plan = check_render(
        store, aoi, model, date=date, start=start, end=end, step=step, scale=scale, gsd=gsd, bbox=bbox,
        k=k, min_clear=min_clear, max_gap_days=max_gap_days, allow_far=allow_far, max_mb=max_mb, tile=tile,
        dask=dask, workers=workers,
    )  # fmt: skip
    from stliif.names import aoi_cube_path
    from stliif.store import run_key

    cube, dates, predictor = plan.cube, plan.dates, plan.predictor
    mid = model_name(model)
    tag = f"x{scale:g}" if scale is not None else f"gsd{gsd:g}m"
    name = (f"{str(dates[0])[:10]}-{tag}" if date is not None
            else f"{str(dates[0])[:10]}_{str(dates[-1])[:10]}_{step}-{tag}")  # fmt: skip
    params = {"dates": [str(d)[:10] for d in dates], "scale": scale, "gsd": gsd, "bbox": bbox, "k": k,
              "min_clear": min_clear, "max_gap_days": max_gap_days, "allow_far": allow_far, "mode": mode}  # fmt: skip
    out = Path(out_dir) / aoi / mid
    scratch = _scratch(out / f".{name}.partial", {"key": run_key("render", params, plan.inputs), "tile": plan.tile})
    jobs = _jobs(cube, dates, k=k, clear_fraction=plan.clear, min_clear=min_clear, max_gap_days=max_gap_days, allow_far=allow_far)
    model_bands = predictor_bands(predictor)
    bands = render_bands(cube, mode, model_bands)
    lowres = LowRes(cube, np.concatenate([j.idx for j in jobs]), scratch, bands=bands)
    v_mean = _v_mean(predictor)
    for job in jobs:
        lowres.date_stats(job, v_mean=v_mean != "none")
    out_hw, lr_hw = plan.out_hw, lowres.hw
    tiles = plan_tiles(lr_hw, out_hw, plan.tile, predictor.halo(plan.scale))
    sink = ZarrSink(scratch, len(jobs), out_hw, plan.tile, model_bands)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs) * len(tiles), desc="render", unit="tile", disable=None)  # off without a terminal

    def report(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done
            bar.refresh()
        if on_progress is not None:
            on_progress(done, total)

    try:
        with dask_client(dask, workers) as client:
            t0 = time.perf_counter()
            predicted = render_tiles(predictor, jobs, tiles, lowres, sink, out_hw, client=client, progress=report)
            tile_seconds = time.perf_counter() - t0
    finally:
        if bar is not None:
            bar.close()
    final, checks = _finalise_to_zarr(scratch, jobs, tiles, sink, lowres, cube, out_hw, plan.tile, v_mean, mode)
    tr, x, y = _grid(cube, *out_hw)
    attrs = {**_attrs(predictor, model, cube, jobs[0], plan.scale, min_clear, bands), "mode": mode,
             **_consistency_attrs(checks[0])}  # fmt: skip
    if "warning" in attrs:
        warnings.warn(attrs["warning"], UserWarning, stacklevel=2)
    attrs.update(tiles=len(tiles), tile_px=plan.tile, tiles_resumed=len(jobs) * len(tiles) - predicted)
    files = _write_files(final, jobs, tiles, cube, out, name, attrs, tr, single=date is not None)
    import dask.array as dsa

    data = dsa.from_zarr(final)
    coords = {"band": list(bands), "y": y, "x": x}
    if date is not None:
        da = xr.DataArray(data[0], dims=("band", "y", "x"), coords=coords, name="reflectance")
    else:
        da = _series_coords(xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords, name="reflectance"), jobs)
        attrs = {k: v for k, v in attrs.items() if k not in _PER_DATE}
        attrs["consistency"] = [_consistency_attrs(c) for c in checks]
    ds = da.rio.write_crs(cube.rio.crs).rio.write_transform(tr).to_dataset(name="reflectance")
    ds.attrs = {**attrs, "model_sha256": plan.inputs["model"], "source": aoi_cube_path(aoi)}
    path = f"render/{aoi}/{mid}/{name}"
    import dask as dask_mod

    try:
        with dask_mod.config.set(scheduler="threads"):  # the commit reads the scratch here, not on a cluster
            res = store.commit({path: ds}, stage="render", params=params, inputs=plan.inputs, run_id=run_id,
                               chunks={"y": plan.tile, "x": plan.tile})  # fmt: skip
    except BaseException:  # files stand only for what the store holds
        for f in files:
            f.unlink(missing_ok=True)
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    return {"path": path, "status": "committed" if res.created else "unchanged", "snapshot_id": res.snapshot_id,
            "files": [str(f) for f in files], "attrs": attrs, "tile_seconds": tile_seconds}  # fmt: skip


def _finalise_to_zarr(
    scratch: Path, jobs: Sequence[DateJob], tiles: Sequence[Tile], sink: MemorySink, lowres: LowRes,
    cube: xr.Dataset, out_hw: tuple[int, int], tile: int, v_mean: str, mode: str,
) -> tuple[Any, list[dict[str, Any]]]:  # fmt: skip
    """The finished render in ``scratch/final.zarr`` (time, band, y, x), one chunk per tile, and
    each date's LR consistency."""
    import zarr

    c = len(lowres.bands)
    final = zarr.create_array(str(scratch / "final.zarr"), shape=(len(jobs), c, *out_hw), chunks=(1, c, tile, tile),
                              dtype="float32", fill_value=np.nan, overwrite=True, compressors=None)  # fmt: skip
    tr, _, _ = _grid(cube, *out_hw)
    area = Area(lowres, out_hw, tr, _geometry(cube))

    def write(d: int, t: Tile, v: np.ndarray) -> None:
        final[d, :, t.r0 : t.r1, t.c0 : t.c1] = v

    return final, _finalise_dates(jobs, tiles, sink, area, v_mean, write, mode, final)


def _finalise_dates(
    jobs: Sequence[DateJob], tiles: Sequence[Tile], sink: MemorySink, area: Area, v_mean: str,
    write: Callable[[int, Tile, np.ndarray], None], mode: str, output: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """:func:`finalise` every date into ``write``, then measure each date's LR consistency on
    ``output``, what ``write`` filled (:func:`date_consistency`)."""
    checks = []
    for d, job in enumerate(jobs):
        finalise(job, d, tiles, sink, area, v_mean, write, mode)
        checks.append(date_consistency(job, area.lowres, output, d))
    return checks


def decimated(final: Any, d: int, tiles: Sequence[Tile], side: int) -> np.ndarray:
    """``final[d, :, ::step, ::step]`` with the step that brings it to ``side`` pixels at most,
    read tile by tile: memory bounded by the picture and one tile, not by the render."""
    _, _, oh, ow = final.shape
    step = decimate(oh, ow, side)
    out = np.empty((final.shape[1], -(-oh // step), -(-ow // step)), np.float32)
    for t in tiles:
        r, c = -(-t.r0 // step) * step, -(-t.c0 // step) * step  # the tile's first kept row, column
        if r < t.r1 and c < t.c1:
            out[:, r // step : -(-t.r1 // step), c // step : -(-t.c1 // step)] = final[d, :, r : t.r1 : step, c : t.c1 : step]
    return out


def _write_files(
    final: Any, jobs: Sequence[DateJob], tiles: Sequence[Tile], cube: xr.Dataset, out: Path, name: str,
    attrs: dict[str, Any], tr: Any, *, single: bool,
) -> list[Path]:  # fmt: skip
    """The COG and quicklook of one date, or the animations and strip of a series (from a
    decimated read of ``final``: memory bounded by the picture, not by the render)."""
    n, c, oh, ow = final.shape
    bands = tuple(attrs.get("bands", RGB_BANDS))
    band_tags = [{"source": "model"}] * len(RGB_BANDS) + [{"source": attrs.get("nir_source", NIR_SOURCE)}] * (c - len(RGB_BANDS))

    def picture(d: int, side: int) -> xr.DataArray:
        return xr.DataArray(decimated(final, d, tiles, side), dims=("band", "y", "x"), attrs={"uint8_scale": jobs[d].top})

    if single:
        blocks = ((t.r0, t.c0, np.asarray(final[0, :, t.r0 : t.r1, t.c0 : t.c1])) for t in tiles)
        tif = write_cog_blocks(out / f"{name}.tif", blocks, shape=(c, oh, ow), crs=cube.rio.crs, transform=tr,
                               tags=attrs, band_names=bands, band_tags=band_tags)  # fmt: skip
        return [tif, write_quicklook(picture(0, QUICKLOOK_SIDE), out / f"{name}.png")]
    series = xr.concat([picture(d, 640) for d in range(n)], dim="time")
    series = _series_coords(series, jobs)
    series.attrs = {"uint8_scale": jobs[0].top}
    strip = xr.concat([picture(d, 192) for d in range(n)], dim="time")
    strip = _series_coords(strip, jobs)
    strip.attrs = {"uint8_scale": jobs[0].top}
    return [write_animation(series, out / f"{name}.gif"), write_animation(series, out / f"{name}.mp4"),
            write_strip(strip, cube, out / f"{name}-strip.png")]  # fmt: skip
