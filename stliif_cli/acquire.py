"""``stliif acquire``: one query across STAC providers into a versioned datacube ``raw/<aoi>``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stliif.config import AcquireSpec
from stliif.errors import InvalidInputError
from stliif.types import TimeRange
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

__all__ = ["acquire"]

console = Console()


def acquire(
    aoi: Annotated[str, typer.Option("--aoi", help="Name of the area: the cube is committed as raw/<aoi>.")],
    start: Annotated[str, typer.Option(help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last date (inclusive), YYYY-MM-DD.")],
    bbox: Annotated[str | None, typer.Option(help="'west,south,east,north' (lon/lat); or --polygon.")] = None,
    polygon: Annotated[str | None, typer.Option(help="GeoJSON, shapefile or GeoPackage path (or GeoJSON text).")] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="earth-search, planetary-computer, cdse or a STAC API URL (repeatable) [default: earth-search].")] = None,
    bands: Annotated[str, typer.Option(help="Comma-separated bands by common name or S2 id (SCL is always added).")] = "red,green,blue,nir",
    max_cloud: Annotated[float | None, typer.Option("--max-cloud", help="Maximum scene cloud cover, percent.")] = None,
    min_clear: Annotated[float, typer.Option("--min-clear", help="Drop dates whose clear fraction over the area is lower.")] = 0.05,
    max_items: Annotated[int, typer.Option("--max-items", help="Most items per provider.")] = 200,
    crs: Annotated[str | None, typer.Option(help="Output CRS [default: the area's UTM zone].")] = None,
    resolution: Annotated[float, typer.Option(help="Pixel size in CRS units.")] = 10.0,
    dem: Annotated[bool, typer.Option("--dem", help="Also load the Copernicus DEM onto the grid.")] = False,
    dem_file: DemFileOpt = None,
    dem_nodata: DemNodataOpt = None,
    max_mb: Annotated[float, typer.Option("--max-mb", help="Refuse requests whose cube would exceed this (MiB).")] = 4096.0,
    collection: Annotated[str | None, typer.Option(help="Sentinel-2 collection id (STAC API URL providers).")] = None,
    dem_collection: Annotated[str | None, typer.Option("--dem-collection", help="DEM collection id (STAC API URL providers).")] = None,
    dem_asset: Annotated[str | None, typer.Option("--dem-asset", help="DEM asset key (STAC API URL providers).")] = None,
    quicklooks: Annotated[Path, typer.Option(help="Folder of the quicklook PNGs.")] = Path("stliif-out/acquire"),
    deadline: Annotated[float, typer.Option("--deadline", help="Seconds each provider has to answer, retries included.")] = 20.0,
    export_cog: Annotated[list[str] | None, typer.Option("--export-cog", help="Also write this date as a COG (repeatable).")] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Exit 0 when nothing usable was found (default: exit 3).")] = False,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Search STAC providers, load the area onto one grid, commit raw/<aoi>; a rerun adds only new dates."""
    fields: dict[str, Any] = dict(
        aoi=aoi, start=start, end=end, bbox=parse_floats(bbox, 4, "--bbox"), polygon=polygon,
        bands=[b.strip() for b in bands.split(",") if b.strip()], max_cloud=max_cloud, min_clear=min_clear,
        max_items=max_items, crs=crs, resolution=resolution, dem=dem, max_mb=max_mb, collection=collection,
        dem_collection=dem_collection, dem_asset=dem_asset, quicklooks=str(quicklooks), deadline=deadline,
    )
    if provider:
        fields["providers"] = provider
    spec = build_spec(AcquireSpec, fields, "acquisition request")
    for d in export_cog or []:
        TimeRange.from_like((d, d))
    if dem_file and dem:
        raise InvalidInputError("give --dem (the providers' DEM) or --dem-file (local files), not both")
    if dem_nodata is not None and not dem_file:
        raise InvalidInputError("--dem-nodata applies to --dem-file files only")
    st = store_spec(store, endpoint_url=endpoint_url, write=True, create=True)
    from stliif.acquire import check_acquire

    check_acquire(spec)
    if dem_file:  # checked before the acquisition: a bad DEM commits nothing
        from stliif.acquire import area_of
        from stliif.sources.dem import check_dem_files

        check_dem_files(dem_file, dem_nodata, bounds=area_of(spec).geometry.bounds)
    result = run_flow(flow_module("acquire").acquire, spec, st, dem_files=[str(f) for f in dem_file or []] or None,
                      dem_nodata=dem_nodata)
    cogs = []
    if export_cog and result["dates"]:
        from stliif.quicklook import export_date_cog
        from stliif.store import ArtifactStore

        cube = ArtifactStore.open(st).read(f"raw/{aoi}", load=True)
        cogs = [export_date_cog(cube, d, quicklooks / aoi / f"{d}.tif") for d in export_cog]
    console.print(f"{result['status']} [bold]raw/{aoi}[/] {('(' + result['reason'] + ')') if result['reason'] else ''}")
    console.print(f"found per provider: {result['found']}" + (f"; failed: {result['errors']}" if result["errors"] else ""))
    if result["table"]:
        table = Table("date", "provider", "cloud %", "clear", "baseline", "offset")
        for r in result["table"]:
            table.add_row(r["date"], r["provider"], "" if r["cloud_cover"] is None else f"{r['cloud_cover']:.1f}",
                          f"{r['clear_fraction']:.0%}", r["processing_baseline"], f"{r['reflectance_offset']:g}")
        console.print(table)
    for d, why in result["dropped"].items():
        console.print(f"dropped {d}: {why}")
    for kind in ("sheet", "dem"):
        for f in result.get("quicklooks", {}).get(kind, []):
            console.print(f"  {f}")
    for f in cogs:
        console.print(f"  {f}")
    if result["status"] == "no-data":
        no_data_exit(aoi, result["reason"], allow_empty)
    print_dem_files(aoi, result.get("dem_files"))
