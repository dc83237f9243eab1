"""The preprocessing stages as plain functions over the artifact store.

A stage run for one AOI: read its inputs' versions, derive the run key, and (unless every output
already carries that key) compute the outputs and commit them once; :func:`run_stage_batch`
does it for many AOIs in one commit. Stages never import Prefect; ``tasks/`` wraps
:func:`run_stage_batch`, and builds the Prefect cache key from :func:`stage_key` (given only
when the open store already holds the outputs, so a cache hit is never stale).

Artifacts (``<mode>`` is ``paper`` or ``clean``)::

    raw/<aoi>                 LR cube (time, band, y, x) + masks            stage import
    hr/<aoi>/pan, hr/<aoi>/rgbn   SPOT images on the LR footprint          stage import
    mask/<aoi>                clear mask and clear fraction per revisit     stage mask
    pansharpened/<aoi>        RGBN on the pan grid                          stage pansharpen
    subset/<mode>/<aoi>       selected revisits, dates, gaps (JSON)         stage subset
    matched/<mode>/<aoi>      V-channel matched RGB revisits (clean: + nir)  stage histogram
    splits/<name>             train / val / test manifest (JSON)            stage split
    crop/<source>/<name>      square, bbox or polygon crop of an artifact   run_crop (check_crop)

AOIs: the ``import`` stage reads the WorldStrat folder, so its AOIs are the folder's; every other
stage reads only the store, so its AOIs are those with an LR cube there (:func:`store_aois`):
imported, acquired, or a crop of one, named by its store path (``crop/raw/<aoi>/<name>``, see
:mod:`stliif.names`). :func:`resolve_run_aois` is that one rule, used by the CLI and the flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stliif.config import STAGES, CropSpec
from stliif.cubes import read_cube
from stliif.errors import (
    DataAccessError,
    InvalidInputError,
    NoDataError,
    StliifError,
    TransientDataAccessError,
)
from stliif.names import aoi_cube_path, validate_aoi, validate_name
from stliif.preprocess.crop import crop_polygon, crop_square
from stliif.preprocess.histogram import (
    NIR_BAND,
    PAPER_REFERENCE_REVISIT,
    adapt_clean,
    adapt_paper,
    match_nir_clean,
)
from stliif.preprocess.mask import compute_masks
from stliif.preprocess.pansharpen import pansharpen
from stliif.preprocess.split import paper_split, stratified_split
from stliif.preprocess.temporal import select_revisits
from stliif.sources import worldstrat
from stliif.store import ArtifactStore, CommitBatch, run_key

__all__ = [
    "AOI_STAGES", "FOLDER_STAGES", "CropPlan", "StageResult", "check_crop", "folder_aois", "plan_stages",
    "resolve_run_aois", "run_crop", "run_split", "run_stage", "run_stage_batch", "split_aois", "stage_key", "store_aois",
]

log = logging.getLogger(__name__)

Artifacts = dict[str, xr.Dataset | dict[str, Any] | list[Any]]


@dataclass(frozen=True)
class StageResult:
    """A reference to what a stage run did (small: passed between Prefect tasks)."""

    stage: str
    aoi: str | None
    status: str  # "committed", "unchanged", "skipped"; in a batch also "failed", "not run"
    run_key: str = ""
    snapshot_id: str = ""
    artifacts: tuple[str, ...] = ()
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


@dataclass(frozen=True)
class _Stage:
    outputs: Callable[[str, Mapping[str, Any]], list[str]]
    inputs: Callable[[ArtifactStore, Path, str, Mapping[str, Any]], dict[str, str]]
    compute: Callable[[ArtifactStore, Path, str, Mapping[str, Any]], Artifacts]
    summary: Callable[[Artifacts], dict[str, Any]] = lambda _: {}


def _need(store: ArtifactStore, *paths: str) -> dict[str, str]:
    """Versions of the input artifacts ``paths``; a missing one is a NoDataError."""
    out = {}
    for p in paths:
        v = store.version(p)
        if v is None:
            raise NoDataError(f"input artifact {p!r} is missing: run its stage first")
        out[p] = v
    return out


# -- import ----------------------------------------------------------------------------------
def _import_outputs(aoi: str, params: Mapping[str, Any]) -> list[str]:
    return [f"raw/{aoi}", f"hr/{aoi}/pan", f"hr/{aoi}/rgbn"]


def _import_inputs(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> dict[str, str]:
    return {"source": worldstrat.source_fingerprint(worldstrat.find_aoi_files(data, aoi))}


def _import_compute(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> Artifacts:
    lr, hr = worldstrat.read_aoi(data, aoi)
    return {
        f"raw/{aoi}": lr,
        f"hr/{aoi}/pan": hr.pan.to_dataset(),
        f"hr/{aoi}/rgbn": hr.rgbn.to_dataset(),
    }


def _import_summary(out: Artifacts) -> dict[str, Any]:
    lr = next(v for k, v in out.items() if k.startswith("raw/"))
    assert isinstance(lr, xr.Dataset)
    return {
        "revisits": int(lr.sizes["time"]),
        "size": [int(lr.sizes["y"]), int(lr.sizes["x"])],
        "dates": [str(t)[:10] for t in lr["time"].values],
        "hr_date": lr.attrs.get("hr_date", ""),
    }


# -- mask ------------------------------------------------------------------------------------
def _mask_inputs(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> dict[str, str]:
    return _need(store, aoi_cube_path(aoi))


def _mask_compute(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> Artifacts:
    return {f"mask/{aoi}": compute_masks(read_cube(store, aoi, cache=True))}


def _mask_summary(out: Artifacts) -> dict[str, Any]:
    (ds,) = out.values()
    assert isinstance(ds, xr.Dataset)
    return {"clear_fraction": [round(float(v), 4) for v in ds["clear_fraction"].values]}


# -- pansharpen ------------------------------------------------------------------------------
def _pansharpen_inputs(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> dict[str, str]:
    return _need(store, f"hr/{aoi}/pan", f"hr/{aoi}/rgbn")


def _pansharpen_compute(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> Artifacts:
    pan = store.read(f"hr/{aoi}/pan", load=True)["pan"]
    rgbn = store.read(f"hr/{aoi}/rgbn", load=True)["rgbn"]
    sharp = pansharpen(pan, rgbn, method=params.get("method", "brovey"))
    return {f"pansharpened/{aoi}": sharp.rename("rgbn").to_dataset(promote_attrs=True)}


# -- subset ----------------------------------------------------------------------------------
def _subset_inputs(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> dict[str, str]:
    return _need(store, aoi_cube_path(aoi), f"mask/{aoi}")


def _subset_compute(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> Artifacts:
    import dataclasses

    lr = read_cube(store, aoi, cache=True)[["clm"]]  # dates, revisits, HR date, cloud mask
    clear = store.read(f"mask/{aoi}", load=True, cache=True)["clear_fraction"].values.tolist()
    notes: tuple[str, ...] = ()
    k = int(params.get("k", 5))
    if "hr_date" not in lr.attrs:  # an acquired area or a crop: no HR image, maybe few dates
        if params["mode"] == "paper":
            raise NoDataError(f"{aoi} has no HR image date: paper mode reproduces the study's AOIs only")
        lr.attrs["hr_date"] = str(lr["time"].values[-1])[:10]
        notes = (f"no HR image: revisits nearest the cube's last date {lr.attrs['hr_date']}",)
        k = min(k, lr.sizes["time"])
    subset = select_revisits(lr, mode=params["mode"], k=k, clear_fraction=clear)
    if notes:
        subset = dataclasses.replace(subset, notes=(*subset.notes, *notes))
    return {f"subset/{params['mode']}/{aoi}": subset.to_dict()}


def _subset_summary(out: Artifacts) -> dict[str, Any]:
    (doc,) = out.values()
    assert isinstance(doc, dict)
    return {k: doc[k] for k in ("mode", "revisits", "dates", "midpoint_gap_days")}


# -- histogram -------------------------------------------------------------------------------
def _histogram_inputs(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> dict[str, str]:
    if params["mode"] == "paper":
        return _need(store, aoi_cube_path(aoi))
    return _need(store, aoi_cube_path(aoi), f"mask/{aoi}", f"subset/clean/{aoi}")


def _histogram_compute(store: ArtifactStore, data: Path, aoi: str, params: Mapping[str, Any]) -> Artifacts:
    lr = read_cube(store, aoi, cache=True)
    if params["mode"] == "paper":
        if aoi not in PAPER_REFERENCE_REVISIT:
            raise NoDataError(f"no recorded paper reference revisit for AOI {aoi!r}")
        rgb = adapt_paper(lr, reference_revisit=PAPER_REFERENCE_REVISIT[aoi])
    else:
        revisits = store.read_json(f"subset/clean/{aoi}")["revisits"]
        clear = store.read(f"mask/{aoi}", load=True, cache=True)["clear"].astype(bool)
        rgb = adapt_clean(lr, revisits=revisits, clear=clear)
    ds = rgb.rename("rgb").to_dataset()
    ds.attrs = {"aoi": aoi, "mode": params["mode"], **rgb.attrs, "bands": "B04,B03,B02"}
    if params["mode"] == "clean" and NIR_BAND in lr["band"].values:  # paper: the study's RGB frames only
        nir = match_nir_clean(lr, revisits=revisits, clear=clear, rgb_valid=np.isfinite(rgb.values).all(axis=1))
        ds["nir"] = nir
        ds.attrs.update(bands="B04,B03,B02,B08", nir_matching=nir.attrs["histogram_matching"])
    return {f"matched/{params['mode']}/{aoi}": ds.assign_coords(spatial_ref=lr["spatial_ref"])}


AOI_STAGES: dict[str, _Stage] = {
    "import": _Stage(_import_outputs, _import_inputs, _import_compute, _import_summary),
    "mask": _Stage(lambda aoi, p: [f"mask/{aoi}"], _mask_inputs, _mask_compute, _mask_summary),
    "pansharpen": _Stage(
        lambda aoi, p: [f"pansharpened/{aoi}"], _pansharpen_inputs, _pansharpen_compute
    ),
    "subset": _Stage(
        lambda aoi, p: [f"subset/{p['mode']}/{aoi}"], _subset_inputs, _subset_compute, _subset_summary
    ),
    "histogram": _Stage(
        lambda aoi, p: [f"matched/{p['mode']}/{aoi}"], _histogram_inputs, _histogram_compute
    ),
}
"""Per-AOI stages in pipeline order."""
if (*AOI_STAGES, "split") != STAGES:  # the one list of stage names is stliif.config.Stage
    raise RuntimeError(f"AOI_STAGES {list(AOI_STAGES)} + split differ from stliif.config.STAGES {STAGES}")


FOLDER_STAGES = frozenset({"import"})
"""Stages that read the WorldStrat folder (their AOIs are the folder's); the others read only
the store."""


def _check_aoi(stage: str, aoi: str) -> str:
    """A folder stage takes a folder AOI (a plain name); a store stage any store AOI name."""
    return validate_name(aoi, what="AOI") if stage in FOLDER_STAGES else validate_aoi(aoi)


def _params(stage: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    if stage not in AOI_STAGES:
        raise InvalidInputError(f"unknown stage {stage!r}; choose from {sorted(AOI_STAGES)}")
    return dict(params or {})


def stage_key(
    store: ArtifactStore, stage: str, aoi: str, *, data: str | Path, params: Mapping[str, Any] | None = None
) -> str | None:
    """A key naming this stage run's result in *this* store, or ``None`` when it has work to do.

    The key is the store's identity (:attr:`ArtifactStore.store_id`), the branch, and the run key
    the stage would commit under now; it is given only when every output already carries that run
    key, i.e. exactly when :func:`run_stage` would answer ``unchanged``. A cache keyed on it can
    therefore never hold a "committed" that the open store does not contain: a store deleted and
    rebuilt at the same path, or another store at the same path, has another identity, and
    missing or older outputs give no key at all.
    """
    p = _params(stage, params)
    spec = AOI_STAGES[stage]
    key = run_key(stage, {"aoi": aoi, **p}, spec.inputs(store, Path(data), _check_aoi(stage, aoi), p))
    if any(store.version(o) != key for o in spec.outputs(aoi, p)):
        return None
    return f"{store.store_id}-{store.spec.branch}-{key}"


def run_stage(
    store: ArtifactStore,
    stage: str,
    aoi: str,
    *,
    data: str | Path,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    skip_errors: bool = False,
    force: bool = False,
) -> StageResult:
    """Run one stage for one AOI: compute and commit its outputs unless they are up to date
    (``force``: compute and commit them anyway, under the same run key).

    Nothing usable (:class:`NoDataError`: a missing input, no clear revisit, ...) gives a
    ``skipped`` result with the reason; so does a missing or corrupted source
    (:class:`DataAccessError`) when ``skip_errors`` is set. Otherwise errors propagate.
    """
    p = _params(stage, params)
    prep = _prepare(store, stage, aoi, Path(data), p, skip_errors=skip_errors, force=force)
    if isinstance(prep, StageResult):
        return prep
    inputs, artifacts = prep
    result = store.commit(
        artifacts, stage=stage, params={"aoi": aoi, **p}, inputs=inputs, run_id=run_id,
        message=f"{stage} {aoi}", force=force,
    )
    return StageResult(
        stage, aoi, "committed" if result.created else "unchanged", result.run_key,
        result.snapshot_id, result.artifacts, summary=AOI_STAGES[stage].summary(artifacts),
    )


def _prepare(
    store: ArtifactStore, stage: str, aoi: str, data: Path, p: dict[str, Any], *, skip_errors: bool, force: bool
) -> StageResult | tuple[dict[str, str], Artifacts]:
    """A stage run's inputs and computed outputs, or its result when there is nothing to commit
    (``unchanged``, or ``skipped``: see :func:`run_stage`)."""
    spec = AOI_STAGES[stage]
    _check_aoi(stage, aoi)
    try:
        inputs = spec.inputs(store, data, aoi, p)
        key = run_key(stage, {"aoi": aoi, **p}, inputs)
        outputs = spec.outputs(aoi, p)
        if not force and all(store.version(o) == key for o in outputs):
            return StageResult(stage, aoi, "unchanged", key, store.snapshot_id(), tuple(outputs))
        return inputs, spec.compute(store, data, aoi, p)
    except (DataAccessError, NoDataError) as err:
        if isinstance(err, DataAccessError) and not skip_errors:
            raise
        log.warning("stage %s skipped AOI %s: %s", stage, aoi, err)
        return StageResult(stage, aoi, "skipped", reason=str(err))


def run_stage_batch(
    store: ArtifactStore,
    stage: str,
    aois: Sequence[str],
    *,
    data: str | Path,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    skip_errors: bool = False,
    force: bool = False,
    keep_going: bool = False,
    blocked: Collection[str] = (),
) -> list[StageResult]:
    """Run one stage for many AOIs as :func:`run_stage` does, AOI by AOI, but commit the work of
    all of them at once: one commit (:meth:`ArtifactStore.batch`), none when nothing changed.

    Each AOI keeps its run key, its lineage (the commit's ``runs``) and its own result:
    ``committed`` only for the AOIs whose outputs changed, so a rerun after one AOI's refresh
    recomputes and commits that AOI alone. An error computing an AOI that :func:`run_stage`
    would raise is raised after the AOIs before it are committed; with ``keep_going`` it is that
    AOI's ``failed`` result instead (its reason the error) and the others go on, except a
    :class:`TransientDataAccessError`, raised so that the caller can retry. An error writing
    (or an interrupt) commits nothing, so no AOI's artifacts are committed out of step. The
    ``blocked`` AOIs (an upstream stage failed for them) get a ``not run`` result.
    """
    p = _params(stage, params)
    spec, data = AOI_STAGES[stage], Path(data)
    todo = [a for a in dict.fromkeys(aois) if a not in blocked]
    results: list[StageResult] = []
    written: list[tuple[int, dict[str, Any]]] = []  # (index in results, summary)
    batch: CommitBatch | None = None  # made at the first AOI with work to commit
    for aoi in dict.fromkeys(aois):
        if aoi in blocked:
            results.append(StageResult(stage, aoi, "not run", reason="an upstream stage failed"))
            continue
        try:
            prep = _prepare(store, stage, aoi, data, p, skip_errors=skip_errors, force=force)
        except Exception as err:
            if not keep_going or isinstance(err, TransientDataAccessError):
                if batch is not None:
                    batch.commit()  # every AOI before this one is whole
                raise
            if not isinstance(err, StliifError):
                log.exception("stage %s failed for AOI %s", stage, aoi)
            results.append(StageResult(stage, aoi, "failed", reason=str(err) or type(err).__name__))
            continue
        if isinstance(prep, StageResult):
            results.append(prep)
            continue
        inputs, artifacts = prep
        if batch is None:  # concurrent batches must find the groups they share made
            store.ensure_groups(g for a in todo for o in spec.outputs(a, p) if (g := _shared_parent(o, a)))
            batch = CommitBatch(store, stage, run_id=run_id, message=None)
        key, wrote = batch.add(artifacts, params={"aoi": aoi, **p}, inputs=inputs, force=force)
        status = "committed" if wrote else "unchanged"
        results.append(StageResult(stage, aoi, status, key, batch.base, tuple(artifacts)))
        if wrote:
            written.append((len(results) - 1, spec.summary(artifacts)))
        del artifacts, prep
    snap = batch.commit() if batch is not None else ""
    for i, summary in written:
        results[i] = replace(results[i], snapshot_id=snap, summary=summary)
    return results


def _shared_parent(path: str, aoi: str) -> str | None:
    """The nearest parent group of ``path`` that is not ``aoi``'s own (``hr`` of ``hr/<aoi>/pan``):
    the one other AOIs' batches may create too."""
    parts = path.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if f"/{aoi}/" not in f"/{(parent := '/'.join(parts[:i]))}/":
            return parent
    return None


def split_aois(store: ArtifactStore) -> list[str]:
    """The AOIs a split is made of: every AOI of the store with an LR cube and HR targets
    (``raw/<aoi>`` and ``hr/<aoi>/rgbn``), whichever run imported them."""
    with_targets = {p.split("/")[1] for p in store.list("hr") if p.endswith("/rgbn")}
    return [a for a in (p.split("/", 1)[1] for p in store.list("raw")) if a in with_targets]


def run_split(
    store: ArtifactStore,
    *,
    seed: int = 0,
    n_val: int = 3,
    run_id: str | None = None,
) -> StageResult:
    """Write the ``paper`` and ``stratified`` split manifests of every AOI in the store
    (:func:`split_aois`), never of one run's selection: a single-AOI run leaves the split as it
    is unless the store's set of AOIs changed. ``skipped`` when the store has no such AOI.

    Strata are the AOIs' IPCC land-cover label where known, else their source family
    (the name before the first '-' or '_'). Two runs importing different AOIs at once cannot
    leave a split of fewer AOIs than the store holds: after its commit a run checks the store's
    AOIs again, and writes the split anew if they changed meanwhile.
    """
    created = False
    for _ in range(5):
        aois = sorted(split_aois(store))
        if not aois:
            return StageResult("split", None, "skipped", reason="no AOI with HR targets (raw/<aoi> and hr/<aoi>/rgbn) in the store")
        strata = {a: str(store.attrs(f"raw/{a}").get("IPCC") or a.split("-")[0].split("_")[0]) for a in aois}
        manifests: Artifacts = {"splits/stratified": stratified_split(aois, strata, seed=seed).to_dict()}
        try:
            manifests["splits/paper"] = paper_split(aois, n_val=n_val, seed=seed).to_dict()
        except InvalidInputError as err:
            log.info("no paper split: %s", err)
        params = {"aois": aois, "strata": strata, "seed": seed, "n_val": n_val}
        result = store.commit(manifests, stage="split", params=params, run_id=run_id, message="split")
        created = created or result.created
        if sorted(split_aois(store)) == aois:
            break
    return StageResult(
        "split", None, "committed" if created else "unchanged", result.run_key,
        result.snapshot_id, result.artifacts,
        summary={k.split("/")[1]: {p: len(v[p]) for p in ("train", "val", "test")}  # type: ignore[call-overload]
                 for k, v in manifests.items()},
    )


def store_aois(store: ArtifactStore, aois: Sequence[str] | None = None, *, known: Sequence[str] = ()) -> list[str]:
    """The AOIs of a run of store-only stages: ``aois`` checked against those with an LR cube in
    the store (``raw/<aoi>``, imported or acquired, and the crops of such cubes,
    ``crop/raw/<aoi>/<name>``) and the ``known`` ones (a dataset's, whose stages then skip with a
    record when their inputs are missing); default: the store's ``raw/<aoi>`` (crops only when
    named).

    Raises:
        InvalidInputError: a bad name, or an AOI neither in the store nor known.
    """
    available = [p.split("/", 1)[1] for p in store.list("raw")]
    if not aois:
        return available
    wanted = [validate_aoi(a) for a in dict.fromkeys(aois)]
    crops = {a for a in wanted if a.startswith("crop/") and store.version(a) is not None}
    unknown = sorted(set(wanted) - set(available) - set(known) - crops)
    if unknown:
        raise InvalidInputError(
            f"no raw/<aoi> cube in the store for {unknown} (nor a crop, crop/raw/<aoi>/<name>): "
            "import, acquire or crop them first"
        )
    return wanted


def resolve_run_aois(
    stages: Sequence[str], aois: Sequence[str] | None, *, data: str | Path, store: ArtifactStore | None
) -> list[str]:
    """The AOIs of an ETL run, by one rule: stages that read the WorldStrat folder
    (:data:`FOLDER_STAGES`) run for the folder's AOIs; the other stages for every AOI with an LR
    cube in the store (:func:`store_aois`: imported, acquired or a crop). Default: the folder's
    AOIs when a folder stage is selected, else the store's. A named AOI must be in the folder or
    in the store; one only in the store runs the store stages alone (see :func:`folder_aois`).

    Raises:
        InvalidInputError: a bad folder (folder stages), or an AOI in neither the folder nor the store.
    """
    if not set(stages) & FOLDER_STAGES:
        if store is None:
            raise InvalidInputError("store-only stages need a store")
        known = worldstrat.list_aois(data) if Path(data, "lr_dataset").is_dir() else []
        return store_aois(store, aois, known=known)
    folder = worldstrat.list_aois(data)  # checks the folder
    if not aois:
        return folder
    wanted = list(dict.fromkeys(aois))
    elsewhere = [a for a in wanted if a not in folder]
    if elsewhere:
        try:
            if store is None:
                raise InvalidInputError("no store")
            store_aois(store, elsewhere)
        except InvalidInputError as err:
            raise InvalidInputError(
                f"unknown AOIs {sorted(elsewhere)}: not in {data} and no LR cube in the store "
                "(raw/<aoi>, or a crop's path crop/raw/<aoi>/<name>)"
            ) from err
    return wanted


def folder_aois(data: str | Path) -> set[str]:
    """The AOIs the folder stages run for: the WorldStrat folder's (none if ``data`` is not one)."""
    return set(worldstrat.list_aois(data)) if Path(data, "lr_dataset").is_dir() else set()


def plan_stages(
    stages: Sequence[str], *, modes: Sequence[str] = ("paper", "clean"), k: int = 5
) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """The per-AOI stage runs for the selected ``stages``, in dependency order.

    Returns tuples ``(name, stage, params, depends_on)``; dependencies on stages that are not
    selected are dropped (those inputs are read from the store as they are).
    """
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise InvalidInputError(f"unknown stages {sorted(unknown)}; choose from {list(STAGES)}")
    full: list[tuple[str, str, dict[str, Any], list[str]]] = [
        ("import", "import", {}, []),
        ("mask", "mask", {}, ["import"]),
        ("pansharpen", "pansharpen", {}, ["import"]),
    ]
    for m in modes:
        full.append((f"subset-{m}", "subset", {"mode": m, "k": k}, ["mask"]))
        full.append((f"histogram-{m}", "histogram", {"mode": m}, ["mask", f"subset-{m}"]))
    return [
        (name, stage, params, deps)
        for name, stage, params, deps in full
        if stage in stages and stage in AOI_STAGES
    ]


@dataclass(frozen=True)
class CropPlan:
    """What :func:`check_crop` found: a crop run's parameters and input versions, and each crop
    path with the rows of the polygon file it takes (``[]`` for a square or bbox)."""

    source: str
    params: dict[str, Any]
    inputs: dict[str, str]
    groups: dict[str, list[Any]]
    polygon: Any = None  # the chosen features (a GeoDataFrame), None for a square or bbox
    label: str = ""

    def cut(self, ds: xr.Dataset, path: str) -> xr.Dataset:
        """The crop ``path`` of the source ``ds``, with its polygon attributes."""
        if self.polygon is None:
            p = self.params
            return crop_square(ds, center=p["center"], size_m=p["size_m"], bbox=p["bbox"])
        from stliif.preprocess.features import feature_attrs

        rows = self.groups[path]
        crop = crop_polygon(ds, self.polygon.loc[rows])
        crop.attrs.update(crop_polygon=self.label, crop_layer=self.params["layer"] or "",
                          crop_features=[int(r) for r in rows])  # fmt: skip
        if len(rows) == 1:
            crop.attrs.update(crop_feature_index=int(rows[0]), crop_feature=feature_attrs(self.polygon, rows[0]))
        return crop


def check_crop(store: ArtifactStore, spec: CropSpec) -> CropPlan:
    """Every check of :func:`run_crop`, made from the store's metadata and the polygon file
    without reading a pixel: the name, the options, the source, the features, the crop paths, and
    each crop's window on the source's grid (a square partly off the raster, a feature that misses
    it). Returns the run's :class:`CropPlan`.

    Raises:
        InvalidInputError: a bad name, option, polygon file, feature choice or crop path.
        NoDataError: no source artifact, or a crop outside the raster (``aoi_outside_raster``).
    """
    from stliif.preprocess.crop import polygon_window, square_window
    from stliif.preprocess.features import crop_names, select_features
    from stliif.preprocess.vectors import polygon_fingerprint, read_polygon

    source, name, center, size_m, bbox = spec.source, spec.name, spec.center, spec.size_m, spec.bbox
    polygon, layer, feature, where, each = spec.polygon, spec.layer, spec.feature, spec.where, spec.each
    validate_name(name, what="crop name")
    if (polygon is None) == (center is None and bbox is None):
        raise InvalidInputError("give exactly one of: center + size_m, bbox, or polygon")
    if polygon is None and any(v is not None for v in (layer, feature, where, each)):
        raise InvalidInputError("layer, feature, where and each apply to a polygon crop only")
    params: dict[str, Any] = {"source": source, "name": name}
    inputs = _need(store, source)
    out = f"crop/{source}/{name}"
    if polygon is None:
        params.update(center=center, size_m=size_m, bbox=bbox)
        square_window(store.read(source), center=center, size_m=size_m, bbox=bbox)
        return CropPlan(source, params, inputs, {out: []})
    gdf = select_features(read_polygon(polygon, layer=layer), feature=feature, where=where)
    label, inputs["polygon"] = polygon_fingerprint(polygon)
    file, _, member = label.partition("!")  # "<zip>!<member>" inside a zip
    params.update(polygon=label if label == "GeoJSON text" else Path(file).name + (f"!{member}" if member else ""),
                  layer=layer, feature=feature, where=where, each=each)  # fmt: skip
    names = crop_names(gdf, each) if each is not None else []
    if each is not None and store.version(out) is not None:
        raise InvalidInputError(f"{out} is a crop already: choose another name for one crop per feature")
    if each is None and store.list(f"{out}/"):
        raise InvalidInputError(f"{out} holds one crop per feature already: choose another name")
    groups = {f"{out}/{n}": [row] for n, row in zip(names, gdf.index, strict=True)} if each else {out: list(gdf.index)}
    grid = store.read(source)  # lazy: the windows need the grid only
    for rows in groups.values():
        polygon_window(grid, gdf.loc[rows])
    return CropPlan(source, params, inputs, groups, gdf, label)


def run_crop(
    store: ArtifactStore,
    source: str,
    name: str,
    *,
    center: tuple[float, float] | None = None,
    size_m: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    polygon: str | Path | None = None,
    layer: str | None = None,
    feature: int | None = None,
    where: str | None = None,
    each: str | None = None,
    run_id: str | None = None,
) -> StageResult:
    """Crop the artifact ``source`` (e.g. ``raw/<aoi>``) to a square, bbox or polygon, and
    commit it as ``crop/<source path>/<name>``; georeference kept, pixels outside a polygon
    masked. Coordinates are EPSG:4326; the polygon file's content is part of the run key.

    ``polygon`` is a file (shapefile, GeoPackage ``layer``, GeoJSON, a zip holding one, a
    ``/vsizip/`` path) or GeoJSON text. Its features are merged, or chosen by ``feature`` (0-based
    row) or ``where`` (``"ATTR=VALUE"``); ``each=ATTR`` crops every chosen feature apart, as
    ``crop/<source>/<name>/<slug of ATTR>``, all in one commit. A polygon crop's attrs record
    ``crop_polygon`` (the file), ``crop_features`` (row indices) and, for one feature,
    ``crop_feature_index`` and ``crop_feature`` (its attributes).

    Everything is checked first (:func:`check_crop`, no pixel read); then the source is loaded,
    cut and committed once."""
    spec = CropSpec(source=source, name=name, center=center, size_m=size_m, bbox=bbox, layer=layer,
                    polygon=None if polygon is None else str(polygon), feature=feature, where=where, each=each)  # fmt: skip
    plan = check_crop(store, spec)
    ds = store.read(source, load=True)
    crops = {path: plan.cut(ds, path) for path in plan.groups}
    result = store.commit(crops, stage="crop", params=plan.params, inputs=plan.inputs, run_id=run_id)
    first = next(iter(crops.values()))
    summary: dict[str, Any] = {"size": [int(first.sizes["y"]), int(first.sizes["x"])], "bounds": list(first.rio.bounds())}
    if each is not None:
        summary["crops"] = {p: [int(c.sizes["y"]), int(c.sizes["x"])] for p, c in crops.items()}
    return StageResult(
        "crop", None, "committed" if result.created else "unchanged", result.run_key,
        result.snapshot_id, result.artifacts, summary=summary,
    )
