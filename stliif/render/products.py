"""What people open from a render: an 8-bit PNG quicklook, animations, a strip beside the revisits.

Each takes a render small enough to look at (a render's own array, or its decimated copy for
large areas: :func:`decimate`); the georeferenced product is the COG (:mod:`stliif.cog`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stliif.errors import DataAccessError, InvalidInputError
from stliif.models.predictor import reflectance_to_uint8
from stliif.render.request import RGB_BANDS

__all__ = ["decimate", "write_animation", "write_quicklook", "write_strip"]


def decimate(n_rows: int, n_cols: int, max_side: int) -> int:
    """The stride that brings ``n_rows x n_cols`` to at most ``max_side`` pixels a side."""
    return max(1, math.ceil(max(n_rows, n_cols) / max_side))


def _display(values: np.ndarray, top: float) -> np.ndarray:
    """(band, y, x) reflectance -> (y, x, 3) uint8 of R, G, B (the first three bands; a NIR band
    is not shown) with the render's own 8-bit scale (NaN: black)."""
    return reflectance_to_uint8(np.moveaxis(np.asarray(values)[:3], 0, -1), top)


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
        real = np.asarray(cube["reflectance"].isel(time=j).sel(band=list(RGB_BANDS)).transpose("y", "x", "band").values, np.float32)
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
