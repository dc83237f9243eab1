"""``stliif server`` / ``stliif worker``: start Prefect's server and a process worker locally."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from typing import Annotated

import typer

from stliif.errors import InvalidInputError

__all__ = ["POOL", "loopback", "server", "worker"]

POOL = "stliif-process"


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server(
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless auth is configured.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 4200,
) -> None:
    """Start a Prefect server (UI and API) for stliif's deployments; Ctrl-C stops it."""
    if not loopback(host) and not os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        raise InvalidInputError(
            f"refusing to bind {host}: the server has no authentication; set "
            "PREFECT_SERVER_API_AUTH_STRING (and PREFECT_API_AUTH_STRING for clients) or bind 127.0.0.1"
        )
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false")}
    typer.echo(f"Prefect UI and API on http://{host}:{port}  (export PREFECT_API_URL=http://{host}:{port}/api)")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                      "--port", str(port)], env=env))  # fmt: skip


def worker(
    pool: Annotated[str, typer.Option(help="Process work pool (created if missing).")] = POOL,
) -> None:
    """Start a process worker on ``pool`` (needs PREFECT_API_URL); deploy with ``python -m deployments.deploy``."""
    if not os.environ.get("PREFECT_API_URL"):
        raise InvalidInputError("set PREFECT_API_URL to the server's API (see `stliif server`)")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                                      "--type", "process"]))  # fmt: skip
