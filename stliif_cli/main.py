"""``stliif``: run the pipeline's flows and inspect the versioned store.

One rule: a command that commits artifacts to the store runs its Prefect flow (``etl``,
``pipeline``, ``acquire`` and ``import``, their ``--dem-file`` step included, ``crop``,
``render``, ``evaluate --commit``), so that every commit is a flow run with its logs, artifacts
and events. Commands that only read the store or write local files call the library:
``evaluate`` (without ``--commit``), ``train`` and ``calibrate`` (checkpoint folders; ``train
--from-store`` only reads the store), ``providers`` and ``store log|refs|ls|show``. One named
exception: ``store tag`` (it moves a name, it writes no artifact). Every command checks its
arguments before any server starts (the library's ``check_*`` functions: ``check_import``,
``check_crop``, ``check_render``...) and turns errors into one ``error:`` line with exit code 2.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from stliif.config import STAGES, ETLSpec, default_data_root
from stliif.errors import InvalidInputError, StliifError
from stliif_cli.acquire import acquire
from stliif_cli.evaluate import evaluate
from stliif_cli.ingest import import_source
from stliif_cli.options import (
    BranchOpt,
    DataOpt,
    EndpointOpt,
    StoreOpt,
    build_spec,
    one_line_errors,
    open_store,
    parse_floats,
    store_spec,
)
from stliif_cli.render import render
from stliif_cli.runtime import flow_module, install_interrupts, run_flow
from stliif_cli.server import server, worker
from stliif_cli.train import calibrate, train
from stliif_cli.view import view

app = typer.Typer(
    help="Continuous space-time super-resolution of satellite imagery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
store_app = typer.Typer(help="Inspect the versioned artifact store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
console = Console()



def _status_counts(records: list[dict[str, Any]]) -> str:
    """``"12 committed, 3 unchanged"``: stage records counted by status."""
    counts = Counter(r["status"] for r in records)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


@app.command()
@one_line_errors
def etl(
    data: DataOpt = None,
    store: StoreOpt = None,
    aoi: Annotated[list[str] | None, typer.Option("--aoi", help="AOI to process (repeatable); all by default.")] = None,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help=f"Stage to run (repeatable): {', '.join(STAGES)}; all by default."),
    ] = None,
    mode: Annotated[list[str] | None, typer.Option("--mode", help="paper and/or clean; both by default.")] = None,
    k: Annotated[int, typer.Option(help="Revisits per temporal subset.")] = 5,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip AOIs with missing/corrupted files, recording why.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute and commit the selected stages even when up to date.")] = False,
    batch_size: Annotated[int, typer.Option(help="At most this many AOIs per stage task, committed at once (one batch per worker when smaller).")] = 64,
    branch: BranchOpt = "main",
    endpoint_url: EndpointOpt = None,
    dask: Annotated[
        str | None,
        typer.Option(help="Run tasks on Dask: 'local' (a LocalCluster on 127.0.0.1) or a scheduler address."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=256, help="Worker processes of --dask local, or threads (this many + 1); one batch of AOIs each.")] = 2,
) -> None:
    """Import WorldStrat and build the versioned, analysis-ready artifacts (Prefect flow `etl`)."""
    fields: dict[str, Any] = {"data": str(data or default_data_root()), "k": k, "skip_bad": skip_bad, "force": force,
                              "batch_size": batch_size}  # fmt: skip
    if aoi:
        fields["aois"] = aoi
    if stage:
        fields["stages"] = stage
    if mode:
        fields["modes"] = mode
    spec = build_spec(ETLSpec, fields, "ETL request")
    st = store_spec(store, branch, endpoint_url, write=True, create="import" in spec.stages)
    from stliif.stages import FOLDER_STAGES, resolve_run_aois
    from stliif.store import ArtifactStore

    # Refuse bad input before a flow run starts: folder AOIs for an import, store AOIs otherwise.
    if set(spec.stages) & FOLDER_STAGES:
        from stliif.sources.worldstrat import list_aois

        list_aois(spec.data)  # a bad folder is refused first
    try:
        repo: ArtifactStore | None = ArtifactStore.open(st, create=False)
    except StliifError:
        if not set(spec.stages) & FOLDER_STAGES:
            raise
        repo = None  # an import creates the store
    resolve_run_aois(spec.stages, spec.aois, data=spec.data, store=repo)
    flow = flow_module("etl").etl
    flow = flow.with_options(task_runner=flow_module("runners").task_runner(dask, workers=workers))
    result = run_flow(flow, spec, st)
    console.print(f"snapshot [bold]{result['snapshot_id']}[/]: {_status_counts(result['records'])}")


@app.command()
@one_line_errors
def crop(
    source: Annotated[str, typer.Argument(help="Artifact to crop, e.g. raw/Landcover-14956.")],
    name: Annotated[str, typer.Argument(help="Name of the crop (stored as crop/<source>/<name>).")],
    center: Annotated[str | None, typer.Option(help="Centre 'lon,lat' (EPSG:4326), with --size-m.")] = None,
    size_m: Annotated[float | None, typer.Option("--size-m", help="Side of the square in metres.")] = None,
    bbox: Annotated[str | None, typer.Option(help="'minlon,minlat,maxlon,maxlat' (EPSG:4326).")] = None,
    polygon: Annotated[str | None, typer.Option(help="Polygon file (shapefile, GeoPackage, GeoJSON, a .zip holding one, a /vsizip/ path) or GeoJSON text.")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer of a multi-layer polygon file (GeoPackage).")] = None,
    feature: Annotated[int | None, typer.Option(help="Crop to this feature only (0-based row of the polygon file).")] = None,
    where: Annotated[str | None, typer.Option(help="Crop to the features whose ATTR=VALUE (compared as text).")] = None,
    each: Annotated[str | None, typer.Option(help="One crop per feature, named by this attribute (made path-safe): crop/<source>/<name>/<value>.")] = None,
    store: StoreOpt = None,
    branch: BranchOpt = "main",
    endpoint_url: EndpointOpt = None,
) -> None:
    """Crop an artifact to a square, a bbox or a polygon and commit the crop to the store (Prefect flow `crop`)."""
    from stliif.config import CropSpec

    fields: dict[str, Any] = {"source": source, "name": name, "center": parse_floats(center, 2, "--center"),
                              "size_m": size_m, "bbox": parse_floats(bbox, 4, "--bbox"), "polygon": polygon,
                              "layer": layer, "feature": feature, "where": where, "each": each}  # fmt: skip
    spec = build_spec(CropSpec, fields, "crop request")
    st = store_spec(store, branch, endpoint_url, write=True)
    from stliif.stages import check_crop
    from stliif.store import ArtifactStore

    # Every check of a crop (options, source, polygon file, features, windows), before a Prefect server starts.
    check_crop(ArtifactStore.open(st, create=False), spec)
    result = run_flow(flow_module("crop").crop, spec, st)
    if each is not None:
        console.print(f"{result['status']} {len(result['artifacts'])} crops, snapshot {result['snapshot_id']}")
        for path, size in result["summary"]["crops"].items():
            console.print(f"  {path} {size} px")
        return
    console.print(f"{result['status']} {', '.join(result['artifacts'])} {result['summary']['size']} px, snapshot {result['snapshot_id']}")


@app.command()
@one_line_errors
def providers() -> None:
    """STAC providers stliif knows: collections, search dialect, band assets, signing, auth."""
    from stliif.sources.providers import describe_providers

    labels = {"url": "url", "s2_collection": "Sentinel-2 L2A", "dem_collection": "DEM", "search": "search",
              "assets": "assets", "resolution": "resolution", "revisit": "revisit", "signing": "signing",
              "auth": "auth", "scale_offset": "scale / offset"}  # fmt: skip
    for r in describe_providers():
        table = Table(Column(r["name"], style="bold", no_wrap=True), Column(""), show_header=True, box=None)
        for key, label in labels.items():
            table.add_row(label, r[key])
        console.print(table)
        console.print()
    console.print("Any other STAC API: pass its URL where a provider name is expected.")


@app.command()
@one_line_errors
def pipeline(
    data: DataOpt = None,
    store: StoreOpt = None,
    model: Annotated[str | None, typer.Option(help="Model to evaluate and render [default: $STLIIF_MODEL or models/record].")] = None,
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Score the model and baselines on protocol C.")] = True,
    ssim: Annotated[bool, typer.Option("--ssim", help="Include SSIM in the evaluation.")] = False,
    render_aoi: Annotated[list[str] | None, typer.Option("--render-aoi", help="AOI to render at its HR date (repeatable).")] = None,
    branch: BranchOpt = "main",
    endpoint_url: EndpointOpt = None,
) -> None:
    """ETL, then evaluation of the checkpoint of record on protocol C, then renders (Prefect flow `pipeline`)."""
    from stliif.config import PipelineSpec

    etl_spec = build_spec(ETLSpec, {"data": str(data or default_data_root())}, "ETL request")
    spec = build_spec(PipelineSpec, {"etl": etl_spec, "evaluate": evaluate, "ssim": ssim, "render_aois": render_aoi,
                                     **({"model": model} if model else {})}, "pipeline request")  # fmt: skip
    st = store_spec(store, branch, endpoint_url, write=True, create=True)
    from stliif.models.predictor import model_name
    from stliif.sources.worldstrat import resolve_aois

    aois = resolve_aois(etl_spec.data, None)  # refuse bad input before a flow run starts
    model_name(spec.model)
    unknown = sorted(set(render_aoi or []) - set(aois))
    if unknown:
        raise InvalidInputError(f"--render-aoi {', '.join(unknown)}: not an AOI of {etl_spec.data}")
    out = run_flow(flow_module("pipeline").pipeline, spec, st)
    console.print(f"etl: {_status_counts(out['etl']['records'])}")
    if "evaluate" in out:
        ev = out["evaluate"]
        console.print(f"evaluate ({ev['status']}) {ev['path']}: " + ", ".join(
            f"{s} {m['psnr']:.2f} dB" for s, m in ev["means"].items()))
    for r in out["renders"]:
        console.print(f"render ({r['status']}) {r['path']}: {', '.join(r['files'])}")

for _command in (acquire, train, calibrate, evaluate, render, server, worker, view):
    app.command()(one_line_errors(_command))
app.command("import")(one_line_errors(import_source))

@store_app.command("log")
@one_line_errors
def store_log(
    store: StoreOpt = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Branch, tag or snapshot id.")] = None,
    limit: Annotated[int, typer.Option(help="Newest commits to show.")] = 20,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Commits of a branch, newest first, with the stage and artifacts each holds."""
    table = Table("snapshot", "written", "stage", "artifacts", "inputs")
    for c in open_store(store, endpoint_url=endpoint_url).log(ref, limit=limit):
        md = c.metadata
        runs = md.get("runs") or [md]  # a batch commit: every run's inputs
        inputs = dict.fromkeys(f"{k}@{v[:8]}" for r in runs for k, v in (r.get("inputs") or {}).items())
        table.add_row(c.snapshot_id, c.written_at[:19], md.get("stage", c.message), "\n".join(md.get("artifacts", [])), "\n".join(inputs))
    console.print(table)


