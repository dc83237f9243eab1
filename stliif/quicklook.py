"""Quicklooks of an acquired cube a person can look at: RGB per date, cloud overlay, DEM
hillshade, a contact sheet of all dates, and any date as a Cloud-Optimised GeoTIFF."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stliif.cog import write_cog
from stliif.errors import InvalidInputError

__all__ = ["contact_sheet", "export_date_cog", "hillshade", "rgb_image", "write_quicklooks"]

log = logging.getLogger(__name__)

RGB = ("B04", "B03", "B02")


def _stretch_top(cube: xr.Dataset) -> float:
    """One display scale for every date: the 99th percentile of clear RGB reflectance."""
    rgb = cube["reflectance"].sel(band=list(RGB)).values
    clear = (cube["clm"].values == 0) & (cube["data_mask"].values == 1)
    vals = rgb.transpose(1, 0, 2, 3)[:, clear]
    vals = vals[np.isfinite(vals)]
    return float(np.percentile(vals, 99)) if vals.size else 0.3


def rgb_image(cube: xr.Dataset, index: int, *, top: float | None = None, clouds: bool = False) -> np.ndarray:
    """An (y, x, 3) uint8 true-colour image of date ``index``; with ``clouds``, cloudy pixels
    tinted red and pixels without data black.

    Raises:
        InvalidInputError: the cube lacks red, green or blue.
    """
    missing = [b for b in RGB if b not in cube["band"].values]
    if missing:
        raise InvalidInputError(f"a quicklook needs red, green and blue; the cube lacks {missing}")
    top = _stretch_top(cube) if top is None else top
    rgb = cube["reflectance"].isel(time=index).sel(band=list(RGB)).values.transpose(1, 2, 0)
    img = np.clip(np.nan_to_num(rgb / max(top, 1e-6)) * 255, 0, 255).astype(np.float32)
    if clouds:
        cloud = cube["clm"].isel(time=index).values == 1
        img[cloud] = 0.5 * img[cloud] + 0.5 * np.array([255, 0, 0], np.float32)
        img[cube["data_mask"].isel(time=index).values == 0] = 0
    return img.round().astype(np.uint8)


def hillshade(dem: np.ndarray, res: float, *, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Hillshade (uint8) of a DEM with pixel size ``res`` (same units as the heights)."""
    z = np.where(np.isfinite(dem), dem, np.nanmean(dem) if np.isfinite(dem).any() else 0.0)
    dy, dx = np.gradient(z, res)
    slope = np.arctan(np.hypot(dx, dy))
    aspect = np.arctan2(-dx, dy)
    az, alt = math.radians(360.0 - azimuth + 90.0), math.radians(altitude)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(shade * 255, 0, 255).astype(np.uint8)


def contact_sheet(cube: xr.Dataset, *, thumb: int = 192, columns: int = 6) -> Any:
    """A PIL image: a thumbnail of every date with its date and clear fraction underneath."""
    from PIL import Image, ImageDraw

    top = _stretch_top(cube)
    n = cube.sizes["time"]
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    h, w = cube.sizes["y"], cube.sizes["x"]
    s = thumb / max(h, w)
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    sheet = Image.new("RGB", (cols * (tw + 8) + 8, rows * (th + 24) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = 8 + c * (tw + 8), 8 + r * (th + 24)
        img = Image.fromarray(rgb_image(cube, i, top=top, clouds=True)).resize((tw, th), Image.Resampling.NEAREST)
        sheet.paste(img, (x0, y0))
        label = f"{str(cube['time'].values[i])[:10]}  clear {float(cube['clear_fraction'].values[i]):.0%}"
        draw.text((x0, y0 + th + 4), label, fill="black")
    return sheet


def write_quicklooks(cube: xr.Dataset, out_dir: str | Path) -> dict[str, list[Path]]:
    """Write ``rgb/<date>.png``, ``clouds/<date>.png``, ``contact_sheet.png`` and, when the
    cube has ``dem``, ``dem_hillshade.png`` under ``out_dir``; return the paths by kind. A cube
    without red, green and blue gets no quicklook (logged), not an error: its data is committed."""
    from PIL import Image

    out = Path(out_dir)
    if any(b not in cube["band"].values for b in RGB):
        log.info("no quicklooks: the cube lacks red, green or blue")
        return {"rgb": [], "clouds": [], "sheet": [], "dem": []}
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "clouds").mkdir(parents=True, exist_ok=True)
    top = _stretch_top(cube)
    files: dict[str, list[Path]] = {"rgb": [], "clouds": [], "sheet": [], "dem": []}
    for i, t in enumerate(cube["time"].values):
        day = str(t)[:10]
        for kind, clouds in (("rgb", False), ("clouds", True)):
            p = out / kind / f"{day}.png"
            Image.fromarray(rgb_image(cube, i, top=top, clouds=clouds)).save(p)
            files[kind].append(p)
    p = out / "contact_sheet.png"
    contact_sheet(cube).save(p)
    files["sheet"].append(p)
    if "dem" in cube:
        res = abs(float(cube.rio.transform().a))
        p = out / "dem_hillshade.png"
        Image.fromarray(hillshade(cube["dem"].values, res)).save(p)
        files["dem"].append(p)
    return files


def export_date_cog(cube: xr.Dataset, date: str, path: str | Path, *, bands: list[str] | None = None) -> Path:
    """Write the reflectance of the date nearest ``date`` (within 1 day) as a float32 COG.

    Raises:
        InvalidInputError: no date of the cube within a day of ``date``, or unknown bands.
    """
    when = np.datetime64(str(date)[:10], "D")
    days = cube["time"].values.astype("datetime64[D]")
    gaps = np.abs((days - when).astype(int))
    i = int(np.argmin(gaps))
    if gaps[i] > 1:
        raise InvalidInputError(f"no date within a day of {date}: the cube has {', '.join(map(str, days))}")
    da = cube["reflectance"].isel(time=i)
    if bands:
        unknown = [b for b in bands if b not in da["band"].values]
        if unknown:
            raise InvalidInputError(f"bands {unknown} not in the cube ({list(da['band'].values)})")
        da = da.sel(band=bands)
    da = da.drop_vars([c for c in da.coords if c not in ("band", "y", "x", "spatial_ref")])
    da.attrs = {"date": str(days[i]), "bands": [str(b) for b in da["band"].values], "units": "reflectance"}
    da = da.rio.write_crs(cube.rio.crs).rio.write_transform(cube.rio.transform())
    return write_cog(da, path)
