"""Pure functions over ``pystac.Item`` objects (no network I/O); asking an API is
:mod:`stliif.sources.stac_search`.

- :func:`harmonise`: decide per item whether the Sentinel-2 processing-baseline 04.00 BOA offset
  (``BOA_ADD_OFFSET = -1000`` DN, i.e. -0.1 reflectance) must still be applied, fix the item's
  declared scale/offset accordingly and record the decision in its properties.
- :func:`deduplicate`: one item per acquisition (platform, MGRS tile, datatake) across
  providers, chosen deterministically, with provenance of the others.
- :func:`filter_items_with_assets`: drop items lacking the assets of the requested bands.

Every function returns new items and never mutates its input. Items are serialised with
``to_dict(transform_hrefs=False)``: pystac's default resolves the root link, which is a
network request for API items.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pystac

from stliif.errors import (
    DataAccessError,
    InvalidInputError,
    NoDataError,
)
from stliif.sources.providers import PROVIDERS, Provider, get_provider
from stliif.sources.stac_search import redact_url
from stliif.types import S2_BANDS, Bands, BandsLike

__all__ = [
    "BOA_ADD_OFFSET_DN",
    "HARMONISATION",
    "PROVIDER",
    "Acquisition",
    "acquisition_of",
    "check_asset_hrefs",
    "deduplicate",
    "filter_items_with_assets",
    "harmonise",
    "processing_baseline",
    "processing_level",
    "provider_of",
    "reflectance_params",
    "resolve_band_asset",
    "tag_provider",
    "to_reflectance",
]

log = logging.getLogger(__name__)

PROVIDER = "stliif:provider"
"""Item property: the registry name of the provider an item came from."""
HARMONISATION = "stliif:harmonisation"
"""Item property: what :func:`harmonise` decided (see its docstring)."""
DUPLICATES = "stliif:duplicates"
"""Item property: the items :func:`deduplicate` dropped in favour of this one."""
ACQUISITION = "stliif:acquisition"
"""Item property: the acquisition key :func:`deduplicate` grouped by."""

BOA_ADD_OFFSET_DN = -1000
"""ESA's L2A ``BOA_ADD_OFFSET`` from processing baseline 04.00 (25 Jan 2022) on, in DN."""
_OFFSET_BASELINE = (4, 0)
_DEFAULT_SCALE = 1e-4
_RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"


def _clone(item: pystac.Item) -> pystac.Item:
    """A deep copy that never resolves links (no network)."""
    return pystac.Item.from_dict(
        copy.deepcopy(item.to_dict(transform_hrefs=False, include_self_link=True)),
        preserve_dict=False,
        migrate=False,
    )


# --------------------------------------------------------------------------------------------
# Provider provenance
# --------------------------------------------------------------------------------------------


def tag_provider(items: Iterable[pystac.Item], provider: str | Provider) -> list[pystac.Item]:
    """Copies of ``items`` with ``stliif:provider`` set (what a search step does on receipt)."""
    name = get_provider(provider).name
    out = []
    for item in items:
        c = _clone(item)
        c.properties[PROVIDER] = name
        out.append(c)
    return out


def provider_of(item: pystac.Item, providers: Mapping[str, Provider] | None = None) -> str:
    """The provider name of an item: its ``stliif:provider`` property, else the registered
    provider whose root URL prefixes the item's self/root/collection link, else ``"unknown"``."""
    name = item.properties.get(PROVIDER)
    if isinstance(name, str) and name:
        return name
    for link in item.links:
        if link.rel not in ("self", "root", "collection", "parent"):
            continue
        href = link.get_href(transform_href=False) or ""
        for p in (providers or PROVIDERS).values():
            if href.rstrip("/") == p.url or href.startswith(p.url + "/"):
                return p.name
    return "unknown"


def _provider_obj(item: pystac.Item) -> Provider | None:
    name = provider_of(item)
    return PROVIDERS.get(name)


# --------------------------------------------------------------------------------------------
# Band -> asset resolution
# --------------------------------------------------------------------------------------------


def _asset_band_names(asset: pystac.Asset) -> list[tuple[str | None, str | None]]:
    """(name, common_name) of each band an asset declares (eo:bands or STAC 1.1 bands)."""
    out: list[tuple[str | None, str | None]] = []
    for b in asset.extra_fields.get("eo:bands") or []:
        out.append((b.get("name"), b.get("common_name")))
    for b in asset.extra_fields.get("bands") or []:
        out.append((b.get("name"), b.get("eo:common_name") or b.get("common_name")))
    return out


