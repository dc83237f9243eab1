"""Choosing the features of a polygon file for crops, and naming one crop per feature.

Works on the GeoDataFrame :func:`stliif.preprocess.vectors.read_polygon` returns (one row per
feature, attributes kept, rows numbered from 0 in file order).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

import geopandas as gpd

from stliif.errors import InvalidInputError

__all__ = ["crop_names", "feature_attrs", "select_features", "slugify"]


def select_features(
    gdf: gpd.GeoDataFrame, *, feature: int | None = None, where: str | None = None
) -> gpd.GeoDataFrame:
    """The rows chosen by ``feature`` (0-based row) or ``where`` (``"ATTR=VALUE"``, compared as
    text), or every row when neither is given. The index keeps the rows' positions in the file.

    Raises:
        InvalidInputError: both given, a row out of range, no such attribute, no row matches.
    """
    gdf = gdf.reset_index(drop=True)
    if feature is not None and where is not None:
        raise InvalidInputError("give at most one of --feature and --where")
    if feature is not None:
        if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < len(gdf):
            raise InvalidInputError(
                f"feature {feature!r} out of range: the file has {len(gdf)} features (0 to {len(gdf) - 1})"
            )
        return gdf.iloc[[feature]]
    if where is not None:
        attr, sep, value = where.partition("=")
        attr = attr.strip()
        if not sep or not attr:
            raise InvalidInputError(f"where {where!r}: expected ATTR=VALUE")
        _need_attribute(gdf, attr, "where")
        chosen = gdf[gdf[attr].map(_text) == value.strip()]
        if chosen.empty:
            sample = ", ".join(repr(_text(v)) for v in gdf[attr].head(5))
            raise InvalidInputError(
                f"where {where!r}: no feature has {attr} = {value.strip()!r} (values: {sample}, ...)"
            )
        return chosen
    return gdf


def slugify(value: Any) -> str:
    """A path-safe name: accents dropped, lowercase ASCII letters and digits joined by ``-``
    (``"Sarrià-Sant Gervasi"`` -> ``"sarria-sant-gervasi"``); ``""`` when nothing is left."""
    text = unicodedata.normalize("NFKD", _text(value))
    text = (
        "".join(c for c in text if not unicodedata.combining(c)).encode("ascii", "ignore").decode()
    )
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:128].strip("-")


def crop_names(gdf: gpd.GeoDataFrame, attr: str) -> list[str]:
    """One path-safe, unique crop name per row, from attribute ``attr`` (:func:`slugify`).

    Raises:
        InvalidInputError: no such attribute, an empty value or one with no letter or digit,
            two values with the same name.
    """
    _need_attribute(gdf, attr, "each")
    names: dict[str, Any] = {}
    out = []
    for row, value in zip(gdf.index, gdf[attr], strict=True):
        name = slugify(value) if _text(value) else ""
        if not name:
            raise InvalidInputError(
                f"each {attr}: feature {row} has {attr} = {_text(value)!r}, which gives no name"
            )
        if name in names:
            raise InvalidInputError(
                f"each {attr}: {_text(names[name])!r} and {_text(value)!r} both make the crop name {name!r}"
            )
        names[name] = value
        out.append(name)
    return out


def feature_attrs(gdf: gpd.GeoDataFrame, row: Any) -> dict[str, Any]:
    """The attributes of row ``row`` as JSON-safe values (NaN -> None, dates -> ISO text)."""
    rec = gdf.drop(columns=gdf.geometry.name).loc[row].to_dict()
    return {str(k): _json(v) for k, v in rec.items()}


def _need_attribute(gdf: gpd.GeoDataFrame, attr: str, option: str) -> None:
    cols = [str(c) for c in gdf.columns if c != gdf.geometry.name]
    if attr not in cols:
        raise InvalidInputError(
            f"{option}: no attribute {attr!r} (attributes: {', '.join(cols) or 'none'})"
        )


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return value
