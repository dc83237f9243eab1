"""Frozen, validated specs that cross the orchestration boundary (also Prefect flow parameters).

Environment-driven defaults are read at call time by :func:`default_data_root` and
:func:`default_store_uri`, never at import time. Secrets are never fields of a spec: S3
credentials come from the standard ``AWS_*`` environment variables.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stliif.errors import InvalidInputError

__all__ = [
    "AcquireSpec",
    "CropSpec",
    "ETLSpec",
    "ImportSpec",
    "PipelineSpec",
    "RenderSpec",
    "StoreSpec",
    "default_data_root",
    "default_model",
    "default_store_uri",
]

_REPO = Path(__file__).resolve().parents[1]
Stage = Literal["import", "mask", "pansharpen", "subset", "histogram", "split"]
"""The ETL stages in pipeline order (the per-AOI ones of :data:`stliif.stages.AOI_STAGES`, then the split)."""
STAGES: tuple[Stage, ...] = get_args(Stage)


def default_data_root() -> Path:
    """``$STLIIF_DATA``, else ``../shared/data/worldstrat-subset`` beside the checkout."""
    env = os.environ.get("STLIIF_DATA")
    if env:
        return Path(env).expanduser()
    return _REPO.parent / "shared" / "data" / "worldstrat-subset"


def default_store_uri() -> str:
    """``$STLIIF_STORE``, else ``./stliif-store`` in the working directory."""
    return os.environ.get("STLIIF_STORE", "stliif-store")


def default_model() -> str:
    """``$STLIIF_MODEL``, else the checkpoint of record of this checkout (``models/record``)."""
    env = os.environ.get("STLIIF_MODEL")
    if env:
        return env
    record = Path(__file__).resolve().parents[1] / "models" / "record"
    return str(record) if record.is_dir() else "models/record"


def _iso_date(value: str | None, what: str) -> dt.datetime:
    """An ISO 8601 date or date-time (naive times are UTC)."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as err:
        raise InvalidInputError(f"invalid {what} {value!r}: use YYYY-MM-DD") from err
    return parsed.replace(tzinfo=parsed.tzinfo or dt.UTC)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StoreSpec(_Spec):
    """Where the versioned artifact store (an Icechunk repository) lives."""

    uri: str = Field(
        default_factory=default_store_uri,
        description="Local folder, or s3://bucket/prefix for any S3-compatible endpoint.",
    )
    branch: str = Field("main", description="Branch that stages read from and commit to.")
    endpoint_url: str | None = Field(None, description="S3 endpoint URL (MinIO, moto, ...).")
    region: str | None = Field(None, description="S3 region.")
    allow_http: bool = Field(False, description="Allow plain-HTTP S3 endpoints (local tests).")

    @field_validator("uri")
    @classmethod
    def _no_inline_secret(cls, v: str) -> str:
        if v.startswith("s3://") and "@" in urlsplit(v).netloc:
            raise InvalidInputError("store uri must not embed credentials: use AWS_* variables")
        return v

    @property
    def is_s3(self) -> bool:
        """Whether the store is on S3-compatible object storage."""
        return self.uri.startswith("s3://")


class _RawSpec(_Spec):
    """What an acquisition and an import share: an ``aoi`` that names ``raw/<aoi>``, an area
    (``bbox`` or ``polygon``) and bands, checked once here."""

    @field_validator("aoi", check_fields=False)
    @classmethod
    def _aoi_name(cls, v: str) -> str:
        from stliif.names import validate_name

        return validate_name(v, what="AOI name")

    def _check_area(self, bbox: Any, polygon: Any, bands: list[str], *, required: bool) -> None:
        if required and (bbox is None) == (polygon is None):
            raise InvalidInputError("give exactly one of bbox or polygon")
        if bbox is not None and polygon is not None:
            raise InvalidInputError("give at most one of bbox or polygon")
        if bbox is not None:
            from stliif.types import BBox

            BBox.from_like(bbox)
        from stliif.types import Bands

        Bands.from_like(bands)


