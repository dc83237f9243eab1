"""From one query to a versioned Sentinel-2 L2A (+ DEM) datacube: search, load, commit.

:func:`search` asks several STAC providers concurrently with one validated query, merges,
de-duplicates and harmonises what they return. :func:`stliif.sources.load.load_cube` loads the
items with odc-stac,
lazily with dask, onto one explicit grid (default: the AOI's UTM zone at 10 m), as the same
schema the WorldStrat import writes (``raw/<aoi>``), so the downstream stages apply unchanged:

``reflectance`` (time, band, y, x) float32 surface reflectance (NaN where no data);
``scl``, ``clm`` (cloud: SCL 8/9/10, or the items' ``CLM`` asset), ``data_mask`` (time, y, x)
uint8; optional ``dem`` (y, x) float32 metres on the same grid; along ``time``: ``revisit``,
``cloud_cover``, ``clear_fraction``, ``provider``, ``item_ids``, ``processing_baseline``,
``reflectance_offset``. Items of one solar day (adjacent tiles) are mosaicked into one date.

:func:`run_acquire` commits ``raw/<aoi>`` once per acquisition; a later run with a longer date
range loads only the acquisitions the stored cube lacks and commits a new snapshot, so the
downstream stages recompute only that AOI. A request whose estimated size exceeds its budget is
refused before any pixel is read; an outcome with no usable date commits nothing and says why.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from stliif.config import AcquireSpec
from stliif.errors import (
    DataAccessError,
    InvalidInputError,
    StliifError,
    TransientDataAccessError,
)
from stliif.raw_schema import check_raw
from stliif.sources.load import REFLECTANCE_UNITS, load_cube, load_dem
from stliif.sources.providers import DEM, S2_L2A, Provider, custom_provider, get_provider
from stliif.sources.stac import (
    check_asset_hrefs,
    deduplicate,
    filter_items_with_assets,
    harmonise,
    provider_of,
    tag_provider,
)
from stliif.sources.stac_search import (
    RETRY_STATUSES,
    build_search_params,
    make_retrying_client,
    static_stac_hint,
)
from stliif.store import ArtifactStore
from stliif.types import AOI, Bands, BBox, TimeRange

__all__ = [
    "AcquireResult",
    "SearchResult",
    "area_of",
    "commit_items",
    "estimate_bytes",
    "run_acquire",
    "search",
    "target_geobox",
    "utm_crs",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Area and grid
# --------------------------------------------------------------------------------------------


def area_of(spec: AcquireSpec) -> AOI:
    """The request's area as a validated lon/lat polygon (a bbox, or the union of a polygon
    file's / GeoJSON's features)."""
    if spec.bbox is not None:
        return AOI.from_like(BBox.from_like(spec.bbox).to_geojson())
    from stliif.preprocess.vectors import read_polygon

    source: Any = spec.polygon
    if isinstance(source, str) and source.lstrip().startswith("{"):
        import json

        try:
            source = json.loads(source)
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"polygon is not valid GeoJSON: {err}") from err
    gdf = read_polygon(source).to_crs("EPSG:4326")
    return AOI.from_like(gdf.union_all())


def utm_crs(lon: float, lat: float) -> str:
    """The WGS 84 / UTM zone of a point, as ``EPSG:326zz`` (north) or ``EPSG:327zz`` (south)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def target_geobox(area: AOI, crs: str | None = None, resolution: float = 10.0) -> Any:
    """The output grid: ``area``'s bounds in ``crs`` (default its UTM zone) at ``resolution``
    (CRS units), pixel edges on multiples of the resolution (stable across refreshes)."""
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    c = area.geometry.centroid
    target = crs or utm_crs(c.x, c.y)
    try:
        geom = Geometry(area.geometry, "EPSG:4326").to_crs(target)
    except Exception as err:
        raise InvalidInputError(f"cannot use CRS {target!r}: {err}") from err
    if not math.isfinite(resolution) or resolution <= 0:
        raise InvalidInputError(f"resolution must be positive, got {resolution!r}")
    return GeoBox.from_bbox(geom.boundingbox, target, resolution=resolution)


