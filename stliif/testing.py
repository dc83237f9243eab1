"""Synthetic cubes for tests and examples, no network.

:func:`grid_cube` builds a plain georeferenced ``(time, band, y, x)`` cube on a given grid.
:func:`synthetic_cube` builds what :func:`stliif.acquire.run_acquire` commits for a polygon area
(see :mod:`stliif.acquire`): ``reflectance`` (time, band, y, x) float32, NaN where no data;
``scl``, ``clm``, ``data_mask`` (time, y, x) uint8; along ``time`` the coordinates ``provider``,
``item_id``, ``cloud_cover``, ``clear_fraction``, ``processing_baseline``,
``reflectance_offset`` and ``revisit``; CRS and transform (UTM); attributes ``aoi``, ``source``
and ``geometry`` (the area, GeoJSON in lon/lat). Pixels outside the polygon have
``data_mask`` 0 and NaN reflectance; clouds (SCL 9, CLM 1) cover a chosen fraction of the
polygon's pixels on each date. Acquisition times carry the hour (10:30 UTC), as real ones do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

__all__ = ["SYNTHETIC_BANDS", "CountingBaseline", "districts_zip", "grid_cube", "polygon_area", "synthetic_cube", "write_items"]

SYNTHETIC_BANDS = ("B02", "B03", "B04", "B08")
_CRS = "EPSG:32631"
_ORIGIN = (430000.0, 4590000.0)  # UTM 31N, near Barcelona


def grid_cube(
    transform: Affine,
    shape: tuple[int, int],
    crs: str = "EPSG:4326",
    *,
    times: int | Sequence[str] = 2,
    bands: Sequence[str] = ("b1", "b2"),
    reflectance: np.ndarray | None = None,
    masks: dict[str, np.ndarray] | None = None,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """A north-up ``reflectance`` (time, band, y, x) float32 cube with pixel-centre coordinates,
    CRS and transform.

    Args:
        transform: The grid's affine transform (north-up).
        shape: ``(height, width)`` in pixels.
        crs: The grid's CRS.
        times: A number of steps (coordinate 0, 1, ...) or ISO dates.
        bands: Band names.
        reflectance: The values (default: ``arange`` over the whole cube, every pixel distinct).
        masks: Extra ``(time, y, x)`` variables, e.g. ``{"data_mask": ..., "clm": ...}``.
        attrs: The dataset's attributes.
    """
    h, w = shape
    time = np.arange(times) if isinstance(times, int) else np.array(list(times), dtype="datetime64[ns]")
    n, nb = len(time), len(bands)
    refl = np.arange(n * nb * h * w, dtype=np.float32).reshape(n, nb, h, w) if reflectance is None else reflectance
    ds = xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), np.asarray(refl, np.float32)),
         **{k: (("time", "y", "x"), v) for k, v in (masks or {}).items()}},
        coords={"time": time, "band": list(bands),
                "y": transform.f + transform.e * (np.arange(h) + 0.5),
                "x": transform.c + transform.a * (np.arange(w) + 0.5)},
        attrs=dict(attrs or {}),
    )  # fmt: skip
    return ds.rio.write_crs(crs).rio.write_transform(transform)


def polygon_area(h: int, w: int, res: float = 10.0) -> list[tuple[float, float]]:
    """The area's polygon in the grid's CRS (a pentagon inside an ``h`` x ``w`` grid), vertices
    as (x, y) metres; it leaves the grid's corners outside."""
    x0, y0 = _ORIGIN
    fx = [0.5, 0.95, 0.8, 0.2, 0.05]
    fy = [0.05, 0.4, 0.95, 0.95, 0.4]
    return [(x0 + a * w * res, y0 - b * h * res) for a, b in zip(fx, fy, strict=True)]


def _geometry_lonlat(h: int, w: int, res: float) -> dict[str, Any]:
    from pyproj import Transformer

    tr = Transformer.from_crs(_CRS, "EPSG:4326", always_xy=True)
    ring = [tr.transform(x, y) for x, y in polygon_area(h, w, res)]
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in ring]]}


