"""``stliif view``: a local web viewer over the store (a map of its AOIs, their revisits on a
date slider, renders against the 10 m input, the lineage of what is shown).

It belongs to the command line, not to the library: :mod:`stliif_cli.view.app` (a FastAPI app
over :mod:`stliif_cli.view.catalog`, what the viewer reads of the store, and
:mod:`stliif_cli.view.tiles`, tiles by rio-tiler) and ``static/`` (the page, with Leaflet
vendored: no internet at run time, the map has a plain background).
"""

from __future__ import annotations

import signal
import socket
import warnings
from types import FrameType
from typing import Annotated

import typer

from stliif.errors import InvalidInputError
from stliif_cli.options import BranchOpt, EndpointOpt, StoreOpt, open_store
from stliif_cli.server import loopback

__all__ = ["view"]


def view(
    store: StoreOpt = None,
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind: loopback only (127.0.0.1, localhost, ::1).")] = "127.0.0.1",
    branch: BranchOpt = "main",
    endpoint_url: EndpointOpt = None,
) -> None:
    """Open a local web viewer over the store on http://127.0.0.1:8765 (Ctrl-C stops it)."""
    if not loopback(host):
        raise InvalidInputError(
            f"refusing to bind {host}: the viewer has no authentication and shows the whole store; "
            "bind 127.0.0.1 (and reach it from elsewhere through an SSH tunnel)"
        )
    _check_port(host, port)
    st = open_store(store, branch, endpoint_url)
    import uvicorn

    from stliif_cli.view.app import create_app

    app = create_app(st)
    # Notices raised inside rasterio's reprojection of every tile (affine's about `*`, GDAL's
    # about its in-memory source having no geotransform of its own): nothing for the user.
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    # uvicorn shuts down gracefully on SIGINT / SIGTERM, then raises the signal again: end
    # quietly then (the CLI's own handler speaks of interrupted flow runs).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"stliif view on http://{shown}:{port}  (store {st.spec.uri}, branch {st.spec.branch}; Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program holds, in one line, before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise InvalidInputError(f"cannot listen on {host}:{port} ({err.strerror}): choose another --port") from err


def _stopped(signum: int, frame: FrameType | None) -> None:
    typer.echo("stliif view stopped", err=True)
    raise SystemExit(0)
