"""What every command shares: one-line errors, option parsing, the store options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from stliif.config import StoreSpec, default_store_uri
from stliif.errors import InvalidInputError, StliifError

if TYPE_CHECKING:
    from stliif.store import ArtifactStore

__all__ = [
    "NO_DATA_EXIT",
    "BranchOpt",
    "DataOpt",
    "DemFileOpt",
    "DemNodataOpt",
    "EndpointOpt",
    "StoreOpt",
    "build_spec",
    "check_out_dir",
    "no_data_exit",
    "one_line_errors",
    "one_sentence",
    "open_store",
    "parse_floats",
    "print_dem_files",
    "store_spec",
]

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="WorldStrat dataset root [default: $STLIIF_DATA or ../shared/...]"),
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store folder or s3://bucket/prefix [default: $STLIIF_STORE or ./stliif-store]"),
]
BranchOpt = Annotated[str, typer.Option("--branch", help="Store branch.")]
EndpointOpt = Annotated[
    str | None, typer.Option("--endpoint-url", help="S3 endpoint (credentials from AWS_* variables).")
]
"""The store options, declared once for every command (:func:`store_spec` reads them)."""

S = TypeVar("S", bound=BaseModel)
P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` with every error it raises on purpose (:class:`StliifError`, a pydantic
    ``ValidationError``) printed as one ``error:`` line on stderr, and exit status 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (StliifError, ValidationError) as err:
            text = one_sentence(err) if isinstance(err, ValidationError) else str(err)
            Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(' '.join(text.split()))}", highlight=False)
            raise typer.Exit(2) from err

    return run


def build_spec(cls: type[S], fields: dict[str, Any], what: str) -> S:
    """``cls(**fields)``, a validation failure as :class:`InvalidInputError` ("invalid <what>: ...")."""
    try:
        return cls(**fields)
    except ValidationError as err:
        raise InvalidInputError(f"invalid {what}: {one_sentence(err)}") from err


def one_sentence(err: ValidationError) -> str:
    """A pydantic error as one sentence: each problem as ``field: message`` (no URL, no input dump)."""
    parts = []
    for e in err.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_floats(text: str | None, n: int, opt: str) -> tuple[float, ...] | None:
    """``"a,b,c"`` -> ``(a, b, c)``: exactly ``n`` comma-separated numbers, or ``None`` for ``None``."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise InvalidInputError(f"{opt} needs {n} comma-separated numbers, got {text!r}")
    return values


def store_spec(
    store: str | None, branch: str = "main", endpoint_url: str | None = None, *,
    write: bool = False, create: bool = False,
) -> StoreSpec:
    """The store of ``--store`` (default ``$STLIIF_STORE`` or ``./stliif-store``), a local folder
    made absolute (runs and events started from it may run elsewhere), its location checked
    (:func:`stliif.location.check_location`; ``write``: a command that commits; ``create``: one
    that may create the store)."""
    uri = store or default_store_uri()
    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    spec = build_spec(StoreSpec, {"uri": uri, "branch": branch, "endpoint_url": endpoint_url,
                                  "allow_http": bool(endpoint_url and endpoint_url.startswith("http://"))}, "store")  # fmt: skip
    from stliif.location import check_location

    check_location(spec, create=create, write=write)
    return spec


def open_store(store: str | None, branch: str = "main", endpoint_url: str | None = None) -> ArtifactStore:
    """An existing store, for commands that only read it (nothing is created)."""
    from stliif.store import ArtifactStore

    return ArtifactStore.open(store_spec(store, branch, endpoint_url), create=False)


def check_out_dir(path: Path) -> None:
    """An output folder that exists as a folder, or can be made in a writable parent."""
    from stliif.location import unwritable

    p = path.expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise InvalidInputError(f"--out {str(path)!r} is a file, not a folder")
    if (target := unwritable(p)) is not None:
        raise InvalidInputError(f"--out {str(path)!r}: {str(target)!r} is not a writable folder")


DemFileOpt = Annotated[
    list[Path] | None,
    typer.Option("--dem-file", help="Local DEM GeoTIFF put on the grid as dem (repeatable: tiles are mosaicked)."),
]
DemNodataOpt = Annotated[
    float | None,
    typer.Option("--dem-nodata", help="Nodata value of the --dem-file files, overriding theirs (e.g. 0 for clipped copies written without one)."),
]
NO_DATA_EXIT = 3
"""Exit status of an acquisition or import that found nothing usable (0 with ``--allow-empty``)."""


def no_data_exit(aoi: str, reason: str, allow_empty: bool) -> None:
    """Say why nothing was committed; exit 3 unless ``--allow-empty``."""
    if allow_empty:
        Console().print(f"no-data [bold]raw/{escape(aoi)}[/] ({escape(reason)})")
        return
    Console(stderr=True, soft_wrap=True).print(f"no usable data for raw/{aoi}: {reason}", highlight=False)
    raise typer.Exit(NO_DATA_EXIT)


def print_dem_files(aoi: str, added: dict[str, Any] | None) -> None:
    """Say what the flow's commit of local DEM files into ``raw/<aoi>`` did (``added``: its
    ``dem_files`` record; nothing when the flow added no DEM)."""
    if added:
        Console().print(f"{'committed' if added['created'] else 'unchanged'} dem of [bold]raw/{escape(aoi)}[/] from "
                        f"{added['files']} file(s), snapshot {added['snapshot_id']}")