def synthetic_cube(
    aoi: str = "synthetic-area",
    *,
    h: int = 24,
    w: int = 20,
    res: float = 10.0,
    dates: Sequence[str] = ("2024-03-01", "2024-03-11", "2024-03-21", "2024-03-31"),
    cloud: Sequence[float] = (0.0, 0.3, 0.9, 0.0),
    seed: int = 0,
) -> xr.Dataset:
    """A ``raw/<aoi>`` cube in the acquire schema over a polygon area (see the module docstring).

    Args:
        aoi: The cube's ``aoi`` attribute.
        h, w: Grid size in pixels; res: pixel size in metres.
        dates: Acquisition days (each at 10:30 UTC).
        cloud: Fraction of the polygon's pixels under cloud on each date (top rows first).
        seed: Seed of the reflectance texture.

    Returns:
        The cube, loaded (numpy-backed); ``clear_fraction`` = clear pixels / pixels in the area.
    """
    from rasterio.features import geometry_mask

    if len(cloud) != len(dates):
        raise ValueError("one cloud fraction per date")
    rng = np.random.default_rng(seed)
    x0, y0 = _ORIGIN
    tr = Affine(res, 0.0, x0, 0.0, -res, y0)
    inside = geometry_mask([{"type": "Polygon", "coordinates": [polygon_area(h, w, res)]}], out_shape=(h, w),
                           transform=tr, invert=True)  # fmt: skip
    n, nb = len(dates), len(SYNTHETIC_BANDS)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.04 + 0.003 * yy + 0.002 * xx + 0.01 * rng.random((h, w))
    refl = np.empty((n, nb, h, w), np.float32)
    scl = np.full((n, h, w), 4, np.uint8)  # vegetation
    clm = np.zeros((n, h, w), np.uint8)
    pix = np.argwhere(inside)  # row-major: top rows first
    for t in range(n):
        for b in range(nb):
            refl[t, b] = base * (1.0 + 0.15 * b) + 0.01 * t
        k = round(cloud[t] * len(pix))
        if k:
            r, c = pix[:k].T
            scl[t, r, c], clm[t, r, c] = 9, 1
            refl[t, :, r, c] = 0.6
    data_mask = np.broadcast_to(inside, (n, h, w)).astype(np.uint8)
    refl = np.where(inside[None, None], refl, np.nan).astype(np.float32)
    scl = np.where(inside[None], scl, 0).astype(np.uint8)
    clear = (data_mask == 1) & (clm == 0)
    times = np.array([np.datetime64(f"{d}T10:30:00") for d in dates], dtype="datetime64[ns]")
    ds = xr.Dataset(
        {
            "reflectance": (("time", "band", "y", "x"), refl, {"nodata": "NaN"}),
            "scl": (("time", "y", "x"), scl),
            "clm": (("time", "y", "x"), clm),
            "data_mask": (("time", "y", "x"), data_mask),
        },
        coords={
            "time": times,
            "band": list(SYNTHETIC_BANDS),
            "y": y0 - res * (np.arange(h) + 0.5),
            "x": x0 + res * (np.arange(w) + 0.5),
            "provider": ("time", ["synthetic"] * n),
            "item_id": ("time", [f"S2X_MSIL2A_{d.replace('-', '')}T103000_{aoi}" for d in dates]),
            "cloud_cover": ("time", [float(100 * c) for c in cloud]),
            "clear_fraction": ("time", (clear.sum((1, 2)) / inside.sum()).astype(np.float32)),
            "processing_baseline": ("time", ["05.10"] * n),
            "reflectance_offset": ("time", np.full(n, -0.1, np.float32)),
            "revisit": ("time", np.arange(1, n + 1, dtype=np.int16)),
        },
        attrs={
            "aoi": aoi,
            "source": "synthetic",
            "geometry": _geometry_lonlat(h, w, res),
            "reflectance_units": "surface reflectance (harmonised: DN x scale + offset)",
        },
    )
    return ds.rio.write_crs(_CRS).rio.write_transform(tr)


