"""Fault injection on 127.0.0.1: a proxy in front of a real server (the local STAC API), and a
file server with Range support (COG reads over HTTP).

Requests pass through to the upstream unchanged, and the proxy rewrites upstream URLs in the
answers to its own address (so pagination links come back through it). Faults are queued per
request kind and taken one per matching request:

- ``("status", code, headers)``: answer ``code`` with a JSON error body (and ``headers``);
- ``("stall", seconds)``: wait before answering (the client's read timeout fires first);
- ``("malformed",)``: answer 200 with a body that is not JSON;
- ``("truncate", n)``: forward, but send only the first ``n`` bytes of the upstream body.

Kinds: ``"root"`` (GET /), ``"search"`` (the first /search request), ``"page"`` (a /search
request that carries a pagination token), ``"other"``.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.error
import urllib.request
from typing import Any

Fault = tuple[Any, ...]


class FaultProxy:
    """Use as a context manager; ``url`` is the proxy's root; ``faults[kind]`` queues faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: dict[str, list[Fault]] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _kind(self, body: bytes) -> str:
                path = self.path.split("?")[0]
                if path == "/":
                    return "root"
                if path.rstrip("/").endswith("/search"):
                    paged = "token" in self.path or b'"token"' in body
                    return "page" if paged else "search"
                return "other"

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                kind = self._kind(body)
                with proxy._lock:
                    proxy.calls.append(kind)
                    queue = proxy.faults.get(kind) or []
                    fault = queue.pop(0) if queue else None
                if fault and fault[0] == "status":
                    self._send(fault[1], b'{"code": "injected", "description": "injected fault"}', fault[2] if len(fault) > 2 else None)
                    return
                if fault and fault[0] == "stall":
                    time.sleep(fault[1])
                if fault and fault[0] == "malformed":
                    self._send(200, b'{"type": "FeatureCollection", "features": [')
                    return
                own = f"http://127.0.0.1:{self.server.server_address[1]}"
                req = urllib.request.Request(proxy.upstream + self.path, data=body or None, method=self.command,
                                             headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                data = data.replace(proxy.upstream.encode(), own.encode())
                if fault and fault[0] == "truncate":
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: fault[1]])
                    self.close_connection = True
                    return
                self._send(status, data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class FaultyFileServer:
    """Serves the files under ``root`` on 127.0.0.1 with HTTP Range support (as object stores
    do), with faults queued per file name: ``faults["B04.tif"] = [("status", 503), ...]``
    (``("status", code)`` answers ``code``; a queue of ``("status", code)`` * n is a storm)."""

    def __init__(self, root: Any) -> None:
        from pathlib import Path

        self.root = Path(root)
        self.faults: dict[str, list[Fault]] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, head: bool) -> None:
                rel = self.path.split("?")[0].lstrip("/")
                path = (srv.root / rel).resolve()
                name = rel
                with srv._lock:
                    srv.calls[name] = srv.calls.get(name, 0) + 1
                    queue = srv.faults.get(name) or []
                    fault = queue.pop(0) if queue else None
                if fault and fault[0] == "status":
                    self.send_response(fault[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not path.is_file() or srv.root.resolve() not in path.parents:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                status, body = 200, data
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start = int(a)
                    end = min(int(b) if b else len(data) - 1, len(data) - 1)
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status, body = 206, data[start : end + 1]
                self.send_response(status)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "image/tiff")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass

            def do_GET(self) -> None:
                self._answer(False)

            def do_HEAD(self) -> None:
                self._answer(True)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyFileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
