"""``stliif render``: a model's image of an AOI at any date and resolution (COG, PNG, GIF, MP4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from stliif.config import RenderSpec
from stliif_cli.options import StoreOpt, build_spec, check_out_dir, parse_floats, store_spec
from stliif_cli.runtime import flow_module, run_flow

__all__ = ["render"]

console = Console()


def render(
    aoi: Annotated[str, typer.Option("--aoi", help="AOI to render: a name (its raw/<aoi> cube in the store) or a crop's store path, crop/raw/<aoi>/<name>.")],
    date: Annotated[str | None, typer.Option(help="Date to render, YYYY-MM-DD.")] = None,
    start: Annotated[str | None, typer.Option(help="First date of a time series.")] = None,
    end: Annotated[str | None, typer.Option(help="Last date of a time series (inclusive).")] = None,
    step: Annotated[str, typer.Option(help="Time-series step (pandas offset: 5D, 1W, ...).")] = "5D",
    scale: Annotated[float | None, typer.Option(help="Output pixels per LR pixel side (e.g. 4).")] = None,
    gsd: Annotated[float | None, typer.Option(help="Output pixel size in metres (instead of --scale).")] = None,
    bbox: Annotated[str | None, typer.Option(help="Only this box of the AOI: 'west,south,east,north' (lon/lat).")] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint, run folder or baseline name [default: $STLIIF_MODEL or models/record].")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files.")] = Path("stliif-out/render"),
    min_clear: Annotated[float, typer.Option("--min-clear", help="Use only dates at least this clear over the area (0-1).")] = 0.5,
    allow_far: Annotated[bool, typer.Option("--allow-far", help="Render far from any revisit anyway (flagged).")] = False,
    max_gap_days: Annotated[float, typer.Option("--max-gap-days", help="Temporal support limit.")] = 30.0,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Memory budget of one tile (MiB): sizes the tiles.")] = 2048.0,
    tile: Annotated[int | None, typer.Option("--tile", help="Tile side in output pixels [default: sized from --max-mb].")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Spread tiles on Dask: 'local' or a scheduler's tcp://host:8786.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes of --dask local [default: one per core].")] = None,
    mode: Annotated[str, typer.Option("--mode", help="product: the render averaged back to the input grid equals the time-interpolated inputs (the model adds only detail); paper: the model's raw output, as protocol P scores it.")] = "product",
    store: StoreOpt = None,
) -> None:
    """Render an AOI at a date (COG + PNG) or over a date range (Zarr + GIF + MP4 + strip); commit it.

    The render goes tile by tile (memory bounded by --max-mb), resumes from the finished tiles
    when the same command is run again after a kill, and spreads tiles over Dask with --dask.
    """
    fields: dict[str, Any] = {"aoi": aoi, "date": date, "start": start, "end": end, "step": step, "scale": scale,
                              "gsd": gsd, "bbox": parse_floats(bbox, 4, "--bbox"), "out_dir": str(out),
                              "min_clear": min_clear, "allow_far": allow_far, "max_gap_days": max_gap_days,
                              "max_mb": max_mb, "tile": tile, "dask": dask, "workers": workers, "mode": mode}  # fmt: skip
    if model:
        fields["model"] = model
    spec = build_spec(RenderSpec, fields, "render request")
    st = store_spec(store, write=True)
    check_out_dir(out)
    from stliif.render import check_render
    from stliif.store import ArtifactStore

    # Every check a render makes before computing, here, before a Prefect server starts.
    check_render(ArtifactStore.open(st, create=False), **spec.model_dump(exclude={"out_dir"}))
    record = run_flow(flow_module("render").render, spec, st)
    a = record["attrs"]
    console.print(f"{record['status']} [bold]{record['path']}[/] (snapshot {record['snapshot_id']})")
    if "revisits" in a:
        console.print(f"revisits {', '.join(a['revisits'])}; nearest {a['nearest_revisit_days']:.1f} days ({a['temporal_support']})")
    if "consistency_mae" in a:
        bias = " / ".join(f"{b:+.4f}" for b in a["consistency_bias"])
        console.print(f"{a['mode']} mode; against the inputs on their grid: mean abs error {a['consistency_mae']:.4f}, "
                      f"bias {'/'.join(_short(b) for b in a.get('bands', ['B04', 'B03', 'B02']))} {bias}, "
                      f"spectral angle {a['consistency_sam_deg']:.2f} deg, shift {a['consistency_shift_px']:.2f} px"
                      + (f", NDVI mean abs error {a['consistency_ndvi_mae']:.4f}" if "consistency_ndvi_mae" in a else ""))
    if a.get("nir_source"):
        from stliif.render.request import nir_text

        console.print(f"NIR: {nir_text(a['nir_source'])}")
    if a.get("tiles_resumed"):
        console.print(f"resumed {a['tiles_resumed']} of {a['tiles']} tiles from an interrupted run")
    for f in record["files"]:
        console.print(f"  {f}")


def _short(band: str) -> str:
    """R, G, B or NIR for a render band (B04, B03, B02, B08)."""
    return {"B04": "R", "B03": "G", "B02": "B", "B08": "NIR"}.get(band, band)