class AcquireSpec(_RawSpec):
    """One acquisition query: area, dates, bands, cloud cover, providers, grid and budget."""

    aoi: str = Field(description="Name of the area: the cube is committed as raw/<aoi>.")
    providers: list[str] = Field(
        default_factory=lambda: ["earth-search"], min_length=1,
        description="Provider names (earth-search, planetary-computer, cdse) or STAC API URLs.",
    )
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Area as lon/lat (west, south, east, north); or give polygon."
    )
    polygon: str | None = Field(None, description="Area as a GeoJSON / shapefile / GeoPackage path or GeoJSON text.")
    start: str = Field(description="First date (YYYY-MM-DD or ISO 8601).")
    end: str = Field(description="Last date (inclusive); '..' means now (for scheduled refreshes).")
    bands: list[str] = Field(
        default_factory=lambda: ["red", "green", "blue", "nir"],
        description="Bands by common name or Sentinel-2 id (SCL is always added for masks).",
    )
    max_cloud: float | None = Field(None, ge=0, le=100, description="Maximum scene cloud cover, percent.")
    min_clear: float = Field(0.05, ge=0, le=1, description="Drop dates whose clear fraction over the area is lower.")
    max_items: int = Field(200, ge=1, le=10_000, description="Most items taken from each provider.")
    crs: str | None = Field(None, description="Output CRS; default the area's UTM zone.")
    resolution: float = Field(10.0, gt=0, description="Output pixel size in CRS units (metres for UTM).")
    resampling: Literal["nearest", "bilinear", "cubic"] = Field("bilinear", description="Resampling of the bands.")
    dem: bool = Field(False, description="Also load the Copernicus DEM GLO-30 onto the same grid.")
    max_mb: float = Field(4096.0, gt=0, description="Refuse requests whose loaded cube would exceed this (MiB).")
    collection: str | None = Field(None, description="Sentinel-2 collection id of a STAC API URL provider.")
    dem_collection: str | None = Field(None, description="DEM collection id of a STAC API URL provider.")
    dem_asset: str | None = Field(None, description="DEM asset key of a STAC API URL provider.")
    provider_name: str = Field("custom", description="Name recorded for a STAC API URL provider.")
    timeout: float = Field(60.0, gt=0, description="Seconds before a STAC request times out.")
    deadline: float = Field(20.0, gt=0, description="Seconds a provider has to answer a search, retries included.")
    retries: int = Field(5, ge=0, le=10, description="Retries of transient STAC failures (429, 5xx, timeouts).")
    quicklooks: str | None = Field(
        "stliif-out/acquire", description="Folder of the quicklook PNGs (None: none written)."
    )

    @model_validator(mode="after")
    def _one_area(self) -> AcquireSpec:
        from stliif.types import TimeRange

        self._check_area(self.bbox, self.polygon, self.bands, required=True)
        TimeRange.from_like((self.start, self.end))
        return self


class ImportSpec(_RawSpec):
    """One import of local or static data (a SAFE product, a static STAC catalog) into ``raw/<aoi>``."""

    source: str = Field(description="A Sentinel-2 SAFE folder or .zip, a static STAC catalog / collection / item (path or http URL), or a folder of dated band files.")
    aoi: str = Field(description="Name of the area: the cube is committed as raw/<aoi>.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Area as lon/lat (west, south, east, north); default the source's footprint."
    )
    polygon: str | None = Field(None, description="Area as a GeoJSON / shapefile / GeoPackage path or GeoJSON text.")
    start: str | None = Field(None, description="First date kept (YYYY-MM-DD); default no limit.")
    end: str | None = Field(None, description="Last date kept (inclusive); default no limit.")
    bands: list[str] = Field(
        default_factory=lambda: ["red", "green", "blue", "nir"],
        description="Bands by common name or Sentinel-2 id (the cloud mask is added when the source has one).",
    )
    min_clear: float = Field(0.0, ge=0, le=1, description="Drop dates whose clear fraction over the area is lower.")
    offset: float | None = Field(
        None, description="Band files only: reflectance offset of their DN (-0.1 for baseline >= 04.00, 0 before)."
    )
    level: Literal["L1C", "L2A"] = Field("L2A", description="Band files only: their processing level.")
    crs: str | None = Field(None, description="Output CRS; default the area's UTM zone.")
    resolution: float = Field(10.0, gt=0, description="Output pixel size in CRS units (metres for UTM).")
    resampling: Literal["nearest", "bilinear", "cubic"] = Field("bilinear", description="Resampling of the bands.")
    max_mb: float = Field(4096.0, gt=0, description="Refuse imports whose loaded cube would exceed this (MiB).")
    quicklooks: str | None = Field(
        "stliif-out/import", description="Folder of the quicklook PNGs (None: none written)."
    )

    @model_validator(mode="after")
    def _checked(self) -> ImportSpec:
        from stliif.types import TimeRange

        self._check_area(self.bbox, self.polygon, self.bands, required=False)
        if self.start is not None or self.end is not None:
            TimeRange.from_like((self.start or "1900-01-01", self.end or ".."))
        return self


