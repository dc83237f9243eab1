"""Read the WorldStrat dataset as it is released, irregularities included.

Layout (WorldStrat's own naming)::

    lr_dataset/<AOI>/L2A/<AOI>-<n>-L2A_data.tiff   Sentinel-2 L2A revisit n (12 bands)
    lr_dataset/<AOI>/L2A/<AOI>-<n>-{CLM,CLP,SCL,dataMask}.tiff
    lr_dataset/<AOI>/L2A/<AOI>-<n>.metadata        JSON (two dialects)
    hr_dataset/12bit/<AOI>/<AOI>_{pan,rgbn}.tiff    SPOT 6/7, no geotransform

File names may use a space where the folder uses ``_`` (the Amnesty AOIs); SCL may be absent;
L2A values may be float32 reflectance (release) or uint16 DN with a 1e-4 scale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rasterio
import rasterio.errors
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.transform import from_bounds

from stliif.errors import DataAccessError, InvalidInputError
from stliif.raw_schema import check_raw
from stliif.sources.worldstrat_metadata import read_metadata
from stliif.store import PACK_ENCODING

__all__ = [
    "BANDS",
    "AOIFiles",
    "HRImages",
    "RevisitFiles",
    "find_aoi_files",
    "list_aois",
    "read_aoi",
    "read_hr",
    "read_lr",
    "read_metadata",
    "resolve_aois",
    "source_fingerprint",
]

BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
"""Band order of ``L2A_data.tiff`` (no B10 in L2A)."""

MASKS: tuple[str, ...] = ("CLM", "CLP", "SCL", "dataMask")
_MASK_VARS = {"CLM": "clm", "CLP": "clp", "SCL": "scl", "dataMask": "data_mask"}
_DEFAULT_SCALE = 1e-4


@dataclass(frozen=True)
class RevisitFiles:
    """Paths of one Sentinel-2 revisit; a mask path is ``None`` when the file is absent."""

    n: int
    data: Path
    metadata: Path
    masks: dict[str, Path | None] = field(default_factory=dict)


@dataclass(frozen=True)
class AOIFiles:
    """Every file of one AOI, revisits ordered by their number ``n``."""

    aoi: str
    revisits: tuple[RevisitFiles, ...]
    pan: Path
    rgbn: Path

    def all_paths(self) -> list[Path]:
        """Every existing source file of the AOI."""
        paths: list[Path] = [self.pan, self.rgbn]
        for r in self.revisits:
            paths += [r.data, r.metadata, *(p for p in r.masks.values() if p is not None)]
        return paths


class HRImages(NamedTuple):
    """SPOT 6/7 high-resolution images of an AOI, georeferenced on the LR footprint."""

    pan: xr.DataArray
    """Panchromatic, dims (y, x), uint16 12-bit DN, ~1.5 m."""
    rgbn: xr.DataArray
    """Multispectral R, G, B, NIR, dims (band, y, x), uint16 12-bit DN, ~6 m."""


def _normalise(name: str) -> str:
    return name.replace(" ", "_")


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not (root / "lr_dataset").is_dir():
        raise InvalidInputError(
            f"{root} is not a WorldStrat dataset: expected a folder 'lr_dataset' inside it "
            "(set --data or STLIIF_DATA to the dataset root)"
        )
    return root


def list_aois(root: str | Path) -> list[str]:
    """Names of the AOIs under ``root/lr_dataset``, sorted."""
    root = _check_root(root)
    return sorted(p.name for p in (root / "lr_dataset").iterdir() if p.is_dir())


def resolve_aois(root: str | Path, aois: Iterable[str] | None = None) -> list[str]:
    """The AOIs to process: ``aois`` checked against the dataset, or all of them."""
    available = list_aois(root)
    if not aois:
        return available
    wanted = list(dict.fromkeys(aois))
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise InvalidInputError(f"unknown AOIs {unknown} in {root}")
    return wanted


def _index(folder: Path) -> dict[str, Path]:
    """Map normalised file names (spaces as ``_``) to the real paths in ``folder``."""
    if not folder.is_dir():
        raise DataAccessError(f"{folder}: folder missing")
    return {_normalise(p.name): p for p in folder.iterdir() if p.is_file()}


def find_aoi_files(root: str | Path, aoi: str) -> AOIFiles:
    """Locate every file of ``aoi``, tolerating WorldStrat's space/underscore naming."""
    root = _check_root(root)
    if not aoi or "/" in aoi or aoi.startswith("."):
        raise InvalidInputError(f"invalid AOI name {aoi!r}")
    lr_dir = root / "lr_dataset" / aoi / "L2A"
    if not (root / "lr_dataset" / aoi).is_dir():
        raise InvalidInputError(f"unknown AOI {aoi!r}: no folder {root / 'lr_dataset' / aoi}")
    files = _index(lr_dir)
    key = _normalise(aoi)
    pattern = re.compile(rf"^{re.escape(key)}-(\d+)-L2A_data\.tiff?$")
    numbers = sorted(int(m.group(1)) for name in files if (m := pattern.match(name)))
    if not numbers:
        raise DataAccessError(f"{lr_dir}: no '<AOI>-<n>-L2A_data.tiff' revisit files")
    revisits = []
    for n in numbers:
        stem = f"{key}-{n}"
        data = files.get(f"{stem}-L2A_data.tiff") or files[f"{stem}-L2A_data.tif"]
        # The stem as the revisit's other files spell it on disk (WorldStrat mixes spaces and '_').
        siblings = [p.name[: len(stem)] for n, p in files.items() if n.startswith(f"{stem}-") and p != data]
        real = siblings[0] if siblings else data.name[: len(stem)]
        meta = files.get(f"{stem}.metadata")
        if meta is None:
            raise DataAccessError(f"{lr_dir / (real + '.metadata')}: metadata file missing")
        masks = {m: files.get(f"{stem}-{m}.tiff") for m in MASKS}
        for required in ("CLM", "dataMask"):
            if masks[required] is None:
                raise DataAccessError(f"{lr_dir / f'{real}-{required}.tiff'}: mask file missing")
        revisits.append(RevisitFiles(n=n, data=data, metadata=meta, masks=masks))
    hr_files = _index(root / "hr_dataset" / "12bit" / aoi)
    hr = {}
    for kind in ("pan", "rgbn"):
        path = hr_files.get(f"{key}_{kind}.tiff") or hr_files.get(f"{key}_{kind}.tif")
        if path is None:
            raise DataAccessError(f"{root / 'hr_dataset/12bit' / aoi / f'{aoi}_{kind}.tiff'}: missing")
        hr[kind] = path
    return AOIFiles(aoi=aoi, revisits=tuple(revisits), pan=hr["pan"], rgbn=hr["rgbn"])


