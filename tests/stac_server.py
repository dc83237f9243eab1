"""A real STAC API on 127.0.0.1 for tests: PostgreSQL + PostGIS + pgstac + stac-fastapi-pgstac.

This is what Planetary Computer and Copernicus Data Space run. PostgreSQL comes from Debian
(``postgresql-15-postgis-3``), the API from its own virtualenv ``.venv-stac`` (its pins clash
with Prefect's); both are installed by ``scripts/setup``. PostgreSQL refuses to run as root, so
as root the database runs as the ``postgres`` user. Every process started here is stopped by
:meth:`PgStacServer.stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STAC_VENV = Path(os.environ.get("STLIIF_STAC_VENV", REPO / ".venv-stac"))


def _pg_bin() -> Path:
    for version in ("17", "16", "15"):
        p = Path(f"/usr/lib/postgresql/{version}/bin")
        if (p / "initdb").exists():
            return p
    raise RuntimeError("PostgreSQL server binaries not found: run scripts/setup")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgStacServer:
    """Start with :meth:`start`, load with :meth:`load`, read :attr:`url`, end with :meth:`stop`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stliif-pgstac-"))
        os.chmod(self.root, 0o755)
        self.pg_port = _free_port()
        self.api_port = _free_port()
        self.dsn = f"postgresql://postgres:pw@127.0.0.1:{self.pg_port}/postgres"
        self.url = f"http://127.0.0.1:{self.api_port}"
        self._api: subprocess.Popen[bytes] | None = None
        self._pg_started = False

    def _as_db_user(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def _run(self, cmd: list[str], **kw: Any) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def start(self, timeout: float = 60.0) -> PgStacServer:
        pg = _pg_bin()
        data = self.root / "pgdata"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(self.root, "postgres", "postgres")
        self._run(self._as_db_user(str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                   "--no-sync", "-E", "UTF8"))
        self._run(self._as_db_user(
            str(pg / "pg_ctl"), "-D", str(data), "-l", str(self.root / "pg.log"), "-w", "-t", "60",
            "-o", f"-h 127.0.0.1 -p {self.pg_port} -k {self.root} -F", "start",
        ))
        self._pg_started = True
        self._run([str(STAC_VENV / "bin/pypgstac"), "migrate", "--dsn", self.dsn])
        env = {
            **os.environ, "PGUSER": "postgres", "PGPASSWORD": "pw", "PGHOST": "127.0.0.1",
            "PGPORT": str(self.pg_port), "PGDATABASE": "postgres",
        }
        for key in [k for k in env if k.startswith(("PREFECT_", "AWS_"))]:
            env.pop(key)
        self._api = subprocess.Popen(
            [str(STAC_VENV / "bin/uvicorn"), "stac_fastapi.pgstac.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.api_port), "--log-level", "warning"],
            env=env, stdout=open(self.root / "api.log", "wb"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self._api.poll() is not None or time.monotonic() > deadline:
                log = (self.root / "api.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"STAC API did not start: {log}")
            time.sleep(0.3)

    def load(self, collections: Iterable[Mapping[str, Any]], items: Iterable[Mapping[str, Any]]) -> None:
        """Upsert collections and items (dicts of STAC JSON) with ``pypgstac load``."""
        for kind, objs in (("collections", collections), ("items", items)):
            path = self.root / f"{kind}.ndjson"
            path.write_text("".join(json.dumps(o) + "\n" for o in objs))
            self._run([str(STAC_VENV / "bin/pypgstac"), "load", kind, str(path), "--dsn", self.dsn,
                       "--method", "upsert"])

    def stop(self) -> None:
        if self._api is not None:
            self._api.terminate()
            try:
                self._api.wait(10)
            except subprocess.TimeoutExpired:
                self._api.kill()
                self._api.wait()
            self._api = None
        if self._pg_started:
            subprocess.run(self._as_db_user(str(_pg_bin() / "pg_ctl"), "-D", str(self.root / "pgdata"),
                                            "-m", "immediate", "-w", "stop"), capture_output=True)
            self._pg_started = False
        shutil.rmtree(self.root, ignore_errors=True)


def catalog_objects(catalog_json: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Collections and items of a static catalog as plain dicts (links dropped, hrefs kept)."""
    import pystac

    cat = pystac.Catalog.from_file(str(catalog_json))
    collections, items = [], []
    for col in cat.get_children():
        d = col.to_dict(include_self_link=False, transform_hrefs=False)
        d["links"] = []
        collections.append(d)
        for item in col.get_items():
            i = item.to_dict(include_self_link=False, transform_hrefs=False)
            i["links"] = []
            items.append(i)
    return collections, items