class ETLSpec(_Spec):
    """What the ETL flow processes and how."""

    data: str = Field(
        default_factory=lambda: str(default_data_root()),
        description="WorldStrat dataset root (folder holding lr_dataset/ and hr_dataset/).",
    )
    aois: list[str] | None = Field(None, description="AOIs to process; all when empty.")
    stages: list[Stage] = Field(
        default_factory=lambda: list(STAGES), description="Stages to run, in pipeline order."
    )
    modes: list[Literal["paper", "clean"]] = Field(
        default_factory=lambda: list(get_args(Literal["paper", "clean"])),
        description="Histogram and subset modes: 'paper' reproduces the study, 'clean' is ours.",
    )
    k: int = Field(5, ge=1, le=16, description="Revisits per temporal subset.")
    skip_bad: bool = Field(
        False, description="Skip AOIs whose files are missing or corrupted, recording why."
    )
    split_seed: int = Field(0, description="Seed of the stratified split and validation carve-out.")
    force: bool = Field(False, description="Recompute and commit the selected stages even when up to date.")
    batch_size: int = Field(
        64, ge=1, le=100_000,
        description="At most this many AOIs per stage task, each committed at once: the AOIs are split into "
        "one batch per worker, or more when a batch would be larger (a killed run redoes at most a batch per worker).",
    )