WORKING_FACTOR = 6
"""Peak working memory of an acquisition over the size of its cube: DN, float32 conversion,
band stacking, masking and the store's encoding each hold a copy for a while (measured 3.6x to
4.6x in 4 runs for 8 dates x 12 bands at 2.5 m, bench/memory.py; 6 leaves a margin)."""


def estimate_bytes(n_items: int, n_bands: int, geobox: Any) -> int:
    """Working memory of loading ``n_items`` items: :data:`WORKING_FACTOR` x the cube's size
    (float32 reflectance + 3 uint8 masks per item and pixel)."""
    h, w = geobox.shape
    return WORKING_FACTOR * int(n_items) * int(h) * int(w) * (4 * int(n_bands) + 3)


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """What a multi-provider search found."""

    items: list[pystac.Item]
    """Harmonised, de-duplicated items that have every requested band (sorted by time)."""
    found: dict[str, int] = field(default_factory=dict)
    """Items each provider returned, before de-duplication."""
    errors: dict[str, str] = field(default_factory=dict)
    """Providers that failed, with the reason (the others' items are still used)."""


def check_acquire(spec: AcquireSpec) -> None:
    """Check a request before any search: the area (bbox, or polygon file or GeoJSON), the grid
    (CRS, resolution) and the providers."""
    target_geobox(area_of(spec), spec.crs, spec.resolution)
    _providers(spec)


def _providers(spec: AcquireSpec) -> list[Provider]:
    out: list[Provider] = []
    for name in dict.fromkeys(spec.providers):
        p = get_provider(name)
        if p.name == "custom":  # a STAC API URL: named, and given the request's collections
            n = sum(q.name.startswith(spec.provider_name) for q in out)
            p = custom_provider(
                p.url, name=spec.provider_name if n == 0 else f"{spec.provider_name}-{n + 1}",
                collection=spec.collection or p.collection(S2_L2A),
                dem_collection=spec.dem_collection, dem_asset=spec.dem_asset,
            )
        elif spec.collection is not None or spec.dem_collection is not None:
            raise InvalidInputError("collection / dem_collection apply to STAC API URL providers only")
        out.append(p)
    return out


def _search_one(p: Provider, area: AOI, spec: AcquireSpec, role: str) -> list[pystac.Item]:
    params = build_search_params(
        p, area, (spec.start, spec.end), max_cloud=spec.max_cloud if role == S2_L2A else None,
        limit=min(spec.max_items, 100), max_items=spec.max_items, role=role,
    )
    if role == DEM:  # the DEM is static: its items' dates say nothing about the request's
        params.pop("datetime")
    client = make_retrying_client(p.url, timeout=spec.timeout, retries=spec.retries)
    from pystac_client.exceptions import APIError
    from pystac_client.warnings import DoesNotConformTo

    try:
        items = list(client.search(**params).items())
    except DoesNotConformTo as err:  # a static catalog: no /search
        raise InvalidInputError(static_stac_hint(p.url)) from err
    except APIError as err:
        status = getattr(err, "status_code", None)
        kind = TransientDataAccessError if status is None or status in RETRY_STATUSES else DataAccessError
        raise kind(f"{p.name}: search failed (status {status or 'no response'}) after {spec.retries} retries") from err
    except OSError as err:  # connection errors and timeouts (requests' errors are OSErrors)
        raise TransientDataAccessError(f"{p.name}: search failed after {spec.retries} retries: {type(err).__name__}") from err
    except ValueError as err:  # a body that is not JSON, or not STAC
        raise DataAccessError(f"{p.name}: malformed search response ({type(err).__name__}: {str(err)[:120]})") from err
    return tag_provider(items, p)


