"""Tiled rendering: memory bounded by the tile, tiles resumable and spread over Dask workers.

A render's output grid (``round(scale * H) x round(scale * W)`` pixels over the LR cube's
bounds) is cut into square tiles of ``tile`` output pixels (:func:`plan_tiles`). Each tile is
predicted from the LR window around it, widened by the model's halo
(:meth:`~stliif.models.window.WindowPredictor.halo`: its receptive field), so that the mosaic
equals a one-shot render; a one-shot render is the plan with one tile.

What is global to a date is computed from the LR inputs before any tile, by blocks of rows
(:meth:`LowRes.date_stats`): the 8-bit display scale and the mean of ``V = max(R, G, B)`` over
the inputs. The one statistic of the output, its mean ``V`` (the V-mean match of a calibrated
checkpoint), is summed per tile and applied when the tiles are finalised (:func:`finalise`).

Tiles go to a sink as they finish: memory (:class:`MemorySink`) or a Zarr folder with one chunk
per tile and a marker per finished tile (:class:`ZarrSink`), which a rerun of the same request
resumes from. :func:`render_tiles` runs the tiles in this process or on a Dask cluster
(``client``), the predictor sent once to each worker.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from stliif.errors import InvalidInputError, NoDataError
from stliif.models.predictor import predictor_bands, reflectance_to_uint8
from stliif.models.window import Window, WindowPredictor
from stliif.render.request import BYTES_PER_OUTPUT_PIXEL, RGB_BANDS

__all__ = [
    "DateJob",
    "LowRes",
    "MemorySink",
    "Tile",
    "ZarrSink",
    "date_consistency",
    "finalise",
    "plan_tiles",
    "predict_tile",
    "render_tiles",
    "tile_side",
    "tile_window",
]

#: Bytes per LR window pixel and frame of a learned model's encoder (features, residuals,
#: fusion, projection), measured with bench/render_tiles.py, with margin.
MODEL_BYTES_PER_LR_PIXEL_FRAME = 4096
BASELINE_BYTES_PER_LR_PIXEL_FRAME = 64
_BLOCK_BYTES = 8 * 2**20  # LR bytes read at once by the statistics pass
MAX_TILE = 768
"""Largest tile side chosen from a budget: the record model predicts 1024 px tiles about 1.4x
slower per megapixel than 512-768 px ones on 2 cores (bench/render_tiles.py)."""


@dataclass(frozen=True)
class Tile:
    """Output pixels ``[r0, r1) x [c0, c1)`` and the LR window ``[a0, a1) x [b0, b1)`` they need."""

    r0: int
    r1: int
    c0: int
    c1: int
    a0: int
    a1: int
    b0: int
    b1: int

    @property
    def key(self) -> str:
        """Name of the tile in markers: its first output row and column."""
        return f"{self.r0}_{self.c0}"


def plan_tiles(lr_hw: tuple[int, int], out_hw: tuple[int, int], tile: int, halo: int) -> list[Tile]:
    """Tiles of side ``tile`` (output pixels) over ``out_hw``, each with its LR window: the LR
    pixels under the tile plus ``halo`` each side (clipped at the cube's edges)."""
    (h, w), (oh, ow) = lr_hw, out_hw

    def spans(n_out: int, n_lr: int) -> list[tuple[int, int, int, int]]:
        out = []
        for s in range(0, n_out, tile):
            e = min(n_out, s + tile)
            lo, hi = s * n_lr / n_out, e * n_lr / n_out  # the tile's extent in LR pixels
            out.append((s, e, max(0, math.floor(lo) - halo), min(n_lr, math.ceil(hi) + halo)))
        return out

    return [Tile(r0, r1, c0, c1, a0, a1, b0, b1) for r0, r1, a0, a1 in spans(oh, h) for c0, c1, b0, b1 in spans(ow, w)]


def tile_window(t: Tile, lr_hw: tuple[int, int], out_hw: tuple[int, int]) -> Window:
    """The tile's output pixel centres on its LR window's grid."""
    cy, cx = lr_hw[0] / out_hw[0], lr_hw[1] / out_hw[1]
    return Window((np.arange(t.r0, t.r1) + 0.5) * cy - t.a0, (np.arange(t.c0, t.c1) + 0.5) * cx - t.b0, (cy, cx))


def tile_side(predictor: WindowPredictor, scale: float, n_frames: int, max_mb: float, out_hw: tuple[int, int]) -> int:
    """The largest tile side (a multiple of 64 output pixels, at most :data:`MAX_TILE`) whose working memory,
    output pixels and the LR window with its halo, fits in ``max_mb``.

    Raises:
        InvalidInputError: Not even a 64 px tile fits.
    """
    halo = predictor.halo(scale)
    per_lr = (MODEL_BYTES_PER_LR_PIXEL_FRAME if hasattr(predictor, "model") else BASELINE_BYTES_PER_LR_PIXEL_FRAME) * max(1, n_frames)

    def need(side: int) -> float:
        return side * side * BYTES_PER_OUTPUT_PIXEL + (side / scale + 2 * halo + 2) ** 2 * per_lr

    budget = max_mb * 2**20
    if need(64) > budget:
        raise InvalidInputError(f"a tile of 64 px needs about {need(64) / 2**20:.0f} MiB, above the budget of {max_mb:g} MiB: raise max_mb")
    side = 64
    while side < MAX_TILE and need(side + 64) <= budget:
        side += 64
    return min(side, max(64, math.ceil(max(out_hw) / 64) * 64))


def check_tile(predictor: WindowPredictor, scale: float, tile: int) -> None:
    """Refuse a tile whose LR span is smaller than the model's halo (most of the work would be halo).

    Raises:
        InvalidInputError: The tile is smaller than its halo.
    """
    halo = predictor.halo(scale)
    if not isinstance(tile, int) or tile < 1 or tile / scale < halo:
        raise InvalidInputError(
            f"tile {tile!r} px covers {tile / scale if isinstance(tile, int | float) else 0:.0f} LR px, less than the "
            f"model's halo of {halo} LR px: use a tile of at least {math.ceil(halo * scale)} px"
        )


@dataclass
class DateJob:
    """One date of a render: the revisits it uses and its global statistics."""

    when: Any
    idx: np.ndarray
    used: np.ndarray
    gaps: np.ndarray
    nearest: float
    support: str
    top: float = math.nan
    ref_v: float = math.nan
    nir_top: float = math.nan

    def scales(self, c: int) -> np.ndarray:
        """Reflectance at 255 for each of ``c`` bands: R, G, B at :attr:`top`, NIR at :attr:`nir_top`."""
        return np.array([self.top] * 3 + [self.nir_top] * (c - 3), dtype=np.float64)


class LowRes:
    """The reflectance (``bands``: R, G, B first, then NIR for a four-band render), clear masks
    and area of the revisits a render uses, read by windows. The model and the date's display
    statistics see R, G, B only.

    Held in memory, or copied once, one revisit at a time, into a Zarr group at ``scratch``
    (read back by windows; a resumed render finds the copy done).
    """

    def __init__(self, cube: xr.Dataset, idx: Sequence[int] | np.ndarray, scratch: Path | None = None,
                 bands: Sequence[str] = RGB_BANDS) -> None:  # fmt: skip
        if "reflectance" not in cube:
            raise InvalidInputError("the cube has no 'reflectance' variable (an LR cube, raw/<aoi>, is needed)")
        if tuple(bands)[:3] != RGB_BANDS:
            raise InvalidInputError(f"a render's bands start with {RGB_BANDS}, got {tuple(bands)}")
        self.bands = tuple(str(b) for b in bands)
        missing = sorted(set(self.bands) - {str(b) for b in cube["band"].values})
        if missing:
            raise InvalidInputError(f"the cube lacks bands {missing}")
        self.union = sorted({int(i) for i in idx})
        self.pos = {t: p for p, t in enumerate(self.union)}
        self.hw = (cube.sizes["y"], cube.sizes["x"])
        self.has_clear = {"data_mask", "clm"} <= set(cube.data_vars)
        if scratch is None:
            self.rgb: Any = np.stack([self._rgb(cube, t, self.bands) for t in self.union])
            self.clear: Any = np.stack([self._clear(cube, t) for t in self.union])
            self.area: Any = self._area(cube)
        else:
            self.rgb, self.clear, self.area = self._copy(cube, scratch)

    @staticmethod
    def _rgb(cube: xr.Dataset, t: int, bands: Sequence[str]) -> np.ndarray:
        refl = cube["reflectance"].isel(time=t).sel(band=list(bands)).transpose("y", "x", "band")
        return np.asarray(refl.values, dtype=np.float32)

    def _clear(self, cube: xr.Dataset, t: int) -> np.ndarray:
        if not self.has_clear:
            return np.zeros(self.hw, bool)
        from stliif.preprocess.mask import clear_mask

        return np.asarray(clear_mask(cube.isel(time=[t])).values[0], dtype=bool)

    @staticmethod
    def _area(cube: xr.Dataset) -> np.ndarray:
        if "data_mask" not in cube:
            return np.ones((cube.sizes["y"], cube.sizes["x"]), bool)
        from stliif.preprocess.mask import area_mask

        return np.asarray(area_mask(cube).values, dtype=bool)

    def _copy(self, cube: xr.Dataset, scratch: Path) -> tuple[Any, Any, Any]:
        import zarr

        path = scratch / "lowres.zarr"
        done = scratch / "lowres.done"
        if done.exists():
            g = zarr.open_group(str(path), mode="r")
            return g["rgb"], g["clear"], g["area"]
        h, w = self.hw
        g = zarr.open_group(str(path), mode="w")
        c = len(self.bands)
        rgb = g.create_array("rgb", shape=(len(self.union), h, w, c), chunks=(1, 512, 512, c), dtype="float32", compressors=None)
        clear = g.create_array("clear", shape=(len(self.union), h, w), chunks=(1, 512, 512), dtype="bool", compressors=None)
        for p, t in enumerate(self.union):
            rgb[p] = self._rgb(cube, t, self.bands)
            clear[p] = self._clear(cube, t)
        area = g.create_array("area", shape=(h, w), chunks=(512, 512), dtype="bool", compressors=None)
        area[:] = self._area(cube)
        done.touch()
        return rgb, clear, area

    def window(self, idx: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """``(T, h, w, C)`` float32 reflectance (:attr:`bands`) of revisits ``idx`` over the window,
        each missing pixel filled with the median of the others at that pixel (0 where none has data)."""
        f = np.stack([np.asarray(self.rgb[self.pos[int(t)], rows, cols]) for t in idx]).astype(np.float32)
        bad = ~np.isfinite(f)
        where = bad.any(axis=(0, 3))  # pixels with a gap on some date: only those need the median
        if where.any():
            sub = np.where(bad[:, where], np.nan, f[:, where])  # (T, n, C)
            f[:, where] = np.where(np.isfinite(sub), sub, _nanmedian0(sub)[None])
        return f

    def _blocks(self) -> Iterator[slice]:
        h, w = self.hw
        rows = max(1, _BLOCK_BYTES // max(1, len(self.union) * w * len(self.bands) * 4))
        for a in range(0, h, rows):
            yield slice(a, min(h, a + rows))

    def date_stats(self, job: DateJob, *, v_mean: bool) -> None:
        """Set ``job.top`` (the brightest clear pixel of the revisits used in R, G, B, at least the
        maximum of their temporal median, so no clear pixel is clipped), ``job.nir_top`` (the same
        rule on NIR, for a four-band render) and, with ``v_mean``, ``job.ref_v`` (the mean of
        ``V = max(R, G, B)`` over their 8-bit frames)."""
        groups = [slice(0, 3)] + ([slice(3, 4)] if len(self.bands) > 3 else [])
        med_max, clear_max, all_max = (np.full(len(groups), -math.inf) for _ in range(3))
        cols = slice(0, self.hw[1])
        for rows in self._blocks():
            w = self.window(job.idx, rows, cols)
            c = np.stack([np.asarray(self.clear[self.pos[int(t)], rows, cols]) for t in job.idx]) if self.has_clear else None
            for g, band in enumerate(groups):
                f = w[..., band]
                med_max[g] = max(med_max[g], float(np.median(f, axis=0).max()))
                all_max[g] = max(all_max[g], float(f.max()))
                if c is not None and c.any():
                    clear_max[g] = max(clear_max[g], float(f[c].max()))
        if not med_max[0] > 0:
            raise NoDataError("frames have no positive reflectance: no uint8 scale")
        tops = [max(m, cm if cm > -math.inf else am) for m, cm, am in zip(med_max, clear_max, all_max, strict=True)]
        job.top = tops[0]
        if len(tops) > 1:
            job.nir_top = tops[1] if tops[1] > 0 else 1.0  # a NIR of zeros: any positive scale
        if v_mean:
            total, count = 0.0, 0
            for rows in self._blocks():
                u = reflectance_to_uint8(self.window(job.idx, rows, cols)[..., :3], job.top)
                total += float(u.max(axis=-1).sum(dtype=np.float64))
                count += u.shape[0] * u.shape[1] * u.shape[2]
            job.ref_v = total / count

    def frames(self, job: DateJob, t: Tile, bands: int = 3) -> np.ndarray:
        """The 8-bit ``(T, h, w, bands)`` window of a tile (the model's input): R, G, B on the
        date's display scale, and for a four-band model NIR on its own (:meth:`DateJob.scales`)."""
        return reflectance_to_uint8(self.window(job.idx, slice(t.a0, t.a1), slice(t.b0, t.b1))[..., :bands], job.scales(bands))


def _nanmedian0(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=0)``, 0 where every value is NaN, without numpy's warning per pixel."""
    n = np.isfinite(a).sum(axis=0)[None]
    srt = np.sort(a, axis=0)  # NaN last: the n valid values first
    lo = np.take_along_axis(srt, np.maximum((n - 1) // 2, 0), axis=0)[0]
    hi = np.take_along_axis(srt, n // 2 if a.shape[0] > 1 else n * 0, axis=0)[0]
    return np.where(n[0] > 0, (lo + hi) / np.float32(2), 0).astype(a.dtype)


class MemorySink:
    """Raw tiles (float32, 0..255 units, before calibration) in one in-memory array; ``c`` bands
    (the model's: 3, or 4 for a four-band model)."""

    def __init__(self, n_dates: int, out_hw: tuple[int, int], c: int = 3) -> None:
        self.raw = np.full((n_dates, c, *out_hw), np.nan, np.float32)
        self.vsum: dict[tuple[int, str], float] = {}

    def has(self, d: int, t: Tile) -> bool:
        return (d, t.key) in self.vsum

    def put(self, d: int, t: Tile, raw: np.ndarray) -> None:
        self.raw[d, :, t.r0 : t.r1, t.c0 : t.c1] = raw
        self._mark(d, t, float(raw[:3].max(axis=0).sum(dtype=np.float64)))  # V = max(R, G, B)

    def _mark(self, d: int, t: Tile, vsum: float) -> None:
        self.vsum[(d, t.key)] = vsum

    def get(self, d: int, t: Tile) -> np.ndarray:
        return np.asarray(self.raw[d, :, t.r0 : t.r1, t.c0 : t.c1])

    def window(self, d: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Raw output rows ``[rows)`` and columns ``[cols)`` of date ``d``, across tiles."""
        return np.asarray(self.raw[d, :, rows[0] : rows[1], cols[0] : cols[1]])

    def mean_v(self, d: int, n_pixels: int) -> float:
        return sum(v for (dd, _), v in self.vsum.items() if dd == d) / n_pixels


class ZarrSink(MemorySink):
    """Raw tiles in a Zarr array on disk, one chunk per tile, a JSON marker per finished tile:
    a render killed at any point resumes from the tiles whose marker exists."""

    def __init__(self, folder: Path, n_dates: int, out_hw: tuple[int, int], tile: int, c: int = 3) -> None:
        import zarr

        self.folder = folder
        self.marks = folder / "done"
        self.marks.mkdir(parents=True, exist_ok=True)
        path = str(folder / "raw.zarr")
        shape, chunks = (n_dates, c, *out_hw), (1, c, tile, tile)
        try:
            raw = zarr.open_array(path, mode="r+")
            if raw.shape != shape or raw.chunks != chunks:
                raise ValueError("another layout")
        except (FileNotFoundError, ValueError, KeyError):
            raw = zarr.create_array(path, shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan, overwrite=True,
                                    compressors=None)  # scratch: speed over size
            shutil.rmtree(self.marks)
            self.marks.mkdir()
        self.raw = raw  # type: ignore[assignment]
        self.vsum = {}
        for f in self.marks.glob("*.json"):
            d, key = f.stem.split("-", 1)
            self.vsum[(int(d), key)] = float(json.loads(f.read_text())["vsum"])

    def _mark(self, d: int, t: Tile, vsum: float) -> None:
        tmp = self.marks / f".{d}-{t.key}.tmp"
        tmp.write_text(json.dumps({"vsum": vsum}))
        os.replace(tmp, self.marks / f"{d}-{t.key}.json")  # the chunk is written before its marker
        self.vsum[(d, t.key)] = vsum


def predict_tile(predictor: WindowPredictor, frames: np.ndarray, window: Window, dates: np.ndarray, when: Any) -> np.ndarray:
    """One tile: ``(C, ny, nx)`` float32, ``C`` the frames' bands (runs on Dask workers too)."""
    out = np.asarray(predictor.predict_window(frames, window, dates=dates, target_date=when), dtype=np.float32)
    if out.shape != (*window.shape, frames.shape[-1]):
        from stliif.errors import ModelError

        raise ModelError(f"the model returned {out.shape} for a tile, expected {(*window.shape, frames.shape[-1])}")
    return np.ascontiguousarray(out.transpose(2, 0, 1))


@functools.cache
def _libc() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


def _trim() -> None:
    """Give the heap's free pages back to the system after a tile (glibc): without it a tile's
    freed temporaries fragment the heap and the peak grows over the first tiles."""
    with contextlib.suppress(OSError, AttributeError):
        if _libc() is not None:
            _libc().malloc_trim(0)


def render_tiles(
    predictor: WindowPredictor,
    jobs: Sequence[DateJob],
    tiles: Sequence[Tile],
    lowres: LowRes,
    sink: MemorySink,
    out_hw: tuple[int, int],
    *,
    client: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Predict every (date, tile) the sink lacks, in this process or on ``client``'s workers
    (at most two tiles in flight per worker, the predictor sent once to each). Returns
    the number of tiles predicted (the others were resumed)."""
    todo = [(d, t) for d in range(len(jobs)) for t in tiles if not sink.has(d, t)]
    total, done = len(jobs) * len(tiles), len(jobs) * len(tiles) - len(todo)
    if progress:
        progress(done, total)

    def args(d: int, t: Tile) -> tuple[np.ndarray, Window, np.ndarray, Any]:
        return lowres.frames(jobs[d], t, predictor_bands(predictor)), tile_window(t, lowres.hw, out_hw), jobs[d].used, jobs[d].when

    if client is None:
        for d, t in todo:
            sink.put(d, t, predict_tile(predictor, *args(d, t)))
            _trim()
            done += 1
            if progress:
                progress(done, total)
        return len(todo)
    import uuid

    from distributed import as_completed

    from stliif.render.workers import Install, predict_installed

    key = uuid.uuid4().hex
    client.register_plugin(Install(key, predictor), name=f"stliif-render-{key}")  # once per worker
    try:
        limit = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        pending = iter(todo)
        futures = {}
        for d, t in pending:
            futures[client.submit(predict_installed, key, predict_tile, *args(d, t), pure=False)] = (d, t)
            if len(futures) >= limit:
                break
        queue = as_completed(list(futures))
        for fut in queue:
            d, t = futures.pop(fut)
            sink.put(d, t, fut.result())
            fut.release()
            done += 1
            if progress:
                progress(done, total)
            nxt = next(pending, None)
            if nxt is not None:
                new = client.submit(predict_installed, key, predict_tile, *args(*nxt), pure=False)
                futures[new] = nxt
                queue.add(new)
    finally:
        client.unregister_worker_plugin(f"stliif-render-{key}")
    return len(todo)


@dataclass
class Area:
    """Where a render has data: the LR area (nearest LR pixel) within an optional polygon."""

    lowres: LowRes
    out_hw: tuple[int, int]
    transform: Affine
    shape: Any = None

    def tile(self, t: Tile) -> np.ndarray:
        """Boolean ``(ny, nx)``: the tile's pixels inside the area."""
        (h, w), (oh, ow) = self.lowres.hw, self.out_hw
        rows = np.minimum((np.arange(t.r0, t.r1) + 0.5) * h // oh, h - 1).astype(int)
        cols = np.minimum((np.arange(t.c0, t.c1) + 0.5) * w // ow, w - 1).astype(int)
        a0, b0 = int(rows.min()), int(cols.min())
        block = np.asarray(self.lowres.area[a0 : int(rows.max()) + 1, b0 : int(cols.max()) + 1], dtype=bool)
        inside = block[np.ix_(rows - a0, cols - b0)]
        if self.shape is not None:
            from rasterio.features import geometry_mask

            tr = self.transform * Affine.translation(t.c0, t.r0)
            inside &= geometry_mask([self.shape], out_shape=inside.shape, transform=tr, invert=True)
        return inside


def finalise(
    job: DateJob,
    d: int,
    tiles: Sequence[Tile],
    sink: MemorySink,
    area: Area,
    v_mean: str,
    write: Callable[[int, Tile, np.ndarray], None],
    mode: str = "product",
) -> None:
    """Calibrate, scale and mask every tile of date ``d``: the output's mean ``V`` matched to the
    inputs' (``v_mean`` ``"add"`` or ``"mul"``, over the whole output, on R, G, B), clipped to
    0..255, mapped back to reflectance with the date's scales (:meth:`DateJob.scales`); in ``"product"`` mode the
    low-frequency constraint (:mod:`stliif.constraint`) on a window around each tile,
    then clipped at 0; NaN outside the area; each tile handed to ``write(d, tile, values
    (C, ny, nx))``. A band beyond the model's R, G, B (the NIR of a four-band render,
    ``area.lowres.bands``) is the constraint of a zero output: the inputs' low frequencies, no
    model detail (:data:`stliif.render.request.NIR_SOURCE`).

    The LR target is read per tile, on the tile's LR window widened by the constraint's margin.
    The date's consistency is measured afterwards on what was written (:func:`date_consistency`).
    """
    from stliif.constraint import check_mode, constrain_window, lr_target, window_rows

    check_mode(mode)
    n = area.out_hw[0] * area.out_hw[1]
    cur = sink.mean_v(d, n) if v_mean != "none" else 0.0
    (h, w), out_hw = area.lowres.hw, area.out_hw

    def calibrate(raw: np.ndarray) -> np.ndarray:
        raw = raw.astype(np.float64)
        if v_mean == "add":
            raw[:3] += job.ref_v - cur
        elif v_mean == "mul" and cur > 0:
            raw[:3] *= job.ref_v / cur
        return np.clip(raw, 0.0, 255.0) * (job.scales(raw.shape[0]) / 255.0)[:, None, None]

    for t in tiles:
        rows, cols = window_rows(t.r0, t.r1, out_hw[0], h), window_rows(t.c0, t.c1, out_hw[1], w)
        lr_rows, lr_cols = slice(rows[2], rows[3]), slice(cols[2], cols[3])
        if mode == "product":
            local = lr_target(area.lowres.window(job.idx, lr_rows, lr_cols), job.used, job.when)  # per pixel: window-local
            y = calibrate(sink.window(d, rows[:2], cols[:2])).transpose(1, 2, 0)
            if local.shape[2] > y.shape[2]:  # NIR of an RGB model: no detail, the constraint alone
                y = np.concatenate([y, np.zeros((*y.shape[:2], local.shape[2] - y.shape[2]))], axis=2)
            fixed = constrain_window(y, local, rows, cols, out_hw, (h, w))
            fixed = fixed[t.r0 - rows[0] : t.r1 - rows[0], t.c0 - cols[0] : t.c1 - cols[0]]
            values = np.maximum(fixed, 0.0).transpose(2, 0, 1).astype(np.float32)
        else:
            values = calibrate(sink.get(d, t)).astype(np.float32)
        values[:, ~area.tile(t)] = np.nan
        write(d, t, values)


CONSISTENCY_BLOCK_PX = 1024
"""Output pixels a side (about) of the blocks :func:`date_consistency` reads the output by."""


def date_consistency(job: DateJob, lowres: LowRes, output: Any, d: int, block: int | None = None) -> dict[str, Any]:
    """The consistency of a date's finished output with its LR target (the revisits interpolated
    in time at the date, :func:`stliif.constraint.lr_target`), as
    :func:`stliif.consistency.consistency` defines it, over the LR pixels whose every member
    (:func:`stliif.consistency.members`) is finite: date ``d`` of ``output`` (``(time, band, y,
    x)``, an array or a Zarr array) is read and degraded ``block`` LR pixels a side at a time
    (by default the LR pixels of about :data:`CONSISTENCY_BLOCK_PX` output pixels), the sums
    carried from block to block, so memory is bounded by a block, not by the render.
    The spatial shift is measured on the block that holds the grid's centre (the whole grid
    when it is one block). With four bands (R, G, B, NIR), ``ndvi_mae`` is the mean absolute
    difference between the block mean of the output's per-pixel NDVI and the target's NDVI
    (:func:`stliif.consistency.ndvi`), over the LR pixels where both are defined; NaN otherwise."""
    from stliif.consistency import members, ndvi, spatial_shift
    from stliif.constraint import lr_target

    (h, w), c = lowres.hw, int(output.shape[1])
    my, mx = members(output.shape[2], h), members(output.shape[3], w)
    block = block or max(8, CONSISTENCY_BLOCK_PX * h // output.shape[2])
    n, sx, sy, sxx, syy, sxy, angles, n_angles = 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0
    abs_sum, diff_sum = np.zeros(c), np.zeros(c)
    ndvi_abs, ndvi_n = 0.0, 0
    shift = math.nan
    for a in range(0, h, block):
        for b in range(0, w, block):
            rows, cols = slice(a, min(h, a + block)), slice(b, min(w, b + block))
            r0, r1 = (int(v) for v in np.searchsorted(my, [a, rows.stop]))
            c0, c1 = (int(v) for v in np.searchsorted(mx, [b, cols.stop]))
            out = np.asarray(output[d, :, r0:r1, c0:c1], np.float32).transpose(1, 2, 0)  # summed in float64
            bh, bw = rows.stop - a, cols.stop - b
            sums, counts, size = np.zeros((bh, bw, c)), np.zeros((bh, bw, c)), np.zeros((bh, bw, 1))
            at = (my[r0:r1, None] - a, mx[None, c0:c1] - b)
            ok = np.isfinite(out)
            np.add.at(sums, at, np.where(ok, out, 0.0))
            np.add.at(counts, at, ok)
            np.add.at(size, at, 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                deg = np.where(counts == size, sums / np.maximum(counts, 1), np.nan)
            target = lr_target(lowres.window(job.idx, rows, cols), job.used, job.when)[..., :c]
            both = np.isfinite(deg).all(axis=2) & np.isfinite(target).all(axis=2)
            if c == 4:  # the output's NDVI, block-mean, against the inputs'
                nd, nd_n = np.zeros((bh, bw)), np.zeros((bh, bw))
                v = ndvi(out[..., 0], out[..., 3])
                np.add.at(nd, at, np.where(np.isfinite(v), v, 0.0))
                np.add.at(nd_n, at, np.isfinite(v))
                with np.errstate(invalid="ignore", divide="ignore"):
                    err = np.abs(np.where(nd_n == size[..., 0], nd / np.maximum(nd_n, 1), np.nan) - ndvi(target[..., 0], target[..., 3]))
                ok_nd = both & np.isfinite(err)
                ndvi_abs, ndvi_n = ndvi_abs + float(err[ok_nd].sum()), ndvi_n + int(ok_nd.sum())
            if a <= h // 2 < rows.stop and b <= w // 2 < cols.stop and both.any():
                shift = float(math.hypot(*spatial_shift(deg, target)))
            x, y = deg[both], target[both]
            n += len(x)
            abs_sum += np.abs(x - y).sum(axis=0)
            diff_sum += (x - y).sum(axis=0)
            sx, sy, sxx, syy, sxy = sx + x.sum(), sy + y.sum(), sxx + (x * x).sum(), syy + (y * y).sum(), sxy + (x * y).sum()
            nx, ny = np.sqrt((x * x).sum(axis=1)), np.sqrt((y * y).sum(axis=1))  # the spectral angle, as metrics.sam
            keep = (nx > 1e-12) & (ny > 1e-12)
            cos = np.clip((x * y).sum(axis=1)[keep] / (nx * ny)[keep], -1.0, 1.0)
            angles, n_angles = angles + float(np.degrees(np.arccos(cos)).sum()), n_angles + int(keep.sum())
    if n == 0:
        nan3 = [math.nan] * c
        return {"mae": math.nan, "bias": nan3, "mae_band": nan3, "corr": math.nan, "sam": math.nan, "shift_px": shift,
                "ndvi_mae": math.nan}  # fmt: skip
    m = n * c  # Pearson's correlation of all values, from the sums
    vx, vy = sxx - sx * sx / m, syy - sy * sy / m
    corr = float((sxy - sx * sy / m) / math.sqrt(vx * vy)) if vx > 0 and vy > 0 else math.nan
    return {"mae": float(abs_sum.sum() / m), "mae_band": [float(v) for v in abs_sum / n],
            "bias": [float(v) for v in diff_sum / n], "corr": corr,
            "sam": angles / n_angles if n_angles else math.nan, "shift_px": shift,
            "ndvi_mae": ndvi_abs / ndvi_n if ndvi_n else math.nan}  # fmt: skip
