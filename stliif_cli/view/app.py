"""The viewer's web app: a FastAPI app over one store, for 127.0.0.1 only.

Routes: ``/`` (the page), ``/static/...`` (its script, style and the vendored Leaflet),
``/api/aois`` (every AOI as a GeoJSON footprint with source, dates and clear fractions),
``/api/aoi/{aoi}`` (one AOI, its renders and its lineage), ``/api/renders`` (renders, with
their lineage), ``/api/lineage`` (the commit that wrote an artifact), ``/api/config`` and ``POST /api/runs``
(start ``render-manual`` / ``acquire-manual`` when ``PREFECT_API_URL`` is set) and
``/tiles/{z}/{x}/{y}.png`` (``path``: ``raw/<aoi>``, a crop or a render; ``t``: the date
index; ``layer``: ``rgb`` or ``cloud``; ``ref``: the snapshot the page was loaded at).

Every name that reaches the store is checked by :mod:`stliif.names` (``..``, absolute paths,
odd characters are refused with 400) and only LR cubes, crops, masks and renders are read.
Requests must name a loopback host (``Host`` header), so a web page elsewhere cannot reach the
viewer through DNS rebinding.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import xarray as xr
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from stliif.errors import DataAccessError, InvalidInputError, NoDataError, StliifError, StoreError
from stliif.names import aoi_cube_path, validate_aoi
from stliif.store import ArtifactStore
from stliif_cli.options import one_sentence
from stliif_cli.view import runs
from stliif_cli.view.catalog import Catalog, check_shown_path

__all__ = ["STATIC", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _host_ok(host: str) -> bool:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8765
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return host in LOOPBACK_HOSTS


class _Arrays:
    """A few arrays loaded in memory (one date of a cube, a render), least recently used out."""

    def __init__(self, size: int = 12) -> None:
        self.size, self._items, self._lock = size, OrderedDict[tuple[Any, ...], Any](), threading.Lock()
        self._making: dict[tuple[Any, ...], threading.Lock] = {}

    def get(self, key: tuple[Any, ...], make: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            making = self._making.setdefault(key, threading.Lock())
        with making:  # the tiles of one view ask at once: one of them reads, the others wait
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = make()
            with self._lock:
                self._items[key] = value
                self._making.pop(key, None)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return value


def create_app(store: ArtifactStore) -> FastAPI:
    """The viewer over ``store`` (read at its branch; each page load pins a snapshot)."""
    from stliif_cli.view import tiles

    cat = Catalog(store)
    arrays = _Arrays()
    app = FastAPI(title="stliif view", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def loopback_only(request: Request, call_next: Any) -> Any:
        if not _host_ok(request.headers.get("host", "")):
            return JSONResponse({"detail": "the viewer answers only to 127.0.0.1 / localhost"}, status_code=403)
        if request.method not in ("GET", "HEAD"):
            # Only the page itself starts runs: a JSON body (another site's form cannot send
            # one without a CORS preflight, which is never answered) from a loopback origin.
            origin = request.headers.get("origin")
            if origin is not None and not _host_ok(urlsplit(origin).netloc):
                return JSONResponse({"detail": f"refused: a request from {origin}"}, status_code=403)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return JSONResponse({"detail": "send JSON (application/json)"}, status_code=415)
        return await call_next(request)

    @app.exception_handler(ValidationError)
    async def invalid_spec(request: Request, err: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": one_sentence(err)}, status_code=400)

    @app.exception_handler(StliifError)
    async def stliif_error(request: Request, err: StliifError) -> JSONResponse:
        code = (400 if isinstance(err, InvalidInputError) else 404 if isinstance(err, NoDataError | StoreError)
                else 502 if isinstance(err, DataAccessError) else 500)  # fmt: skip
        return JSONResponse({"detail": " ".join(str(err).split())}, status_code=code)

    def snap_of(ref: str | None) -> str:
        if ref is not None and not _REF.fullmatch(ref):
            raise InvalidInputError(f"invalid ref {ref!r}")
        return cat.snapshot(ref)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/aois")
    def aois(ref: str | None = None) -> dict[str, Any]:
        """Every AOI of the store as a GeoJSON feature: footprint, source, dates, clear fractions."""
        snap = snap_of(ref)
        features = []
        for s in cat.summaries(snap):
            props = {k: v for k, v in s.items() if k != "footprint"}
            features.append({"type": "Feature", "id": s["aoi"], "geometry": s["footprint"], "properties": props})
        return {"type": "FeatureCollection", "snapshot": snap, "branch": store.spec.branch, "features": features}

    @app.get("/api/aoi/{aoi:path}")
    def aoi(aoi: str, ref: str | None = None) -> dict[str, Any]:
        """One AOI: its summary, its renders and the lineage of its cube."""
        snap = snap_of(ref)
        validate_aoi(aoi)
        s = cat.summary(aoi, snap)
        return {**s, "snapshot": snap, "renders": cat.renders(snap, aoi), "lineage": cat.lineage(s["path"], snap)}

    @app.get("/api/renders")
    def renders(aoi: str | None = None, ref: str | None = None) -> dict[str, Any]:
        """Renders (of one AOI, when given), each with the revisit of the input nearest its date
        (``input_t``: the 10 m image to compare it with) and its lineage."""
        snap = snap_of(ref)
        out = []
        for r in cat.renders(snap, aoi):
            dates = cat.summary(r["aoi"], snap)["dates"] if _has_cube(r["aoi"], snap) else []
            r["input_t"] = [_nearest(dates, d) for d in r["dates"]]
            r["lineage"] = cat.lineage(r["path"], snap)
            out.append(r)
        return {"snapshot": snap, "renders": out}

    def _has_cube(aoi_name: str, snap: str) -> bool:
        try:
            return store.version(aoi_cube_path(aoi_name), ref=snap) is not None
        except InvalidInputError:
            return False

    @app.get("/api/lineage")
    def lineage(path: str, ref: str | None = None) -> dict[str, Any]:
        """The commit that wrote ``path`` (stage, parameters, input versions, code, run id)."""
        snap = snap_of(ref)
        check_shown_path(path)
        found = cat.lineage(path, snap)
        if found is None:
            raise NoDataError(f"no commit of {path!r} in the history of {snap}")
        return found

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        """What the page may offer: starting runs needs a Prefect API (``PREFECT_API_URL``)."""
        return {"store": store.spec.uri, "branch": store.spec.branch, "prefect_api": runs.prefect_api(),
                "deployments": sorted(runs.RUNNABLE) if runs.prefect_api() else []}  # fmt: skip

    @app.post("/api/runs")
    def start(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Start ``render-manual`` or ``acquire-manual`` on this store: ``{"deployment", "spec"}``."""
        if not isinstance(body.get("spec"), dict) or not isinstance(body.get("deployment"), str):
            raise InvalidInputError('send {"deployment": "render-manual" | "acquire-manual", "spec": {...}}')
        return runs.start_run(body["deployment"], body["spec"], store.spec)

    @app.get("/tiles/{z}/{x}/{y}.png")
    def tile(
        z: int, x: int, y: int,
        path: str = Query(description="raw/<aoi>, crop/raw/<aoi>/<name> or render/<aoi>/<model>/<name>"),
        t: int = Query(0, ge=0, description="Date index along time"),
        layer: str = Query("rgb", pattern="^(rgb|cloud)$"),
        ref: str | None = None,
    ) -> Response:
        """One 256 px PNG tile of an array of the store."""
        if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
            raise InvalidInputError(f"no tile {z}/{x}/{y}")
        snap = snap_of(ref)
        check_shown_path(path)
        if path.startswith("render/"):
            aoi_name = "/".join(path.split("/")[1:-2])
            if layer != "rgb":
                raise InvalidInputError("a render has only the rgb layer")
            da = arrays.get((snap, path, t), lambda: _render_date(store, path, t, snap))
        else:
            aoi_name = path.removeprefix("raw/") if path.startswith("raw/") else path
            validate_aoi(aoi_name)
            if aoi_cube_path(aoi_name) != path:
                raise InvalidInputError(f"{path!r} is not an AOI's cube")
            ds = arrays.get((snap, path, t), lambda: _cube_date(cat, aoi_name, t, snap))
            if layer == "cloud":
                png = tiles.cloud_tile(ds, x, y, z)
                return Response(png, media_type="image/png", headers=_cache(ref))
            da = ds["reflectance"]
        factor = tiles.overview_factor(da, z)
        if factor > 1:  # a zoomed-out tile: from a block-averaged copy, read once
            full = da
            da = arrays.get((snap, path, t, factor), lambda: tiles.overview(full, factor))
        top = cat.summary(aoi_name, snap)["display_max"] if _has_cube(aoi_name, snap) else 0.3
        png = tiles.rgb_tile(da, x, y, z, top=top)
        return Response(png, media_type="image/png", headers=_cache(ref))

    return app


