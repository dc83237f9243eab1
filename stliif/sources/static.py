"""Static STAC: a ``catalog.json`` / ``collection.json`` / item (a path or an http URL), no ``/search``.

:func:`read_static` reads it with pystac (links followed recursively, relative hrefs resolved
against each file's own location), keeps the items that have every requested band and returns
them with absolute asset hrefs, ``stliif:provider = "static"`` and ``stliif:source`` (kind
``stac-static``, the item's own href), ready for harmonisation and
:func:`stliif.sources.load.load_cube`. Filtering by area and dates is the caller's
(:mod:`stliif.ingest`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from urllib.error import URLError

import pystac

from stliif.errors import DataAccessError, InvalidInputError
from stliif.sources.safe import SOURCE
from stliif.sources.stac import resolve_band_asset
from stliif.types import Bands

__all__ = ["PROVIDER_NAME", "read_static"]

PROVIDER_NAME = "static"
"""The ``stliif:provider`` of items read from a static catalog."""


def _open(source: str) -> pystac.STACObject:
    if not source.startswith(("http://", "https://")):
        path = Path(source)
        if path.is_dir():
            path = path / "catalog.json"
        if not path.is_file():
            raise InvalidInputError(f"{source} does not exist")
        source = str(path.resolve())
    try:
        return pystac.read_file(source)
    except (URLError, ConnectionError, TimeoutError) as err:
        raise DataAccessError(f"cannot read {source}: {err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{source} is not a STAC catalog, collection or item (not JSON: {err})") from err
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError) as err:
        raise InvalidInputError(f"{source} is not a STAC catalog, collection or item ({err})") from err
    except OSError as err:
        raise DataAccessError(f"cannot read {source}: {err}") from err


def read_static(source: str, *, bands: Sequence[str]) -> list[pystac.Item]:
    """The items of a static STAC catalog, collection or item that have every band in ``bands``.

    Raises:
        InvalidInputError: not STAC, no items, or no item with every requested band.
        DataAccessError: a linked file could not be read.
    """
    obj = _open(source)
    try:
        if isinstance(obj, pystac.Item):
            items = [obj]
        elif isinstance(obj, pystac.Catalog):
            items = list(obj.get_items(recursive=True))
        else:
            raise InvalidInputError(f"{source} is a {type(obj).__name__}, not a catalog, collection or item")
    except (URLError, OSError) as err:
        raise DataAccessError(f"{source}: cannot read a linked catalog or item: {err}") from err
    if not items:
        raise InvalidInputError(f"{source} holds no items")
    wanted = [b for b in Bands.from_like(list(bands)).names if b != "SCL"]
    out, lacking = [], {}
    for item in items:
        item = item.clone()
        item.make_asset_hrefs_absolute()
        missing = [b for b in wanted if resolve_band_asset(item, b) is None]
        if missing:
            lacking[item.id] = missing
            continue
        self_href = item.get_self_href() or ""
        item.properties.setdefault("stliif:provider", PROVIDER_NAME)
        item.properties[SOURCE] = {"kind": "stac-static", "href": self_href}
        out.append(item)
    if not out:
        some = ", ".join(f"{k} (no {'/'.join(v)})" for k, v in list(lacking.items())[:3])
        raise InvalidInputError(f"{source}: no item has every requested band: {some}")
    return out