def write_items(cube: xr.Dataset, folder: Any, *, scale: float = 1e-4) -> list[Any]:
    """Write a :func:`synthetic_cube` as one harmonised STAC item per date over local GeoTIFFs
    (a band file per band, DN = (reflectance - offset) / ``scale``, 0 = no data, and ``SCL``),
    as :func:`stliif.acquire.search` would return them for :func:`stliif.sources.load.load_cube`."""
    import datetime as dt
    from pathlib import Path

    import pystac
    import rasterio
    from pyproj import Transformer

    from stliif.sources.stac import HARMONISATION, PROVIDER

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    h, w = cube.sizes["y"], cube.sizes["x"]
    tr, crs = cube.rio.transform(), str(cube.rio.crs)
    left, bottom, right, top = cube.rio.bounds()
    lon0, lat0, lon1, lat1 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform_bounds(left, bottom, right, top)
    footprint = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}
    items = []
    for t in range(cube.sizes["time"]):
        c = cube.isel(time=t)
        offset = float(c["reflectance_offset"])
        when = dt.datetime.fromisoformat(str(c["time"].values)[:19]).replace(tzinfo=dt.UTC)
        item = pystac.Item(str(c["item_id"].values), footprint, [lon0, lat0, lon1, lat1], when, {
            "eo:cloud_cover": float(c["cloud_cover"]),
            "s2:processing_baseline": str(c["processing_baseline"].values),
            PROVIDER: str(c["provider"].values),
            HARMONISATION: {"reflectance_scale": scale, "reflectance_offset": offset},
            "proj:epsg": int(crs.split(":")[1]), "proj:shape": [h, w], "proj:transform": list(tr)[:6],
        })
        layers: dict[str, tuple[np.ndarray, str]] = {}
        for b in cube["band"].values:
            refl = c["reflectance"].sel(band=b).values
            dn = np.where(np.isfinite(refl), np.clip(np.rint((refl - offset) / scale), 1, 65535), 0)
            layers[str(b)] = (dn.astype(np.uint16), "uint16")
        layers["SCL"] = (c["scl"].values.astype(np.uint8), "uint8")
        for key, (arr, dtype) in layers.items():
            path = out / f"{item.id}_{key}.tif"
            with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype, crs=crs,
                               transform=tr, nodata=0) as dst:  # fmt: skip
                dst.write(arr, 1)
            item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"],
                                             extra_fields={"raster:bands": [{"nodata": 0, "data_type": dtype}]}))  # fmt: skip
        items.append(item)
    return items


def districts_zip(
    bounds: tuple[float, float, float, float],
    crs: str,
    names: Sequence[str],
    dest: Path,
    *,
    rows: int = 2,
    inset: float = 20.0,
) -> Path:
    """A zipped shapefile of districts as such files arrive: one feature per name (attribute
    ``NAME``), a ``rows`` x ``len(names) / rows`` grid over ``bounds`` (in ``crs``) inset by
    ``inset`` units, the ``.shp`` in a subfolder of the zip and macOS ``__MACOSX/._*`` junk beside it.
    """
    import zipfile

    import geopandas as gpd
    import shapely

    cols = -(-len(names) // rows)
    x0, y0, x1, y1 = bounds
    dx, dy = (x1 - x0) / cols, (y1 - y0) / rows
    cells = [shapely.box(x0 + (k % cols) * dx, y0 + (k // cols) * dy, x0 + (k % cols + 1) * dx,
                         y0 + (k // cols + 1) * dy).buffer(-inset) for k in range(len(names))]  # fmt: skip
    folder = dest / "districts-shp"
    folder.mkdir(parents=True)
    gpd.GeoDataFrame({"NAME": list(names)}, geometry=cells, crs=crs).to_file(folder / "districts.shp", engine="pyogrio")
    zpath = dest / "districts.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"districts/{f.name}")
            z.writestr(f"__MACOSX/districts/._{f.name}", b"\x00\x05\x16\x07junk")
    return zpath


class CountingBaseline:
    """A windowed ``median`` baseline that counts, per process, how often it was unpickled:
    a tiled render on Dask sends its predictor once to each worker (tests read the count)."""

    loads = 0

    def __init__(self) -> None:
        from stliif.models.window import BaselineWindow

        self.inner = BaselineWindow("median")
        self.__name__ = "median"

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).loads += 1
        self.__dict__.update(state)

    def halo(self, scale: float) -> int:
        return self.inner.halo(scale)

    def predict_window(self, frames: Any, window: Any, **kwargs: Any) -> Any:
        return self.inner.predict_window(frames, window, **kwargs)