def _cache(ref: str | None) -> dict[str, str]:
    # A tile named by a snapshot id never changes; one of a branch may.
    return {"Cache-Control": "max-age=86400, immutable" if ref else "no-cache"}


def _nearest(dates: list[str], date: str) -> int | None:
    import numpy as np

    if not dates or not date:
        return None
    d = np.array(dates, dtype="datetime64[D]")
    return int(np.argmin(np.abs(d - np.datetime64(date[:10], "D"))))


def _cube_date(cat: Catalog, aoi: str, t: int, snap: str) -> xr.Dataset:
    ds = cat.cube(aoi, snap)
    if t >= ds.sizes["time"]:
        raise InvalidInputError(f"{aoi} has {ds.sizes['time']} dates; no date index {t}")
    keep = [v for v in ("reflectance", "clm", "data_mask", "scl") if v in ds]
    return ds[keep].isel(time=t).load()


def _render_date(store: ArtifactStore, path: str, t: int, snap: str) -> xr.DataArray:
    da = store.read(path, ref=snap)["reflectance"]
    if "time" in da.dims:
        if t >= da.sizes["time"]:
            raise InvalidInputError(f"{path} has {da.sizes['time']} dates; no date index {t}")
        da = da.isel(time=t)
    elif t != 0:
        raise InvalidInputError(f"{path} is one date; no date index {t}")
    return da
