"""A WorldStrat revisit's ``.metadata`` file, read without the raster stack (json and numpy only),
so that protocol P's dates load where rasterio is absent."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from stliif.errors import DataAccessError

__all__ = ["read_metadata"]


def _parse_date(value: Any, path: Path, key: str) -> np.datetime64:
    try:
        return np.datetime64(dt.date.fromisoformat(str(value)[:10]), "ns")
    except (TypeError, ValueError) as err:
        raise DataAccessError(f"{path}: field {key!r} is not an ISO date: {value!r}") from err


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read a revisit's ``.metadata`` JSON in either dialect, normalised.

    Returns keys ``date`` and ``hr_date`` (datetime64), ``delta_days`` (int), ``cloud_cover``
    (float, percent), and where present ``lon``, ``lat``, ``bounds`` (list of 4 floats) and the
    land-cover labels ``LCCS``, ``SMOD``, ``IPCC``.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataAccessError(f"{path}: unreadable metadata ({err})") from err
    if not isinstance(raw, dict):
        raise DataAccessError(f"{path}: metadata is not a JSON object")
    date_key = "lowres_date" if "lowres_date" in raw else "datetime"
    hr_key = "highres_date" if "highres_date" in raw else "target_date"
    if date_key not in raw or hr_key not in raw:
        raise DataAccessError(f"{path}: metadata lacks the LR or HR date")
    out: dict[str, Any] = {
        "date": _parse_date(raw[date_key], path, date_key),
        "hr_date": _parse_date(raw[hr_key], path, hr_key),
        "cloud_cover": float(raw.get("cloud_cover", np.nan)),
    }
    out["delta_days"] = int((out["date"] - out["hr_date"]) / np.timedelta64(1, "D"))
    for key in ("lon", "lat"):
        if key in raw:
            out[key] = float(raw[key])
    if "bounds" in raw:
        bounds = raw["bounds"]
        out["bounds"] = [float(v) for v in (json.loads(bounds) if isinstance(bounds, str) else bounds)]
    for key in ("LCCS", "SMOD", "IPCC"):
        if key in raw:
            out[key] = raw[key]
    return out