def source_fingerprint(files: AOIFiles) -> str:
    """A cheap content key of the AOI's sources: names, sizes and modification times.

    It changes when a revisit is added, removed or rewritten, which is what triggers a
    recomputation of the AOI's downstream artifacts.
    """
    import hashlib

    h = hashlib.sha256()
    for p in sorted(files.all_paths()):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _read_raster(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple[float, ...]]:
    try:
        with rasterio.open(path) as src:
            return src.read(), src.profile, src.scales
    except (rasterio.errors.RasterioError, OSError) as err:
        raise DataAccessError(f"{path}: unreadable raster ({err})") from err


def _coords(transform: Affine, height: int, width: int) -> dict[str, np.ndarray]:
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    return {"y": y, "x": x}


def _reflectance(data: np.ndarray, profile: rasterio.profiles.Profile, scales: Sequence[float], path: Path) -> np.ndarray:
    if data.shape[0] != len(BANDS):
        raise DataAccessError(f"{path}: expected {len(BANDS)} bands, found {data.shape[0]}")
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32)  # released encoding: reflectance already
    nodata = profile.get("nodata")
    scale = np.array([s if s not in (None, 1.0) else _DEFAULT_SCALE for s in scales], np.float32)
    out = data.astype(np.float32) * scale[:, None, None]
    if nodata is not None:
        out[data == nodata] = np.nan
    return out


def _pack_spec(data: np.ndarray, profile: rasterio.profiles.Profile, scales: Sequence[float]) -> dict[str, Any] | None:
    """The store encoding (:data:`stliif.store.PACK_ENCODING`) giving back :func:`_reflectance`'s
    values from the source's DN: its dtype, one scale for every band, its nodata as the fill."""
    scale = {float(np.float32(s if s not in (None, 1.0) else _DEFAULT_SCALE)) for s in scales}
    nodata = profile.get("nodata")
    if np.issubdtype(data.dtype, np.floating) or len(scale) != 1 or nodata is None:
        return None
    return {"dtype": str(data.dtype), "scale_factor": scale.pop(), "add_offset": 0.0, "fill": int(nodata)}