def resolve_band_asset(
    item: pystac.Item, band: str, *, provider: str | Provider | None = None
) -> str | None:
    """The asset key holding canonical band ``band`` in ``item``, or ``None``.

    Order: the provider's registered mapping; an asset named like the band id or its common
    name (any case); a single-band asset whose declared band name is the id or the stliif
    common name (smallest ``gsd`` first, then key).
    """
    info = S2_BANDS.get(band)
    if info is None:
        raise InvalidInputError(f"{band!r} is not a canonical band id")
    p = get_provider(provider) if provider is not None else _provider_obj(item)
    if p is not None:
        key = p.band_assets.get(band)
        if key is not None and key in item.assets:
            return key
    lower = {k.lower(): k for k in item.assets}
    for candidate in (band.lower(), info.common_name):
        if candidate in lower:
            return lower[candidate]
    matches = []
    for key, asset in item.assets.items():
        names = _asset_band_names(asset)
        if len(names) == 1 and names[0][0] in (band, info.common_name):
            gsd = asset.extra_fields.get("gsd")
            matches.append((float(gsd) if isinstance(gsd, int | float) else math.inf, key))
    return min(matches)[1] if matches else None


def filter_items_with_assets(
    items: Iterable[pystac.Item],
    bands: BandsLike,
    *,
    min_items: int = 1,
    provider: str | Provider | None = None,
) -> list[pystac.Item]:
    """Keep the items that have an asset for every requested band (RELIABILITY row 11).

    Args:
        items: STAC items.
        bands: Requested bands (common names or S2 ids).
        min_items: Raise if fewer items than this remain.
        provider: Provider whose band mapping to use; default: each item's own provider.

    Returns:
        The kept items, in input order (the same objects, not copies). The number dropped and
        their ids are logged.

    Raises:
        InvalidInputError: unknown band names.
        NoDataError: fewer than ``min_items`` items remain.
    """
    wanted = Bands.from_like(bands)
    kept: list[tuple[pystac.Item, list[str]]] = []
    dropped: list[tuple[pystac.Item, list[str]]] = []
    for item in items:
        missing = [b for b in wanted if resolve_band_asset(item, b, provider=provider) is None]
        (dropped if missing else kept).append((item, missing))
    if dropped:
        log.warning(
            "dropped %d of %d items lacking assets: %s",
            len(dropped),
            len(dropped) + len(kept),
            ", ".join(f"{i.id} (no {'/'.join(m)})" for i, m in dropped[:10]),
        )
    if len(kept) < min_items:
        raise NoDataError(
            f"only {len(kept)} item(s) have assets for all of {', '.join(wanted)} "
            f"({len(dropped)} dropped); at least {min_items} required"
        )
    return [i for i, _ in kept]


def check_asset_hrefs(
    items: Iterable[pystac.Item], bands: BandsLike, *, provider: str | Provider | None = None
) -> None:
    """Refuse band assets whose href is outside the provider's allowed hosts.

    A compromised catalogue could point GDAL at ``file://`` paths or internal hosts
    (RELIABILITY, "Untrusted STAC content"). Providers without an allowlist are not checked.

    Raises:
        DataAccessError: an href outside the allowlist (the message omits query strings).
    """
    wanted = Bands.from_like(bands)
    for item in items:
        p = get_provider(provider) if provider is not None else _provider_obj(item)
        if p is None or not p.asset_hosts:
            continue
        for band in wanted:
            key = resolve_band_asset(item, band, provider=p)
            if key is None:
                continue
            href = item.assets[key].href
            if not any(href == h or href.startswith(h.rstrip("/") + "/") for h in p.asset_hosts):
                raise DataAccessError(
                    f"item {item.id}: asset {key!r} points outside {p.name}'s hosts "
                    f"({redact_url(href)}); refusing to read it"
                )


# --------------------------------------------------------------------------------------------
# Harmonisation
# --------------------------------------------------------------------------------------------

