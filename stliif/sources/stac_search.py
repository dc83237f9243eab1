"""Asking a STAC API: validated search parameters and a pystac-client with retries and timeouts.

- :func:`build_search_params`: validated pystac-client ``Client.search`` keyword arguments for a
  provider, with a CQL2-JSON ``filter`` where the provider supports it and ``query`` otherwise.
- :func:`make_retrying_client`: a pystac-client ``Client`` with bounded timeouts and urllib3
  retries (RELIABILITY rows 14-16); a static catalog given as an API gets one line
  (:func:`static_stac_hint`).

What is done with the items found (provenance, assets, harmonisation, de-duplication) is
:mod:`stliif.sources.stac`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import pystac

from stliif.errors import DataAccessError, InvalidInputError, TransientDataAccessError
from stliif.sources.providers import S2_L2A, Provider, get_provider
from stliif.types import AOI, BBox, TimeRange, TimeRangeLike

__all__ = [
    "RETRY_STATUSES",
    "AreaLike",
    "build_search_params",
    "make_retrying_client",
    "make_stac_api_io",
    "redact_url",
    "static_stac_hint",
]

# --------------------------------------------------------------------------------------------
# Search parameters
# --------------------------------------------------------------------------------------------

AreaLike: TypeAlias = "BBox | AOI | Sequence[float] | Mapping[str, Any] | Any"
"""A bbox (``BBox`` or 4 numbers) or a polygon (``AOI``, shapely, GeoJSON mapping)."""


def build_search_params(
    provider: str | Provider,
    area: AreaLike,
    time_range: TimeRangeLike,
    *,
    max_cloud: float | None = None,
    limit: int = 100,
    max_items: int | None = None,
    role: str = S2_L2A,
) -> dict[str, Any]:
    """Keyword arguments for ``pystac_client.Client.search``, validated before any I/O.

    Args:
        provider: A registered provider name, an http(s) STAC API URL or a ``Provider``.
        area: A ``BBox`` or a sequence of 4 numbers (searched with ``bbox``), or an ``AOI``,
            shapely polygon or GeoJSON polygon (searched with ``intersects``).
        time_range: Anything :meth:`TimeRange.from_like` accepts.
        max_cloud: Keep items with ``eo:cloud_cover <= max_cloud`` (percent, 0-100); ``None``
            for no cloud filter.
        limit: Page size (1-1000).
        max_items: Stop after this many items (``None``: all).
        role: Collection role, ``"s2-l2a"`` or ``"dem"`` (the DEM gets no cloud filter).

    Returns:
        ``{"method": "POST", "collections": [...], "bbox" | "intersects": ...,
        "datetime": "start/end", "limit": ...}`` plus ``"filter"`` and
        ``"filter_lang": "cql2-json"`` (providers with CQL2-JSON) or ``"query"`` (others)
        when ``max_cloud`` is given, and ``"max_items"`` when given.

    Raises:
        InvalidInputError: any invalid argument.
    """
    p = get_provider(provider)
    collection = p.collection(role)
    params: dict[str, Any] = {"method": "POST", "collections": [collection]}
    if isinstance(area, AOI):
        params["intersects"] = area.to_geojson()
    elif isinstance(area, BBox):
        params["bbox"] = area.as_list()
    elif isinstance(area, Sequence) and not isinstance(area, str | bytes):
        params["bbox"] = BBox.from_like(area).as_list()
    else:
        params["intersects"] = AOI.from_like(area).to_geojson()
    tr = TimeRange.from_like(time_range)
    params["datetime"] = tr.to_stac()
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInputError(f"limit must be an integer in [1, 1000], got {limit!r}")
    params["limit"] = limit
    if max_items is not None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise InvalidInputError(f"max_items must be a positive integer, got {max_items!r}")
        params["max_items"] = max_items
    if max_cloud is not None and role == S2_L2A:
        if (
            isinstance(max_cloud, bool)
            or not isinstance(max_cloud, int | float)
            or not math.isfinite(max_cloud)
            or not 0 <= max_cloud <= 100
        ):
            raise InvalidInputError(f"max_cloud must be a percentage in [0, 100], got {max_cloud!r}")
        prop = p.cloud_property
        if p.filter_support == "cql2-json":
            params["filter"] = {"op": "<=", "args": [{"property": prop}, float(max_cloud)]}
            params["filter_lang"] = "cql2-json"
        else:
            params["query"] = {prop: {"lte": float(max_cloud)}}
    return params



# --------------------------------------------------------------------------------------------
# Client with retries and timeouts
# --------------------------------------------------------------------------------------------

RETRY_STATUSES = (429, 500, 502, 503, 504)


def redact_url(url: str) -> str:
    """A URL without userinfo, query string or fragment (they may carry tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def make_stac_api_io(
    *,
    timeout: float | tuple[float, float] = (10, 60),
    retries: int = 5,
    backoff: float = 0.5,
    backoff_max: float = 30.0,
    headers: Mapping[str, str] | None = None,
    request_modifier: Callable[[Any], Any] | None = None,
) -> Any:
    """A ``pystac_client.stac_api_io.StacApiIO`` with bounded timeouts and retries.

    Retries use urllib3 ``Retry(total=retries, backoff_factor=backoff, backoff_jitter,
    status_forcelist=[429, 500, 502, 503, 504], allowed_methods=None,
    respect_retry_after_header=True, raise_on_status=False)``: ``allowed_methods=None``
    because item search is a POST; ``raise_on_status=False`` so the last response's status
    reaches the caller (and :func:`make_retrying_client` can classify it).

    Args:
        timeout: Seconds, or ``(connect, read)``; never unbounded.
        retries: Total retries (0-10).
        backoff: Exponential backoff factor in seconds (>= 0).
        backoff_max: Cap of one backoff sleep, seconds.
        headers: Extra request headers (for example an API key; never logged by stliif).
        request_modifier: pystac-client request modifier (request signing).

    Raises:
        InvalidInputError: invalid timeout or retry settings.
    """
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    t = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if len(t) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in t
    ):
        raise InvalidInputError(f"timeout must be positive seconds or (connect, read), got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise InvalidInputError(f"retries must be an integer in [0, 10], got {retries!r}")
    if not isinstance(backoff, int | float) or not math.isfinite(backoff) or backoff < 0:
        raise InvalidInputError(f"backoff must be >= 0 seconds, got {backoff!r}")
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        backoff_max=backoff_max,
        backoff_jitter=min(backoff, 1.0),
        status_forcelist=list(RETRY_STATUSES),
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    return StacApiIO(
        headers=dict(headers or {}),
        request_modifier=request_modifier,
        timeout=(float(t[0]), float(t[1])),
        max_retries=retry,
    )


def static_stac_hint(url: str) -> str:
    """The one-line answer to a static STAC catalog, collection or item given as a STAC API."""
    return (f"{redact_url(url)} is a static STAC catalog, collection or item, not a STAC API (no /search): "
            f"import it with `stliif import {redact_url(url)} --aoi NAME`")


def make_retrying_client(
    url: str,
    *,
    timeout: float | tuple[float, float] = (10, 60),
    retries: int = 5,
    backoff: float = 0.5,
    headers: Mapping[str, str] | None = None,
    modifier: Callable[[Any], None] | None = None,
    request_modifier: Callable[[Any], Any] | None = None,
) -> Any:
    """Open a STAC API with :func:`make_stac_api_io`'s retries and timeouts.

    Args:
        url: The API root (http or https), or a local catalog path (tests).
        timeout: Seconds, or ``(connect, read)``.
        retries: Total retries on connection errors, timeouts and 429/5xx.
        backoff: Backoff factor, seconds.
        headers: Extra headers.
        modifier: pystac-client item modifier (for example ``planetary_computer.sign_inplace``).
        request_modifier: pystac-client request modifier.

    Returns:
        A ``pystac_client.Client``.

    Raises:
        InvalidInputError: invalid URL or settings.
        TransientDataAccessError: 429/5xx after retries, connection errors, timeouts.
        DataAccessError: other failures (4xx, not a STAC API).
    """
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError(f"STAC API url must be a non-empty string, got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "", "file"):
        raise InvalidInputError(f"STAC API url {redact_url(url)!r}: scheme must be http or https")
    if scheme in ("http", "https"):
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise InvalidInputError("STAC API url must not embed credentials; pass headers")
    stac_io = make_stac_api_io(
        timeout=timeout, retries=retries, backoff=backoff, headers=headers,
        request_modifier=request_modifier,
    )
    from pystac_client.errors import ClientTypeError

    try:
        # Client.open re-applies `timeout` to stac_io (None would erase it): pass it again.
        return Client.open(url, stac_io=stac_io, modifier=modifier, timeout=stac_io.timeout)
    except ClientTypeError as err:  # an item or collection URL: static STAC, not an API
        raise InvalidInputError(static_stac_hint(url)) from err
    except APIError as err:
        status = getattr(err, "status_code", None)
        where = redact_url(url)
        if status is None or status in RETRY_STATUSES:
            raise TransientDataAccessError(
                f"STAC API {where} unavailable (status {status or 'no response'}) after "
                f"{retries} retries; try again later"
            ) from err
        raise DataAccessError(f"STAC API {where} answered {status}; check the URL and credentials") from err
    except (OSError, ValueError, pystac.STACError) as err:
        raise DataAccessError(f"cannot open STAC catalog {redact_url(url)}: {err}") from err
