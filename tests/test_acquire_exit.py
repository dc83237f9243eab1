"""`stliif acquire` exits 3 with the reason when nothing usable was found (0 with --allow-empty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stliif_cli.acquire
from stliif_cli.main import app


def test_acquire_without_usable_data_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def no_data(flow: Any, spec: Any, store: Any, **options: Any) -> dict[str, Any]:  # the flow's result, no server
        calls.append(spec)
        return {"status": "no-data", "reason": "no items match (providers returned {'earth-search': 0})",
                "found": {"earth-search": 0}, "errors": {}, "table": [], "dropped": {}, "dates": []}

    monkeypatch.setattr(stliif_cli.acquire, "run_flow", no_data)
    monkeypatch.setattr(stliif_cli.acquire, "flow_module", lambda name: type("M", (), {"acquire": None}))
    args = ["acquire", "--aoi", "empty", "--bbox", "1.0,41.0,1.1,41.1", "--start", "1990-01-01", "--end",
            "1990-01-31", "--store", str(tmp_path / "store")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 3 and "no usable data for raw/empty: no items match" in out.stderr
    allowed = CliRunner().invoke(app, [*args, "--allow-empty"])
    assert allowed.exit_code == 0 and "no-data" in allowed.stdout and len(calls) == 2