_PB_RE = re.compile(r"^\s*N?(\d{1,2})\.?(\d{2})\s*$")
_PRODUCT_RE = re.compile(
    r"(?P<mission>S2[A-D])_MSIL(?P<level>1C|2A)_(?P<start>\d{8}T\d{6})_N(?P<pb>\d{4})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})"
)
_PC_ID_RE = re.compile(
    r"(?P<mission>S2[A-D])_MSIL(?P<level>1C|2A)_(?P<start>\d{8}T\d{6})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})"
)


def _pb_tuple(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    m = _PB_RE.fullmatch(value)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def _product_name(item: pystac.Item) -> str | None:
    props = item.properties
    for candidate in (props.get("s2:product_uri"), props.get("sentinel:product_id"), item.id):
        if isinstance(candidate, str) and _PRODUCT_RE.search(candidate):
            return candidate
    return None


def processing_baseline(item: pystac.Item) -> str | None:
    """The Sentinel-2 processing baseline as ``"MM.mm"``, or ``None`` when the item has none.

    Read from ``s2:processing_baseline`` (Earth Search, Planetary Computer),
    ``processing:version`` (CDSE), ``sentinel:processing_baseline`` (Earth Search v0), or the
    ``_Nxxyy_`` field of the product name (``s2:product_uri``, ``sentinel:product_id`` or the
    item id).
    """
    props = item.properties
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        t = _pb_tuple(props.get(key))
        if t is not None:
            return f"{t[0]:02d}.{t[1]:02d}"
    name = _product_name(item)
    if name is not None:
        m = _PRODUCT_RE.search(name)
        assert m is not None
        pb = m.group("pb")
        return f"{pb[:2]}.{pb[2:]}"
    return None


_LEVELS = {"L1C": "L1C", "L2A": "L2A", "LEVEL-1C": "L1C", "LEVEL-2A": "L2A", "S2MSI1C": "L1C", "S2MSI2A": "L2A",
           "1C": "L1C", "2A": "L2A"}


def processing_level(item: pystac.Item) -> str:
    """``"L1C"`` (top-of-atmosphere) or ``"L2A"`` (surface reflectance) of a Sentinel-2 item.

    Read from ``processing:level``, ``s2:product_type``, the product name (``MSIL1C`` /
    ``MSIL2A``) or the collection id (``...l1c``); ``"L2A"`` when nothing says (the STAC API
    collections stliif searches are L2A).
    """
    props = item.properties
    for key in ("processing:level", "s2:product_type"):
        v = props.get(key)
        if isinstance(v, str) and v.strip().upper() in _LEVELS:
            return _LEVELS[v.strip().upper()]
    for candidate in (props.get("s2:product_uri"), props.get("sentinel:product_id"), item.id):
        m = _PRODUCT_RE.search(candidate) if isinstance(candidate, str) else None
        if m is not None:
            return _LEVELS[m.group("level")]
    if (item.collection_id or "").lower().endswith("l1c"):
        return "L1C"
    return "L2A"


def _band_assets(item: pystac.Item) -> list[str]:
    """Asset keys of the reflectance bands (B01..B12, B8A) present in ``item``."""
    keys = []
    for band in S2_BANDS:
        if band == "SCL":
            continue
        key = resolve_band_asset(item, band)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def _declared(asset: pystac.Asset, field: str) -> float | None:
    fields = asset.extra_fields
    rb = fields.get("raster:bands")
    if isinstance(rb, list) and rb and isinstance(rb[0], Mapping) and field in rb[0]:
        v = rb[0][field]
        return float(v) if isinstance(v, int | float) else None
    v = fields.get(f"raster:{field}")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _set_declared(asset: pystac.Asset, scale: float, offset: float) -> None:
    fields = asset.extra_fields
    if isinstance(fields.get("raster:bands"), list) and fields["raster:bands"]:
        for b in fields["raster:bands"]:
            b["scale"] = scale
            b["offset"] = offset
    elif "raster:scale" in fields or "raster:offset" in fields or "bands" in fields:
        fields["raster:scale"] = scale
        fields["raster:offset"] = offset
    else:
        fields["raster:bands"] = [{"nodata": 0, "scale": scale, "offset": offset}]


UnknownPolicy = Literal["raise", "assume-harmonised"]
_APPLIED_FLAGS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")  # v1, v0


def harmonise(items: Iterable[pystac.Item], *, unknown: UnknownPolicy = "raise") -> list[pystac.Item]:
    """Decide, per item, the reflectance offset of its DN and make its metadata say so.

    From processing baseline (PB) 04.00 on, ESA L2A DN carry ``BOA_ADD_OFFSET = -1000``:
    ``reflectance = (DN - 1000) / 10000``; before, ``reflectance = DN / 10000``. Providers
    differ in what their pixels and metadata say, so the rule is, in order:

    1. ``earthsearch:boa_offset_applied`` (Earth Search v0: ``sentinel:boa_offset_applied``)
       is ``true`` -> the provider already removed the
       offset from the pixels: offset 0 (Earth Search's declared ``raster:bands`` offset of
       -0.1 is then wrong and is corrected; maintainers: the flag is the truth).
    2. A processing baseline is known (``s2:processing_baseline``, ``processing:version``,
       product name): PB >= 04.00 -> the declared offset if the assets declare one, else
       ``BOA_ADD_OFFSET * scale`` (-0.1); PB < 04.00 -> 0.
    3. No baseline, but the assets declare an offset -> that offset.
    4. Nothing known -> ``unknown="raise"`` raises; ``"assume-harmonised"`` takes 0.

    Only the assets the band mapping resolves (the provider's band COGs) are adjusted; other
    assets keep their declared values (Earth Search's ``*-jp2`` alternates are ESA's original
    JPEG 2000 files, whose declared -0.1 is right even when the COGs are harmonised).

    The returned items carry ``raster:bands`` (or STAC 1.1 ``raster:scale``/``raster:offset``)
    scale and offset on every reflectance-band asset that match the decision, so
    ``reflectance = DN * scale + offset`` (DN 0 = no data), and the property
    ``stliif:harmonisation``: ``{"processing_baseline", "offset_applied_by_provider",
    "reflectance_scale", "reflectance_offset", "boa_add_offset_dn", "basis",
    "corrected_assets", "version"}``. Already harmonised items are returned unchanged
    (copies), so the function is idempotent.

    Args:
        items: STAC items (not modified).
        unknown: What to do when an item says nothing about its offset.

    Raises:
        DataAccessError: ``unknown="raise"`` and an item's offset cannot be decided.
        InvalidInputError: ``unknown`` is not a known policy.
    """
    if unknown not in ("raise", "assume-harmonised"):
        raise InvalidInputError(f"unknown must be 'raise' or 'assume-harmonised', got {unknown!r}")
    out = []
    for src in items:
        item = _clone(src)
        if isinstance(item.properties.get(HARMONISATION), Mapping):
            out.append(item)
            continue
        keys = _band_assets(item)
        declared_offsets = {o for k in keys if (o := _declared(item.assets[k], "offset")) is not None}
        declared_scales = {s for k in keys if (s := _declared(item.assets[k], "scale")) is not None}
        if len(declared_scales) > 1:
            raise DataAccessError(
                f"item {item.id}: reflectance assets declare different scales "
                f"{sorted(declared_scales)}"
            )
        scale = declared_scales.pop() if declared_scales else _DEFAULT_SCALE
        pb = processing_baseline(item)
        flag_key = next((k for k in _APPLIED_FLAGS if k in item.properties), None)
        applied = flag_key is not None and item.properties[flag_key] is True
        if applied:
            offset, basis = 0.0, f"{flag_key}=true: offset already in the pixels"
        elif pb is not None:
            if _pb_tuple(pb) >= _OFFSET_BASELINE:  # type: ignore[operator]
                if len(declared_offsets) == 1:
                    offset = declared_offsets.pop()
                    basis = f"processing baseline {pb} >= 04.00; declared offset"
                else:
                    offset = BOA_ADD_OFFSET_DN * scale
                    basis = f"processing baseline {pb} >= 04.00; BOA_ADD_OFFSET -1000 DN"
            else:
                offset, basis = 0.0, f"processing baseline {pb} < 04.00: no offset"
        elif len(declared_offsets) == 1:
            offset, basis = declared_offsets.pop(), "no processing baseline; declared offset"
        elif unknown == "raise":
            raise DataAccessError(
                f"item {item.id} ({provider_of(item)}): cannot tell whether its DN carry the "
                "processing-baseline 04.00 offset (no s2:processing_baseline, processing:version, "
                "product name or declared raster offset); pass unknown='assume-harmonised' if "
                "the source is known to be harmonised"
            )
        else:
            offset, basis = 0.0, "nothing declared; assumed harmonised (unknown='assume-harmonised')"
            log.warning("item %s: no processing baseline or offset metadata; assuming no offset", item.id)
        offset = float(round(offset, 12))
        corrected = []
        for k in keys:
            asset = item.assets[k]
            declared = (_declared(asset, "offset"), _declared(asset, "scale"))
            if declared[0] not in (None, offset) or declared[1] not in (None, scale):
                corrected.append(k)
            _set_declared(asset, scale, offset)
        has_raster = any("stac-extensions.github.io/raster/" in u for u in item.stac_extensions)
        if keys and not has_raster:
            item.stac_extensions.append(_RASTER_EXT)
        item.properties[HARMONISATION] = {
            "processing_baseline": pb,
            "offset_applied_by_provider": applied,
            "reflectance_scale": scale,
            "reflectance_offset": offset,
            "boa_add_offset_dn": int(round(offset / scale)),
            "basis": basis,
            "corrected_assets": corrected,
            "version": 1,
        }
        out.append(item)
    return out


def reflectance_params(item: pystac.Item) -> tuple[float, float]:
    """``(scale, offset)`` of a harmonised item: ``reflectance = DN * scale + offset``.

    Raises:
        InvalidInputError: the item was not harmonised.
    """
    rec = item.properties.get(HARMONISATION)
    if not isinstance(rec, Mapping):
        raise InvalidInputError(f"item {item.id} is not harmonised: call harmonise() first")
    return float(rec["reflectance_scale"]), float(rec["reflectance_offset"])


def to_reflectance(
    dn: np.ndarray, scale: float, offset: float, *, nodata: int | None = 0
) -> np.ndarray:
    """Surface reflectance (float32) from DN: ``DN * scale + offset``; ``nodata`` -> NaN."""
    dn = np.asarray(dn)
    out = dn.astype(np.float32) * np.float32(scale) + np.float32(offset)
    if nodata is not None:
        out[dn == nodata] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# De-duplication
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acquisition:
    """What identifies one Sentinel-2 acquisition of one tile, whoever publishes it."""

    mission: str
    """``S2A``, ``S2B``, ``S2C`` (or the lower-cased platform when unknown)."""
    tile: str
    """MGRS tile, 5 characters (``06VVN``), or ``""`` when unknown."""
    sensing: dt.datetime
    """Datatake sensing start from the product name when available, else the item datetime."""
    exact: bool
    """Whether ``sensing`` comes from the product name (exact across providers)."""
    relative_orbit: int | None
    """Relative orbit number, when known."""


def _mission(item: pystac.Item, name_match: re.Match[str] | None) -> str:
    if name_match is not None:
        return name_match.group("mission")
    platform = str(item.properties.get("platform") or "").lower()
    m = re.fullmatch(r"sentinel-?2([a-d])", platform)
    if m:
        return f"S2{m.group(1).upper()}"
    m = re.match(r"(S2[A-D])_", item.id)
    return m.group(1) if m else (platform or "unknown")


def _tile(item: pystac.Item, name_match: re.Match[str] | None) -> str:
    props = item.properties
    if isinstance(props.get("s2:mgrs_tile"), str):
        t = props["s2:mgrs_tile"]
    elif isinstance(props.get("grid:code"), str) and props["grid:code"].startswith("MGRS-"):
        t = props["grid:code"][5:]
    elif all(k in props for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")):
        t = f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}"
    elif name_match is not None:
        t = name_match.group("tile")
    else:
        m = re.match(r"S2[A-D]_(\d{1,2}[A-Z]{3})_", item.id)
        t = m.group(1) if m else ""
    t = t.upper()
    return t.zfill(5) if t else ""


def acquisition_of(item: pystac.Item) -> Acquisition:
    """The acquisition key of an item (see :class:`Acquisition`)."""
    name = _product_name(item)
    m = _PRODUCT_RE.search(name) if name else None
    if m is None:
        m = _PC_ID_RE.search(item.id)
    orbit = item.properties.get("sat:relative_orbit")
    if not isinstance(orbit, int) and m is not None:
        orbit = int(m.group("orbit"))
    if m is not None:
        sensing = dt.datetime.strptime(m.group("start"), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
        exact = True
    else:
        if item.datetime is None:
            raise DataAccessError(f"item {item.id} has no datetime and no product name")
        sensing, exact = item.datetime.astimezone(dt.UTC), False
    return Acquisition(
        _mission(item, m), _tile(item, m), sensing, exact, orbit if isinstance(orbit, int) else None
    )


def _same(a: Acquisition, b: Acquisition, tolerance: dt.timedelta) -> bool:
    if a.mission != b.mission or a.tile != b.tile:
        return False
    orbits = (a.relative_orbit, b.relative_orbit)
    if None not in orbits and orbits[0] != orbits[1]:
        return False
    if a.exact and b.exact:
        return a.sensing == b.sensing
    return abs(a.sensing - b.sensing) <= tolerance


def _self_href(item: pystac.Item) -> str | None:
    link = item.get_single_link("self")
    return link.get_href(transform_href=False) if link is not None else None


def deduplicate(
    items: Iterable[pystac.Item],
    *,
    preference: Sequence[str] | None = None,
    tolerance: dt.timedelta = dt.timedelta(minutes=60),
) -> list[pystac.Item]:
    """Keep one item per acquisition, deterministically (RELIABILITY row 13).

    Items are the same acquisition when mission and MGRS tile match, relative orbits (when
    both known) match, and the datatake sensing start is equal (both from product names) or
    within ``tolerance`` (otherwise; Earth Search's item datetime is the tile sensing time,
    up to tens of minutes after the datatake start). Consecutive orbits over one tile are
    ~100 minutes apart, so the default of 60 minutes does not merge them.

    The kept item is the one with the latest processing baseline, then the preferred
    provider, then the smallest id. It gets ``stliif:provider``, ``stliif:acquisition`` and
    ``stliif:duplicates`` (id, provider, processing baseline and self href of each dropped
    item) properties.

    Args:
        items: STAC items from one or several providers (not modified).
        preference: Provider names, most preferred first; default: the registry's
            ``preference`` ranks (Earth Search, Planetary Computer, CDSE), then others.
        tolerance: Time tolerance when an item has no product name.

    Returns:
        Copies of the kept items, sorted by sensing time, tile and mission.
    """
    if not isinstance(tolerance, dt.timedelta) or tolerance < dt.timedelta(0):
        raise InvalidInputError(f"tolerance must be a non-negative timedelta, got {tolerance!r}")
    if preference is not None:
        rank = {name: i for i, name in enumerate(preference)}
    else:
        rank = {p.name: p.preference for p in PROVIDERS.values()}
    entries = []
    for item in items:
        entries.append((acquisition_of(item), provider_of(item), item))
    entries.sort(key=lambda e: (e[0].mission, e[0].tile, e[0].sensing, e[2].id, e[1]))
    buckets: dict[tuple[str, str], list[list[tuple[Acquisition, str, pystac.Item]]]] = {}
    for entry in entries:
        groups_here = buckets.setdefault((entry[0].mission, entry[0].tile), [])
        for group in groups_here:
            if all(_same(g[0], entry[0], tolerance) for g in group):
                group.append(entry)
                break
        else:
            groups_here.append([entry])
    groups = [g for gs in buckets.values() for g in gs]

    def score(e: tuple[Acquisition, str, pystac.Item]) -> tuple[Any, ...]:
        pb = _pb_tuple(processing_baseline(e[2]) or "") or (-1, -1)
        return (-pb[0], -pb[1], rank.get(e[1], 10_000), e[2].id)

    out = []
    for group in groups:
        ordered = sorted(group, key=score)
        acq, prov, winner = ordered[0]
        kept = _clone(winner)
        kept.properties[PROVIDER] = prov
        kept.properties[ACQUISITION] = {
            "mission": acq.mission,
            "tile": acq.tile,
            "sensing": acq.sensing.isoformat().replace("+00:00", "Z"),
            "relative_orbit": acq.relative_orbit,
        }
        kept.properties[DUPLICATES] = [
            {
                "id": it.id,
                "provider": p,
                "processing_baseline": processing_baseline(it),
                "href": _self_href(it),
            }
            for _, p, it in ordered[1:]
        ]
        out.append((acq, kept))
    if len(out) < len(entries):
        log.info("deduplicate: %d items -> %d acquisitions", len(entries), len(out))
    out.sort(key=lambda e: (e[0].sensing, e[0].tile, e[0].mission, e[1].id))
    return [k for _, k in out]
