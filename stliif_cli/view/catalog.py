"""What the viewer shows of a store: its AOIs (footprint, source, dates, clear fractions), the
renders of an AOI, and the lineage (the commit) of any artifact it shows.

Everything is read at one snapshot (the ``ref`` the page was loaded at) and cached by snapshot
and artifact version: a snapshot never changes, so nothing here goes stale.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import xarray as xr

from stliif.cubes import MASK_VARS
from stliif.errors import InvalidInputError, NoDataError
from stliif.names import aoi_cube_path, validate_aoi, validate_artifact_path
from stliif.preprocess.mask import clear_fraction
from stliif.quicklook import RGB as RGB_BANDS
from stliif.store import ArtifactStore

__all__ = ["Catalog", "check_shown_path"]

_SYNC = "synchronous"
"""Reads of a summary run in the calling thread: summaries are read by a few threads at once
(:meth:`Catalog.summaries`), not each by a pool of its own."""

SHOWN_PREFIXES = ("raw/", "crop/raw/", "render/", "mask/")
"""The artifacts the viewer reads: LR cubes, crops of them, renders and masks."""


def check_shown_path(path: str) -> str:
    """``path`` if it is a valid artifact path under one of :data:`SHOWN_PREFIXES`, else raise."""
    validate_artifact_path(path)
    if not path.startswith(SHOWN_PREFIXES):
        raise InvalidInputError(f"the viewer shows only {', '.join(p + '...' for p in SHOWN_PREFIXES)}; not {path!r}")
    return path


def _day(t: Any) -> str:
    return str(np.datetime64(t, "D"))


def _lonlat_box(ds: xr.Dataset) -> list[float]:
    w, s, e, n = ds.rio.transform_bounds("EPSG:4326", densify_pts=21)
    return [float(w), float(s), float(e), float(n)]


def _footprint(ds: xr.Dataset) -> dict[str, Any]:
    """The area's polygon (the ``geometry`` attribute, lon/lat) or the grid's bounds."""
    geom = ds.attrs.get("geometry")
    if geom:
        try:
            value = json.loads(geom) if isinstance(geom, str) else dict(geom)
            if value.get("type") in ("Polygon", "MultiPolygon"):
                return value
        except (TypeError, ValueError):
            pass
    w, s, e, n = _lonlat_box(ds)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


class Catalog:
    """The store as the viewer sees it, read at snapshots and cached per snapshot."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._summaries: dict[tuple[str, str], dict[str, Any]] = {}
        self._lineage: dict[tuple[str, str], dict[str, Any] | None] = {}

    # -- refs ----------------------------------------------------------------------------------
    def snapshot(self, ref: str | None = None) -> str:
        """The snapshot id ``ref`` (default: the store's branch) points at now."""
        return self.store.snapshot_id(ref)

    # -- AOIs ----------------------------------------------------------------------------------
    def summaries(self, snap: str) -> list[dict[str, Any]]:
        """:meth:`summary` of every AOI, read by a few threads (reads wait on I/O, not Python)."""
        from concurrent.futures import ThreadPoolExecutor

        names = self.aoi_names(snap)
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda name: self.summary(name, snap), names))

    def aoi_names(self, snap: str) -> list[str]:
        """Plain AOIs (``raw/<aoi>``) and crops of them (``crop/raw/<aoi>/<name>``)."""
        names = [p.removeprefix("raw/") for p in self.store.list("raw", ref=snap)]
        for path in self.store.list("crop", ref=snap):
            try:
                names.append(validate_aoi(path))
            except InvalidInputError:
                continue  # a crop of something else than an LR cube
        return names

    def cube(self, aoi: str, snap: str) -> xr.Dataset:
        """An AOI's LR cube at ``snap`` (lazy), masks as uint8 (as :func:`stliif.cubes.read_cube`)."""
        path = aoi_cube_path(aoi)
        if self.store.version(path, ref=snap) is None:
            raise NoDataError(f"no AOI {aoi!r} in the store at {snap}")
        ds = self.store.read(path, ref=snap)
        for var in MASK_VARS:
            if var in ds and ds[var].dtype.kind == "f":
                ds[var] = ds[var].fillna(0).astype("uint8")
        return ds

    def summary(self, aoi: str, snap: str) -> dict[str, Any]:
        """Footprint, source, dates, clear fractions and display scale of an AOI (cached)."""
        path = aoi_cube_path(aoi)
        version = self.store.version(path, ref=snap)
        if version is None:
            raise NoDataError(f"no AOI {aoi!r} in the store at {snap}")
        key = (path, version)
        with self._lock:
            if key in self._summaries:
                return self._summaries[key]
        ds = self.cube(aoi, snap)
        out = {
            "aoi": aoi,
            "path": path,
            "version": version,
            "source": str(ds.attrs.get("source", "")),
            "providers": self._providers(ds),
            "processing_level": str(ds.attrs.get("processing_level", "")),
            "dates": [_day(t) for t in ds["time"].values],
            "clear_fraction": self._clear(aoi, ds, snap),
            "crs": str(ds.rio.crs),
            "shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
            "bands": [str(b) for b in ds["band"].values],
            "bounds": _lonlat_box(ds),
            "footprint": _footprint(ds),
            "display_max": self._display_max(ds),
            "has_clouds": "clm" in ds and "data_mask" in ds,
        }
        with self._lock:
            self._summaries[key] = out
        return out

    @staticmethod
    def _providers(ds: xr.Dataset) -> list[str]:
        if "provider" in ds.coords:
            return sorted({str(p) for p in np.asarray(ds["provider"].values).ravel()})
        provs = ds.attrs.get("providers")
        return [str(p) for p in provs] if isinstance(provs, list) else []

    def _clear(self, aoi: str, ds: xr.Dataset, snap: str) -> list[float | None]:
        """Clear fraction per date: ``mask/<aoi>`` when the mask stage ran, else the cube's own
        (acquired cubes carry it), else computed by the library's one rule."""
        if self.store.version(f"mask/{aoi}", ref=snap) is not None:
            values = self.store.read(f"mask/{aoi}", ref=snap)["clear_fraction"].compute(scheduler=_SYNC).values
        elif "clear_fraction" in ds.coords:
            values = ds["clear_fraction"].compute(scheduler=_SYNC).values
        elif {"clm", "data_mask"} <= set(ds.data_vars):
            values = clear_fraction(ds).compute(scheduler=_SYNC).values
        else:
            return [None] * ds.sizes["time"]
        return [round(float(v), 4) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]

    @staticmethod
    def _display_max(ds: xr.Dataset) -> float:
        """One display scale for every date and every render of the AOI: the 99th percentile
        of clear RGB reflectance (on a subsample: at most 8 dates, ~256 x 256 pixels each)."""
        if not set(RGB_BANDS) <= {str(b) for b in ds["band"].values}:
            return 0.3
        step = max(1, int(np.ceil(max(ds.sizes["y"], ds.sizes["x"]) / 256)))
        dates = np.unique(np.linspace(0, ds.sizes["time"] - 1, min(8, ds.sizes["time"])).round().astype(int))
        keep = [v for v in ("reflectance", "clm", "data_mask") if v in ds]
        sub = ds[keep].isel(time=dates, y=slice(None, None, step), x=slice(None, None, step))
        sub = sub.sel(band=list(RGB_BANDS)).load(scheduler=_SYNC)  # one read of every variable
        rgb = np.asarray(sub["reflectance"].values, np.float32)
        if "clm" in sub and "data_mask" in sub:
            clear = (np.asarray(sub["clm"].values) == 0) & (np.asarray(sub["data_mask"].values) == 1)
            vals = rgb.transpose(1, 0, 2, 3)[:, clear]
        else:
            vals = rgb
        vals = vals[np.isfinite(vals)]
        return round(float(np.percentile(vals, 99)), 4) if vals.size else 0.3

    # -- renders -------------------------------------------------------------------------------
    def renders(self, snap: str, aoi: str | None = None) -> list[dict[str, Any]]:
        """The renders of the store (of ``aoi`` only, when given), each with its attributes."""
        prefix = "render" if aoi is None else f"render/{validate_aoi(aoi)}"
        out = []
        for path in self.store.list(prefix, ref=snap):
            parts = path.split("/")
            if len(parts) < 4:
                continue
            owner, model, name = "/".join(parts[1:-2]), parts[-2], parts[-1]
            if aoi is not None and owner != aoi:
                continue  # render/<aoi>/... of a longer crop name under the same prefix
            out.append(self.render_info(path, snap, owner, model, name))
        return out

    def render_info(self, path: str, snap: str, aoi: str, model: str, name: str) -> dict[str, Any]:
        ds = self.store.read(path, ref=snap)
        da = ds["reflectance"]
        attrs = {k: v for k, v in ds.attrs.items() if not k.startswith("stliif:")}
        dates = [_day(t) for t in da["time"].values] if "time" in da.dims else [str(attrs.get("date", ""))]
        return {
            "path": path,
            "aoi": aoi,
            "model": model,
            "name": name,
            "version": self.store.version(path, ref=snap),
            "dates": dates,
            "shape": [int(da.sizes["y"]), int(da.sizes["x"])],
            "bounds": _lonlat_box(ds),
            "attrs": json.loads(json.dumps(attrs, default=str)),
        }

    # -- lineage -------------------------------------------------------------------------------
    def lineage(self, path: str, snap: str) -> dict[str, Any] | None:
        """The commit that wrote ``path`` as it is at ``snap`` (the newest commit listing it),
        with its stage, parameters, input versions, code version and run id."""
        key = (path, snap)
        with self._lock:
            if key in self._lineage:
                return self._lineage[key]
        found = None
        for c in self.store.log(snap):
            run = c.run_of(path)  # a batch commit holds one run per AOI
            if run is not None:
                md = c.metadata
                found = {
                    "path": path,
                    "version": self.store.version(path, ref=snap),
                    "snapshot_id": c.snapshot_id,
                    "written_at": c.written_at,
                    "message": c.message,
                    **{k: md.get(k) for k in ("stage", "run_id", "code_version", "input_snapshot")},
                    **{k: run.get(k) for k in ("run_key", "inputs", "params")},
                }
                break
        with self._lock:
            self._lineage[key] = found
        return found
