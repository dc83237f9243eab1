"""Local DEM GeoTIFFs (one or several tiles) mosaicked onto a cube's grid.

Tiles on one source grid are merged (``rioxarray.merge``), then reprojected with rioxarray
(GDAL warp, bilinear by default) onto the cube's CRS, transform and shape; nodata (the file's
own, or the one given) is NaN before and after the warp, so GDAL leaves it out of every
resampling kernel: no nodata value bleeds into valid pixels and no zero makes a cliff at the
edge. Where tiles overlap, the first file listed wins.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rioxarray.merge import merge_arrays

from stliif.errors import DataAccessError, InvalidInputError, NoDataError

if TYPE_CHECKING:
    from stliif.store import ArtifactStore, CommitResult

__all__ = ["add_dem", "check_dem_files", "load_dem_files"]


def check_dem_files(
    files: Sequence[str | Path],
    nodata: float | None = None,
    *,
    bounds: tuple[float, float, float, float] | None = None,
    crs: Any = "EPSG:4326",
) -> list[Path]:
    """The DEM files as paths, each checked to exist and be a georeferenced raster, and, with
    ``bounds`` (in ``crs``), that one of them overlaps that area (checked before an acquisition).

    Raises:
        InvalidInputError: no file, a missing file, not a raster, no CRS, a non-finite
            ``nodata``, no file over ``bounds``.
    """
    import rasterio

    if isinstance(files, str | Path) or not files:
        raise InvalidInputError("dem files: give one or more GeoTIFF paths")
    if nodata is not None and not (isinstance(nodata, int | float) and math.isfinite(nodata)):
        raise InvalidInputError(f"dem nodata: expected a finite number, got {nodata!r}")
    out, overlap = [], bounds is None
    for f in files:
        path = Path(f).expanduser()
        if not path.is_file():
            raise InvalidInputError(f"{path}: DEM file not found")
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise InvalidInputError(
                        f"{path}: the DEM defines no CRS, refusing to guess one"
                    )
                if bounds is not None and not overlap:
                    b = transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)
                    overlap = (
                        b[0] < bounds[2]
                        and bounds[0] < b[2]
                        and b[1] < bounds[3]
                        and bounds[1] < b[3]
                    )
        except RasterioIOError as err:
            raise InvalidInputError(
                f"{path}: not a readable raster ({str(err).split(': ', 1)[-1]})"
            ) from err
        out.append(path)
    if not overlap:
        raise InvalidInputError(
            f"no DEM file overlaps the area {tuple(round(v, 6) for v in bounds or ())} ({crs}): "
            f"{', '.join(p.name for p in out)}"
        )
    return out


def load_dem_files(
    files: Sequence[str | Path],
    like: xr.Dataset | xr.DataArray,
    *,
    nodata: float | None = None,
    resampling: str = "bilinear",
) -> xr.DataArray:
    """Mosaic local DEM tiles onto the grid of ``like`` (rioxarray CRS and transform, dims y, x).

    Args:
        files: DEM GeoTIFFs (first band read), in any CRS.
        like: Cube whose grid the DEM is put on.
        nodata: Value meaning "no data" in the files, overriding theirs (e.g. 0 for a clipped
            copy written without a nodata value). Without it, each file's own nodata is used; a
            file that declares none has every value taken as valid (a ``UserWarning`` says so
            when it holds zeros).
        resampling: GDAL resampling name (``bilinear``, ``cubic``, ``nearest``...).

    Returns:
        ``dem`` (y, x) float32 metres on ``like``'s coordinates, NaN where no file has data.

    Raises:
        InvalidInputError: bad files (see :func:`check_dem_files`) or resampling; ``like`` not
            georeferenced.
        NoDataError: no file has data on the grid.
    """
    paths = check_dem_files(files, nodata)
    try:
        method = Resampling[resampling]
    except KeyError as err:
        raise InvalidInputError(f"resampling: unknown method {resampling!r}") from err
    try:
        crs, transform = like.rio.crs, like.rio.transform()
        y_dim, x_dim = like.rio.y_dim, like.rio.x_dim
    except Exception as err:  # rioxarray raises several types for a missing grid
        raise InvalidInputError(f"DEM target: not a georeferenced grid ({err})") from err
    if crs is None:
        raise InvalidInputError("DEM target: the cube has no CRS")
    shape = (like.sizes[y_dim], like.sizes[x_dim])
    bounds = like.rio.bounds()
    # Tiles on one source grid (CRS and pixel size) are merged before the warp, so that the
    # kernels of pixels along a seam see both tiles; other groups are warped apart.
    groups: dict[tuple[str, tuple[float, float]], list[xr.DataArray]] = {}
    for path in paths:
        tile = _read(path, crs, bounds, nodata)
        if tile is not None:
            key = (tile.rio.crs.to_wkt(), tuple(round(abs(r), 12) for r in tile.rio.resolution()))
            groups.setdefault(key, []).append(tile)
    mosaic = np.full(shape, np.nan, np.float32)
    for tiles in groups.values():
        src = tiles[0] if len(tiles) == 1 else merge_arrays(tiles, nodata=np.nan, method="first")
        out = src.rio.reproject(
            crs, shape=shape, transform=transform, resampling=method, nodata=np.nan
        )
        mosaic = np.where(np.isnan(mosaic), np.asarray(out.values, np.float32), mosaic)
    if np.isnan(mosaic).all():
        raise NoDataError(f"no DEM file has data on the grid ({', '.join(p.name for p in paths)})")
    return xr.DataArray(
        mosaic, dims=("y", "x"), coords={"y": like[y_dim].values, "x": like[x_dim].values}, name="dem",
        attrs={"units": "m", "source": "files", "files": [p.name for p in paths],
               "dem_nodata": "file's own" if nodata is None else nodata},
    )  # fmt: skip


def _read(
    path: Path, crs: Any, bounds: tuple[float, ...], nodata: float | None
) -> xr.DataArray | None:
    """The part of one tile around ``bounds`` (in ``crs``) as float32, nodata as NaN; None when
    disjoint."""
    try:
        opened = rioxarray.open_rasterio(path, masked=False)
        if not isinstance(opened, xr.DataArray):  # a multi-subdataset file (HDF, netCDF)
            raise InvalidInputError(f"{path}: not a single raster (several subdatasets)")
        src = opened.isel(band=0, drop=True)
        box = transform_bounds(crs, src.rio.crs, *bounds, densify_pts=21)
        res_x, res_y = (abs(v) for v in src.rio.resolution())
        pad = (2 * res_x, 2 * res_y)  # keep the kernel's neighbours of edge pixels
        try:
            src = src.rio.clip_box(
                box[0] - pad[0], box[1] - pad[1], box[2] + pad[0], box[3] + pad[1]
            )
        except rioxarray.exceptions.NoDataInBounds:
            return None
        src = src.load()
    except (RasterioIOError, OSError) as err:
        raise DataAccessError(f"{path}: unreadable ({err})") from err
    own = src.rio.nodata
    data = src.astype(np.float32)
    missing = nodata if nodata is not None else own
    if missing is not None and not (isinstance(missing, float) and math.isnan(missing)):
        data = data.where(src != missing)
    elif missing is None and bool((src == 0).any()):
        warnings.warn(
            f"{path.name}: declares no nodata value and holds zeros; they are taken as 0 m "
            "(pass a DEM nodata of 0 if they are outside the clip)",
            UserWarning,
            stacklevel=3,
        )
    return data.rio.write_nodata(np.nan, encoded=False)


def add_dem(
    store: ArtifactStore,
    aoi: str,
    files: Sequence[str | Path],
    nodata: float | None = None,
    *,
    run_id: str | None = None,
) -> CommitResult:
    """Mosaic local DEM files onto ``raw/<aoi>``'s grid (:func:`load_dem_files`) and commit it
    as the cube's ``dem`` variable (replacing one already there). The files' content and the
    nodata are recorded (``dem.attrs["files_sha256"]``): a rerun with the same ones commits nothing.

    Raises:
        NoDataError: ``raw/<aoi>`` is missing, or no file covers it.
        InvalidInputError: bad files or nodata.
    """
    from stliif.names import validate_name

    validate_name(aoi, what="AOI name")
    paths = check_dem_files(files, nodata)
    path = f"raw/{aoi}"
    version = store.version(path)
    if version is None:
        raise NoDataError(f"{path} is missing: acquire or import the area first")
    digest = hashlib.sha256(repr(nodata).encode())
    for p in paths:
        digest.update(p.name.encode())
        digest.update(p.read_bytes())
    key = digest.hexdigest()[:16]
    cube = store.read(path, load=True)
    if "dem" in cube and cube["dem"].attrs.get("files_sha256") == key:  # this DEM is there already
        from stliif.store import CommitResult

        return CommitResult(store.snapshot_id(store.spec.branch), version, False, (path,))
    cube["dem"] = load_dem_files(paths, cube, nodata=nodata).assign_attrs(files_sha256=key)
    params = {"aoi": aoi, "files": [p.name for p in paths], "nodata": nodata}
    return store.commit(
        {path: cube},
        stage="dem",
        params=params,
        inputs={path: version, "dem_files": key},
        run_id=run_id,
        message=f"dem: {path} from {len(paths)} file(s)",
    )