def search(spec: AcquireSpec, *, role: str = S2_L2A) -> SearchResult:
    """Search every provider of ``spec`` concurrently and merge the results.

    A provider that fails is recorded in :attr:`SearchResult.errors`; the search fails only
    when every provider failed.

    Raises:
        InvalidInputError: invalid query (checked before any request).
        DataAccessError: every provider failed.
    """
    area = area_of(spec)
    TimeRange.from_like((spec.start, spec.end))
    providers = _providers(spec)
    found: dict[str, list[pystac.Item]] = {}
    errors: dict[str, str] = {}
    transient = True
    # One daemon thread per provider, waited for until the request's deadline: a provider that
    # has not answered by then (a dead host retried with backoff, a stall) is recorded as
    # failed, and its thread cannot hold the process up once the run ends.
    outcomes: dict[str, list[pystac.Item] | BaseException] = {}

    def ask(p: Provider) -> None:
        try:
            outcomes[p.name] = _search_one(p, area, spec, role)
        except BaseException as err:
            outcomes[p.name] = err

    threads = {p.name: threading.Thread(target=ask, args=(p,), daemon=True, name=f"search-{p.name}") for p in providers}
    for t in threads.values():
        t.start()
    end = time.monotonic() + spec.deadline
    for name, t in threads.items():
        t.join(max(0.0, end - time.monotonic()))
        late = TransientDataAccessError(f"{name}: no answer within the deadline of {spec.deadline:g} s")
        outcome = late if t.is_alive() else outcomes[name]
        if isinstance(outcome, InvalidInputError):
            raise outcome
        if isinstance(outcome, StliifError):
            errors[name] = str(outcome)
            transient = transient and isinstance(outcome, TransientDataAccessError)
            log.warning("provider %s failed: %s", name, outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            found[name] = outcome
    if errors and not found:
        kind = TransientDataAccessError if transient else DataAccessError
        raise kind("every provider failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    items = [i for its in found.values() for i in its]
    counts = {k: len(v) for k, v in found.items()}
    if role == DEM or not items:
        return SearchResult(items, counts, errors)
    by_name = {p.name: p for p in providers}
    items = deduplicate(items, preference=[p.name for p in providers])
    items = harmonise(items)
    wanted = [b for b in Bands.from_like(spec.bands).names if b != "SCL"]
    kept = []
    for name, p in by_name.items():
        mine = [i for i in items if provider_of(i) == name]
        if mine:  # items without SCL are kept: their cloud mask is CLM, or recorded as none
            mine = filter_items_with_assets(mine, wanted, provider=p, min_items=0)
            check_asset_hrefs(mine, [*wanted, "SCL"], provider=p)
            kept += mine
    kept.sort(key=lambda i: (i.datetime or dt.datetime.min.replace(tzinfo=dt.UTC), i.id))
    return SearchResult(kept, counts, errors)


# --------------------------------------------------------------------------------------------
# Acquire and commit
# --------------------------------------------------------------------------------------------


@dataclass
class AcquireResult:
    """What :func:`run_acquire` did."""

    aoi: str
    status: str
    """``"committed"``, ``"unchanged"`` (nothing new) or ``"no-data"`` (nothing usable; no commit)."""
    reason: str = ""
    snapshot_id: str = ""
    dates: list[str] = field(default_factory=list)
    """Dates of the stored cube after this run."""
    new_dates: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    """Dates left out, with why (cloudy over the AOI)."""
    found: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    """Metadata table: date, provider, cloud cover, clear fraction, processing baseline."""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def metadata_table(cube: xr.Dataset) -> list[dict[str, Any]]:
    """One row per date: date, provider, items, cloud cover, clear fraction, baseline, offset."""
    rows = []
    for i in range(cube.sizes["time"]):
        c = cube.isel(time=i)
        cc = float(c["cloud_cover"])
        rows.append({
            "date": str(c["time"].values)[:10],
            "provider": str(c["provider"].values),
            "items": str(c["item_id"].values),
            "cloud_cover": None if math.isnan(cc) else round(cc, 2),
            "clear_fraction": round(float(c["clear_fraction"]), 4),
            "processing_baseline": str(c["processing_baseline"].values),
            "reflectance_offset": float(c["reflectance_offset"]),
            **{k: str(c[k].values) for k in ("processing_level", "cloud_mask", "source_kind", "source_href")
               if k in c.coords},
        })
    return rows


def _with_provenance(stored: xr.Dataset) -> xr.Dataset:
    """A cube committed before per-date provenance existed, with the values it implied (L2A, SCL, STAC)."""
    n = stored.sizes["time"]
    defaults = {"processing_level": "L2A", "cloud_mask": "SCL", "source_kind": "stac", "source_href": ""}
    missing = {k: ("time", [v] * n) for k, v in defaults.items() if k not in stored.coords}
    return stored.assign_coords(missing) if missing else stored


def _item_ids(cube: xr.Dataset) -> list[str]:
    """Every item id of a cube (a mosaicked date lists its items separated by spaces)."""
    return [i for ids in cube["item_id"].values.tolist() for i in str(ids).split()]


def _same_grid(stored: xr.Dataset, geobox: Any) -> bool:
    from rasterio.crs import CRS

    return (
        stored.rio.crs == CRS.from_user_input(str(geobox.crs))
        and (stored.sizes["y"], stored.sizes["x"]) == tuple(geobox.shape)
        and np.allclose(tuple(stored.rio.transform())[:6], tuple(geobox.affine)[:6])
    )


def run_acquire(
    store: ArtifactStore, spec: AcquireSpec, *, run_id: str | None = None
) -> AcquireResult:
    """Search, load and commit ``raw/<spec.aoi>``; on a refresh load only the new dates.

    Raises:
        InvalidInputError: invalid request, over the size budget, or a grid that differs from
            the stored cube's (use another AOI name).
        DataAccessError: every provider failed, or an asset could not be read.
    """
    area = area_of(spec)
    geobox = target_geobox(area, spec.crs, spec.resolution)
    found = search(spec)
    providers = {p.name: p for p in _providers(spec)}

    def dem() -> xr.DataArray:
        p = next(iter(providers.values()))
        return load_dem(search(spec, role=DEM).items, geobox, p)

    return commit_items(
        store, spec.aoi, found.items, area, geobox, bands=spec.bands, providers=providers,
        resampling=spec.resampling, min_clear=spec.min_clear, max_mb=spec.max_mb, stage="acquire",
        params=spec.model_dump(mode="json"), attrs={"source": "stac", "providers": list(providers)},
        result=AcquireResult(spec.aoi, "no-data", found=found.found, errors=found.errors),
        dem=dem if spec.dem else None, run_id=run_id,
        nothing=f"no items match (providers returned {found.found}"
                f"{', errors: ' + str(found.errors) if found.errors else ''})",
    )


def commit_items(
    store: ArtifactStore,
    aoi: str,
    items: Sequence[pystac.Item],
    area: AOI,
    geobox: Any,
    *,
    bands: Sequence[str],
    providers: Mapping[str, Provider],
    resampling: str,
    min_clear: float,
    max_mb: float,
    stage: str,
    params: Mapping[str, Any],
    attrs: Mapping[str, Any],
    result: AcquireResult,
    nothing: str,
    dem: Callable[[], xr.DataArray] | None = None,
    run_id: str | None = None,
) -> AcquireResult:
    """Load the harmonised ``items`` that ``raw/<aoi>`` lacks and commit the cube once: what
    :func:`run_acquire` and :func:`stliif.ingest.run_import` share (per-date provenance, the
    clear-fraction filter, the size budget, appending to a stored cube on the same grid)."""
    path = f"raw/{aoi}"
    stored = store.read(path, load=True) if store.version(path) is not None else None
    if stored is not None and not _same_grid(stored, geobox):
        raise InvalidInputError(
            f"{path} exists on another grid (CRS, resolution or extent changed): {stage} under a new AOI name"
        )
    have = set()
    if stored is not None:
        have = set(_item_ids(stored))
        result.dates = [str(t)[:10] for t in stored["time"].values]
    new_items = [i for i in items if i.id not in have]
    if not new_items:
        result.status = "unchanged" if stored is not None else "no-data"
        result.reason = "no new acquisitions" if stored is not None else nothing
        if stored is not None:
            result.snapshot_id = store.snapshot_id(store.spec.branch)
            result.table = metadata_table(stored)
        return result
    names = [b for b in Bands.from_like(bands).names if b != "SCL"]
    need = estimate_bytes(len(new_items), len(names), geobox) + 2 * (0 if stored is None else int(stored.nbytes))
    if need > max_mb * 2**20:
        raise InvalidInputError(
            f"request needs about {need / 2**20:.0f} MiB of memory ({len(new_items)} items x {len(names)} bands on a "
            f"{geobox.shape[0]}x{geobox.shape[1]} grid), above the budget of {max_mb:g} MiB: narrow the "
            "area, dates or bands, or raise max_mb"
        )
    cube = load_cube(new_items, names, geobox, providers=providers, area=area, resampling=resampling)
    times = cube["time"].values
    try:  # pixels are read here (the cube is lazy): a bad asset fails now, before any commit
        clear = cube["clear_fraction"].values
        valid = (cube["data_mask"] == 1).any(("y", "x")).values
        keep = (clear >= min_clear) & valid
        cube = cube.isel(time=np.flatnonzero(keep)).load()
    except Exception as err:
        raise DataAccessError(f"loading {len(new_items)} item(s) failed: {err}") from err
    for t, c, v in zip(times[~keep], clear[~keep], valid[~keep], strict=True):
        result.dropped[str(t)[:10]] = f"clear fraction {c:.3f} < {min_clear:g}" if v else "no valid pixel over the area"
    if cube.sizes["time"] == 0 and stored is None:
        result.reason = (f"all {len(clear)} date(s) too cloudy over the AOI (min_clear {min_clear:g})" if valid.all()
                         else f"no usable date over the area ({'; '.join(f'{d}: {w}' for d, w in result.dropped.items())})")
        return result
    if cube.sizes["time"] == 0:
        assert stored is not None  # a first acquisition without a usable date returned above
        result.status, result.reason = "unchanged", "every new date too cloudy"
        result.snapshot_id = store.snapshot_id(store.spec.branch)
        result.table = metadata_table(stored)
        return result
    result.new_dates = [str(t)[:10] for t in cube["time"].values]
    if dem is not None:
        cube["dem"] = dem().load() if stored is None or "dem" not in stored else stored["dem"]
    if stored is not None:
        stored = _with_provenance(stored)
        if str(stored["processing_level"].values[0]) != cube.attrs["processing_level"]:
            raise InvalidInputError(
                f"{path} holds {stored['processing_level'].values[0]} data and these items are "
                f"{cube.attrs['processing_level']}: {stage} under a new AOI name")
        cube = xr.concat([stored.drop_vars("dem", errors="ignore"), cube.drop_vars("dem", errors="ignore")],
                         dim="time", data_vars="all").sortby("time")
        if "dem" in stored:
            cube["dem"] = stored["dem"]
        cube = cube.assign_coords(revisit=("time", np.arange(1, cube.sizes["time"] + 1, dtype=np.int16)))
    level = str(cube["processing_level"].values[0])
    cube.attrs.update({
        "aoi": aoi, **attrs, "geometry": area.to_geojson(),
        "reflectance_units": REFLECTANCE_UNITS[level], "processing_level": level,
    })
    cube = cube.rio.write_crs(str(geobox.crs)).rio.write_transform(geobox.affine)
    check_raw(cube, provenance=True)
    inputs = {path: store.version(path) or ""} if stored is not None else {}
    commit = store.commit({path: cube}, stage=stage, params={**params, "items": sorted(_item_ids(cube))},
                          inputs=inputs, run_id=run_id,
                          message=f"{stage}: {path} (+{len(result.new_dates)} dates)")
    result.status = "committed" if commit.created else "unchanged"
    result.snapshot_id = commit.snapshot_id
    result.dates = [str(t)[:10] for t in cube["time"].values]
    result.table = metadata_table(cube)
    return result