def read_lr(files: AOIFiles) -> xr.Dataset:
    """Read the LR revisits of an AOI into one Dataset, sorted by acquisition date.

    Returns:
        Dataset with ``reflectance`` (time, band, y, x) float32 surface reflectance (NaN where
        no data); ``clm``, ``clp``, ``data_mask`` and, when present, ``scl`` (time, y, x) uint8;
        coordinates ``time`` (acquisition date), ``revisit`` (WorldStrat's n, along time),
        ``cloud_cover`` (percent, along time), ``band``, ``y``, ``x`` (EPSG:4326 pixel centres);
        attributes ``aoi``, ``hr_date`` and the AOI's location and labels.
    """
    masks: dict[str, list[Any]] = {v: [] for v in _MASK_VARS.values()}
    arrays, metas, packs = [], [], []
    transform = shape = None
    has_scl = all(r.masks.get("SCL") is not None for r in files.revisits)
    for r in files.revisits:
        data, profile, scales = _read_raster(r.data)
        if shape is None:
            shape, transform, crs = data.shape[1:], profile["transform"], profile["crs"]
        elif data.shape[1:] != shape:
            raise DataAccessError(f"{r.data}: size {data.shape[1:]} differs from revisit 1's {shape}")
        arrays.append(_reflectance(data, profile, scales, r.data))
        packs.append(_pack_spec(data, profile, scales))
        for name, var in _MASK_VARS.items():
            path = r.masks.get(name)
            if path is None:
                continue
            if name == "SCL" and not has_scl:
                continue
            m, _, _ = _read_raster(path)
            if m.shape[1:] != shape:
                raise DataAccessError(f"{path}: size {m.shape[1:]} differs from the data's {shape}")
            masks[var].append(m[0].astype(np.uint8))
        metas.append(read_metadata(r.metadata))
    assert shape is not None and transform is not None
    order = sorted(range(len(metas)), key=lambda i: (metas[i]["date"], files.revisits[i].n))
    dims3 = ("time", "y", "x")
    data_vars: dict[str, Any] = {
        "reflectance": (("time", "band", "y", "x"), np.stack([arrays[i] for i in order])),
    }
    for var, stack in masks.items():
        if stack:
            data_vars[var] = (dims3, np.stack([stack[i] for i in order]))
    coords = {
        "time": np.array([metas[i]["date"] for i in order], dtype="datetime64[ns]"),
        "revisit": ("time", np.array([files.revisits[i].n for i in order], dtype=np.int16)),
        "cloud_cover": ("time", np.array([metas[i]["cloud_cover"] for i in order], np.float32)),
        "band": list(BANDS),
        **_coords(transform, *shape),
    }
    first = metas[0]
    attrs: dict[str, Any] = {
        "aoi": files.aoi,
        "source": "worldstrat",
        "hr_date": str(first["hr_date"])[:10],
        "reflectance_units": "surface reflectance (DN x 1e-4)",
    }
    attrs.update({k: first[k] for k in ("lon", "lat", "bounds", "LCCS", "SMOD", "IPCC") if k in first})
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds["reflectance"].attrs["nodata"] = "NaN"
    if packs[0] is not None and all(p == packs[0] for p in packs):  # stored as the source's DN
        ds["reflectance"].encoding[PACK_ENCODING] = packs[0]
    ds = ds.rio.write_crs(crs or "EPSG:4326").rio.write_transform(transform)
    check_raw(ds)
    return ds


def lr_bounds(ds: xr.Dataset) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of an LR cube's footprint in its CRS."""
    return tuple(float(v) for v in ds.rio.bounds())  # type: ignore[return-value]


def read_hr(files: AOIFiles, bounds: Iterable[float]) -> HRImages:
    """Read the SPOT pan and rgbn images, georeferenced on the LR footprint ``bounds``.

    The HR TIFFs carry EPSG:4326 GeoKeys but no geotransform; they cover the LR footprint, so
    their transform is derived from it.
    """
    minx, miny, maxx, maxy = bounds
    out = []
    for path, name in ((files.pan, "pan"), (files.rgbn, "rgbn")):
        data, _, _ = _read_raster(path)
        if name == "pan" and data.shape[0] != 1:
            raise DataAccessError(f"{path}: expected 1 panchromatic band, found {data.shape[0]}")
        if name == "rgbn" and data.shape[0] != 4:
            raise DataAccessError(f"{path}: expected 4 bands (R, G, B, NIR), found {data.shape[0]}")
        h, w = data.shape[1:]
        transform = from_bounds(minx, miny, maxx, maxy, w, h)
        coords = _coords(transform, h, w)
        if name == "pan":
            da = xr.DataArray(data[0], dims=("y", "x"), coords=coords, name="pan")
        else:
            da = xr.DataArray(data, dims=("band", "y", "x"), name="rgbn",
                              coords={"band": ["red", "green", "blue", "nir"], **coords})
        da.attrs["units"] = "12-bit DN"
        out.append(da.rio.write_crs("EPSG:4326").rio.write_transform(transform))
    return HRImages(*out)


def read_aoi(root: str | Path, aoi: str) -> tuple[xr.Dataset, HRImages]:
    """Read one AOI: its LR cube (see :func:`read_lr`) and its HR images (see :func:`read_hr`)."""
    files = find_aoi_files(root, aoi)
    lr = read_lr(files)
    return lr, read_hr(files, lr_bounds(lr))