class RenderSpec(_Spec):
    """A render request (:func:`stliif.render.run_render`): one date, or a range with a step."""

    aoi: str = Field(description="AOI whose LR cube is rendered: raw/<aoi>, or a crop's store path crop/raw/<aoi>/<name>.")
    model: str = Field(default_factory=lambda: default_model(), description="Checkpoint file, run folder, or a baseline name.")
    date: str | None = Field(None, description="Date to render (YYYY-MM-DD); or give start and end.")
    start: str | None = Field(None, description="First date of a time series.")
    end: str | None = Field(None, description="Last date of a time series (inclusive).")
    step: str = Field("5D", description="Step of a time series (pandas offset: 5D, 1W, ...).")
    scale: float | None = Field(None, gt=0, le=16, description="Output pixels per LR pixel side.")
    gsd: float | None = Field(None, gt=0, description="Output pixel size in metres (instead of scale).")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="Render only this lon/lat box of the AOI (west, south, east, north)."
    )
    k: int = Field(5, ge=1, le=16, description="Revisits given to the model.")
    min_clear: float = Field(0.5, ge=0, le=1, description="Use only dates whose clear fraction over the area is at least this.")
    max_gap_days: float = Field(30.0, gt=0, description="Refuse dates farther than this from any usable revisit.")
    allow_far: bool = Field(False, description="Render beyond max_gap_days anyway (flagged).")
    max_mb: float = Field(2048.0, gt=0, description="Memory budget of one tile (MiB): sizes the tiles.")
    tile: int | None = Field(None, ge=16, le=16384, description="Tile side in output pixels (default: sized from max_mb).")
    dask: str | None = Field(None, description="Spread tiles on Dask: 'local' (a LocalCluster) or a scheduler's tcp://host:port.")
    workers: int | None = Field(None, ge=1, le=256, description="Worker processes of dask='local' (default: one per core).")
    out_dir: str = Field("stliif-out/render", description="Folder of the GeoTIFF / PNG / GIF / MP4 files.")
    mode: Literal["product", "paper"] = Field(
        "product", description="product: the output degraded to the input grid equals the time-interpolated inputs; paper: the model's raw output (protocol P)."
    )

    @field_validator("dask")
    @classmethod
    def _dask_address(cls, v: str | None) -> str | None:
        if v is not None and v != "local" and not re.fullmatch(r"tcp://[\w.\-\[\]:]+:\d+", v):
            raise InvalidInputError(f"dask must be 'local' or a scheduler address tcp://host:port, got {v!r}")
        return v

    @field_validator("aoi")
    @classmethod
    def _aoi_name(cls, v: str) -> str:
        from stliif.names import validate_aoi

        return validate_aoi(v)

    @model_validator(mode="after")
    def _one_date_one_scale(self) -> RenderSpec:
        """Checked here once: one of scale/gsd, a date or a range, dates in order, a valid bbox."""
        from stliif.types import BBox

        if (self.scale is None) == (self.gsd is None):
            raise InvalidInputError("give exactly one of scale and gsd")
        if (self.date is None) == (self.start is None and self.end is None) or (self.start is None) != (self.end is None):
            raise InvalidInputError("give a date, or a start and an end (with a step)")
        first, last = (_iso_date(v, what) for v, what in ((self.date or self.start, "date"), (self.date or self.end, "end")))
        if last < first:
            raise InvalidInputError(f"end {self.end} is before start {self.start}")
        if self.bbox is not None:
            BBox.from_like(self.bbox)
        return self


class CropSpec(_Spec):
    """A crop request (:func:`stliif.stages.run_crop`, which checks it): a square, a bbox or a
    polygon's features cut out of a store artifact."""

    source: str = Field(description="Artifact to crop, e.g. raw/<aoi>.")
    name: str = Field(description="Name of the crop: committed as crop/<source>/<name>.")
    center: tuple[float, float] | None = Field(None, description="Centre (lon, lat) of a square, with size_m.")
    size_m: float | None = Field(None, description="Side of the square in metres.")
    bbox: tuple[float, float, float, float] | None = Field(None, description="Box (minlon, minlat, maxlon, maxlat).")
    polygon: str | None = Field(None, description="Polygon file (shapefile, GeoPackage, GeoJSON, a zip holding one, a /vsizip/ path) or GeoJSON text.")
    layer: str | None = Field(None, description="Layer of a multi-layer polygon file.")
    feature: int | None = Field(None, description="Crop to this feature only (0-based row).")
    where: str | None = Field(None, description="Crop to the features whose ATTR=VALUE (compared as text).")
    each: str | None = Field(None, description="One crop per feature, named by this attribute: crop/<source>/<name>/<value>.")


class PipelineSpec(_Spec):
    """The whole pipeline: ETL, evaluation of a model on protocol C, renders."""

    etl: ETLSpec = Field(default_factory=ETLSpec, description="What the ETL builds.")
    model: str = Field(
        default_factory=lambda: default_model(), description="Model evaluated and rendered (checkpoint, run folder or baseline)."
    )
    evaluate: bool = Field(True, description="Evaluate the model and the baselines on protocol C (test AOIs).")
    ssim: bool = Field(False, description="Compute SSIM in the evaluation (slower).")
    evaluate_aois: list[str] | None = Field(
        None, description="AOIs scored on C (default: the test AOIs of the paper split, when it exists)."
    )
    render_aois: list[str] | None = Field(
        None, description="AOIs rendered at their HR date (default: the first 3 AOIs scored)."
    )
    render_scale: float = Field(4.0, gt=0, le=16, description="Scale of the renders.")