@store_app.command("refs")
@one_line_errors
def store_refs(store: StoreOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Branches and tags with the snapshot each points at."""
    st = open_store(store, endpoint_url=endpoint_url)
    table = Table("kind", "name", "snapshot")
    for b in st.branches():
        table.add_row("branch", b, st.snapshot_id(b))
    for t in st.tags():
        table.add_row("tag", t, st.snapshot_id(t))
    console.print(table)


@store_app.command("ls")
@one_line_errors
def store_ls(
    prefix: Annotated[str, typer.Argument(help="Path prefix, e.g. raw or subset/clean.")] = "",
    store: StoreOpt = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Branch, tag or snapshot id.")] = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Artifacts under a prefix, with their versions."""
    st = open_store(store, endpoint_url=endpoint_url)
    for path in st.list(prefix, ref=ref):
        console.print(f"{path}  [dim]{st.version(path, ref=ref)}[/]")


@store_app.command("show")
@one_line_errors
def store_show(
    path: Annotated[str, typer.Argument(help="Artifact path, e.g. raw/Landcover-14956.")],
    store: StoreOpt = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Branch, tag or snapshot id.")] = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Print one artifact: a dataset's structure or a JSON document."""
    st = open_store(store, endpoint_url=endpoint_url)
    try:
        console.print_json(json.dumps(st.read_json(path, ref=ref)))
    except StliifError:
        console.print(st.read(path, ref=ref))


@store_app.command("tag")
@one_line_errors
def store_tag(
    name: Annotated[str, typer.Argument(help="Tag name (lowercase, digits, . _ -).")],
    store: StoreOpt = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Branch, tag or snapshot id.")] = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Tag a snapshot (default: the branch head) so it can be read later by name."""
    console.print(f"tagged {open_store(store, endpoint_url=endpoint_url).tag(name, ref)} as {name}")


def main() -> None:
    """Entry point: SIGINT and SIGTERM stop a run cleanly (:mod:`stliif_cli.runtime`); every
    command turns its errors into one line and exit code 2 (:func:`one_line_errors`)."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "stliif")
    if "PREFECT_API_URL" not in os.environ:
        # The temporary local server: its telemetry heartbeat can hit "database is locked", and
        # its event recorder logs tracebacks when it stops; neither concerns the user's run.
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
        # Its start can take longer than Prefect's 20 s on a busy 2-core machine.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    install_interrupts()
    app()


if __name__ == "__main__":
    main()
