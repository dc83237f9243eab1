"""``stliif import``: a local SAFE product or a static STAC catalog into a versioned datacube ``raw/<aoi>``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stliif.config import ImportSpec
from stliif.errors import InvalidInputError
from stliif_cli.options import (
    DemFileOpt,
    DemNodataOpt,
    EndpointOpt,
    StoreOpt,
    build_spec,
    no_data_exit,
    parse_floats,
    print_dem_files,
    store_spec,
)
from stliif_cli.runtime import flow_module, run_flow

__all__ = ["import_source"]

console = Console()


def import_source(
    source: Annotated[str, typer.Argument(help="A Sentinel-2 SAFE folder or .zip, a static STAC catalog / collection / item (path or http URL), or a folder of dated band files.")],
    aoi: Annotated[str, typer.Option("--aoi", help="Name of the area: the cube is committed as raw/<aoi>.")],
    polygon: Annotated[str | None, typer.Option(help="GeoJSON, shapefile or GeoPackage path (or GeoJSON text) [default: the source's footprint].")] = None,
    bbox: Annotated[str | None, typer.Option(help="'west,south,east,north' (lon/lat) [default: the source's footprint].")] = None,
    bands: Annotated[str, typer.Option(help="Comma-separated bands by common name or S2 id.")] = "red,green,blue,nir",
    start: Annotated[str | None, typer.Option(help="First date kept, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last date kept (inclusive), YYYY-MM-DD.")] = None,
    min_clear: Annotated[float, typer.Option("--min-clear", help="Drop dates whose clear fraction over the area is lower.")] = 0.0,
    offset: Annotated[float | None, typer.Option(help="Band files only: reflectance offset of their DN (-0.1 for baseline >= 04.00, 0 before).")] = None,
    level: Annotated[str, typer.Option(help="Band files only: their processing level, L1C or L2A.")] = "L2A",
    crs: Annotated[str | None, typer.Option(help="Output CRS [default: the area's UTM zone].")] = None,
    resolution: Annotated[float, typer.Option(help="Pixel size in CRS units.")] = 10.0,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Refuse imports whose cube would exceed this (MiB).")] = 4096.0,
    quicklooks: Annotated[Path, typer.Option(help="Folder of the quicklook PNGs.")] = Path("stliif-out/import"),
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Exit 0 when nothing usable was found (default: exit 3).")] = False,
    dem_file: DemFileOpt = None,
    dem_nodata: DemNodataOpt = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Import a local product or a static catalog: load the area onto one grid, commit raw/<aoi>."""
    fields: dict[str, Any] = dict(
        source=source, aoi=aoi, polygon=polygon, bbox=parse_floats(bbox, 4, "--bbox"), start=start, end=end,
        bands=[b.strip() for b in bands.split(",") if b.strip()], min_clear=min_clear, offset=offset, level=level, crs=crs,
        resolution=resolution, max_mb=max_mb, quicklooks=str(quicklooks),
    )
    spec = build_spec(ImportSpec, fields, "import")
    if dem_nodata is not None and not dem_file:
        raise InvalidInputError("--dem-nodata applies to --dem-file files only")
    st = store_spec(store, endpoint_url=endpoint_url, write=True, create=True)
    from stliif.ingest import check_import

    _, why = check_import(spec)  # a bad source, band or date range: one line, exit 2, before any flow
    if dem_file:  # a bad DEM file commits nothing either
        from stliif.sources.dem import check_dem_files

        check_dem_files(dem_file, dem_nodata)
    if why:
        no_data_exit(aoi, why, allow_empty)
        return
    result = run_flow(flow_module("ingest").import_source, spec, st,
                      dem_files=[str(f) for f in dem_file or []] or None, dem_nodata=dem_nodata)
    if result["status"] != "no-data":
        console.print(f"{result['status']} [bold]raw/{aoi}[/] {('(' + result['reason'] + ')') if result['reason'] else ''}")
    if result["table"]:
        table = Table("date", "level", "source", "clear", "baseline", "offset", "cloud mask")
        for r in result["table"]:
            table.add_row(r["date"], r.get("processing_level", ""), r.get("source_kind", ""),
                          f"{r['clear_fraction']:.0%}", r["processing_baseline"], f"{r['reflectance_offset']:g}",
                          r.get("cloud_mask", ""))
        console.print(table)
    for d, why in result["dropped"].items():
        console.print(f"dropped {d}: {why}")
    for f in result.get("quicklooks", {}).get("sheet", []):
        console.print(f"  {f}")
    if result["status"] == "no-data":
        no_data_exit(aoi, result["reason"], allow_empty)
    print_dem_files(aoi, result.get("dem_files"))
