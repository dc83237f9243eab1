"""Registry of STAC API providers of Sentinel-2 L2A (and Copernicus DEM) data.

Each :class:`Provider` records what differs between catalogues of the same data: the
collection ids, the asset key of each band, whether searches can use a CQL2-JSON ``filter``
or need the older ``query`` extension, how assets are authorised, and the scale/offset
conventions of their pixels. The facts were checked against real item JSON of each provider
(``tests/fixtures/stac/``) and the providers' documentation and issue trackers; see
``docs/providers.md``. Nothing here touches the network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

from stliif.errors import InvalidInputError
from stliif.types import S2_BANDS

__all__ = [
    "PROVIDERS",
    "FilterSupport",
    "Provider",
    "custom_provider",
    "describe_providers",
    "get_provider",
    "providers_markdown",
]

FilterSupport = Literal["cql2-json", "query"]
S2_L2A = "s2-l2a"
"""Role key of the Sentinel-2 L2A collection in :attr:`Provider.collections`."""
DEM = "dem"
"""Role key of the Copernicus DEM GLO-30 collection in :attr:`Provider.collections`."""


def _mapping(d: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Provider:
    """What stliif needs to know about one STAC API."""

    name: str
    """Registry key (kebab-case)."""
    title: str
    """Human-readable name."""
    url: str
    """Root URL of the STAC API."""
    collections: Mapping[str, str]
    """Collection id per role: ``"s2-l2a"`` (Sentinel-2 L2A) and, where offered, ``"dem"``."""
    band_assets: Mapping[str, str]
    """Canonical band id (``B01``..``B12``, ``B8A``, ``SCL``) -> asset key of the item."""
    filter_support: FilterSupport
    """``"cql2-json"``: search with a CQL2-JSON ``filter`` (POST); ``"query"``: use the query
    extension (the provider does not support, or not reliably, the filter extension)."""
    dem_asset: str | None = None
    """Asset key of the DEM GeoTIFF in the ``"dem"`` collection."""
    cloud_property: str = "eo:cloud_cover"
    """Item property holding the scene cloud cover in percent."""
    requires_signing: bool = False
    """Whether asset hrefs must be signed (short-lived tokens) before they are read."""
    asset_format: str = "COG"
    """Format of the band assets (COG or JPEG 2000)."""
    auth: str = ""
    """How search and asset reads are authorised."""
    scale_offset: str = ""
    """How DN map to reflectance in this catalogue (see :func:`stliif.sources.stac.harmonise`)."""
    asset_hosts: tuple[str, ...] = ()
    """Allowed ``scheme://host`` prefixes of asset hrefs (empty: not restricted)."""
    notes: str = ""
    """Anything else a user must know."""
    preference: int = 100
    """Tie-break rank in de-duplication (lower wins)."""
    resolution: str = "S2: 10 m (B02-B04, B08), 20 m (B05-B07, B8A, B11, B12, SCL), 60 m (B01, B09); DEM: 30 m"
    """Native pixel sizes of what the provider serves (the same for every provider of L2A)."""
    revisit: str = "5 days (two satellites; 2-3 days at mid-latitudes from overlapping orbits)"
    """Revisit of Sentinel-2 (a property of the mission, not of the provider)."""

    def collection(self, role: str = S2_L2A) -> str:
        """The collection id for ``role`` (``"s2-l2a"`` or ``"dem"``).

        Raises:
            InvalidInputError: the provider does not offer that collection.
        """
        try:
            return self.collections[role]
        except KeyError:
            raise InvalidInputError(
                f"provider {self.name!r} has no {role!r} collection "
                f"(it offers: {', '.join(self.collections) or 'none'})"
            ) from None

    def asset_key(self, band: str) -> str:
        """The asset key of a canonical band id in this provider's items."""
        try:
            return self.band_assets[band]
        except KeyError:
            raise InvalidInputError(f"provider {self.name!r} has no asset for band {band!r}") from None


# Asset keys, as found in real items (tests/fixtures/stac/):
_EARTH_SEARCH_BANDS = {b.id: b.common_name for b in S2_BANDS.values()}  # coastal, blue, ..., scl
_PC_BANDS = {b: b for b in S2_BANDS}  # B01 .. B12, B8A, SCL
_CDSE_BANDS = {b.id: f"{b.id}_{int(b.gsd)}m" for b in S2_BANDS.values()}  # B02_10m, ..., SCL_20m
_COMMON_COLLECTIONS = {S2_L2A: "sentinel-2-l2a", DEM: "cop-dem-glo-30"}
"""The collection ids most STAC APIs use (Earth Search, Planetary Computer; CDSE for L2A)."""

EARTH_SEARCH = Provider(
    name="earth-search",
    title="Earth Search v1 (Element 84, AWS)",
    url="https://earth-search.aws.element84.com/v1",
    collections=_mapping(_COMMON_COLLECTIONS),
    band_assets=_mapping(_EARTH_SEARCH_BANDS),
    dem_asset="data",
    filter_support="query",
    auth="none: anonymous search; COGs on public S3 (us-west-2) over https",
    scale_offset=(
        "raster:bands scale 0.0001, offset -0.1 on every reflectance band, but items flagged "
        "earthsearch:boa_offset_applied=true already have the PB>=04.00 offset removed from "
        "their pixels (the flag wins; the declared offset is then wrong)"
    ),
    asset_hosts=("https://sentinel-cogs.s3.us-west-2.amazonaws.com",),
    notes=(
        "CQL2-JSON landed in stac-server only in 2025 (stac-server#825); use the query "
        "extension. Item datetime is the tile sensing time, not the datatake start. Some "
        "2022 items carry a wrong boa_offset_applied flag (earth-search#66)."
    ),
    preference=10,
)

PLANETARY_COMPUTER = Provider(
    name="planetary-computer",
    title="Microsoft Planetary Computer",
    url="https://planetarycomputer.microsoft.com/api/stac/v1",
    collections=_mapping(_COMMON_COLLECTIONS),
    band_assets=_mapping(_PC_BANDS),
    dem_asset="data",
    filter_support="cql2-json",
    requires_signing=True,
    auth=(
        "anonymous search; asset hrefs (Azure Blob) need a short-lived SAS token at read "
        "time (planetary_computer.sign / sign_inplace as the pystac-client modifier); never "
        "log signed URLs"
    ),
    scale_offset=(
        "no raster:bands; DN are the ESA values: reflectance = DN/10000, minus 0.1 when "
        "s2:processing_baseline >= 04.00"
    ),
    asset_hosts=("https://sentinel2l2a01.blob.core.windows.net",),
    notes="pgstac: CQL2-JSON filter and the query extension both work.",
    preference=20,
)

CDSE = Provider(
    name="cdse",
    title="Copernicus Data Space Ecosystem",
    url="https://stac.dataspace.copernicus.eu/v1",
    collections=_mapping({S2_L2A: _COMMON_COLLECTIONS[S2_L2A]}),
    band_assets=_mapping(_CDSE_BANDS),
    filter_support="cql2-json",
    asset_format="JPEG 2000",
    auth=(
        "anonymous search; assets are s3://eodata/... (CDSE S3 keys, endpoint "
        "https://eodata.dataspace.copernicus.eu) or https alternates needing an OIDC token"
    ),
    scale_offset=(
        "STAC 1.1 raster:scale 0.0001 and raster:offset -0.1 on the asset for PB>=04.00; "
        "baseline in processing:version"
    ),
    asset_hosts=("s3://eodata", "https://zipper.dataspace.copernicus.eu"),
    notes=(
        "Band assets exist at several resolutions (B02_10m, B02_20m, B02_60m); the registry "
        "maps each band to its native one. No DEM collection registered here."
    ),
    preference=30,
)

PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {p.name: p for p in (EARTH_SEARCH, PLANETARY_COMPUTER, CDSE)}
)
"""The built-in providers by name."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _check_url(url: str) -> str:
    if not isinstance(url, str):
        raise InvalidInputError(f"provider url must be a string, got {url!r}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"provider url {url!r} must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise InvalidInputError(
            "provider url must not embed credentials; pass headers or a request modifier"
        )
    if parts.query or parts.fragment:
        raise InvalidInputError("provider url must not carry a query string or fragment")
    return url.strip().rstrip("/")


def custom_provider(
    url: str,
    *,
    name: str = "custom",
    collection: str = _COMMON_COLLECTIONS[S2_L2A],
    band_assets: Mapping[str, str] | None = None,
    filter_support: FilterSupport = "cql2-json",
    dem_collection: str | None = None,
    dem_asset: str | None = None,
    requires_signing: bool = False,
) -> Provider:
    """A provider for any other STAC API (for example a local stac-fastapi on 127.0.0.1).

    Args:
        url: Root URL (http or https, no credentials or query string).
        name: Registry-style name (kebab-case) used in provenance records.
        collection: Sentinel-2 L2A collection id.
        band_assets: Canonical band id -> asset key; defaults to the ids themselves
            (``B01``.., ``SCL``), the layout of Planetary Computer and of
            :func:`stliif.sources.stac_export.export_worldstrat_stac`.
        filter_support: ``"cql2-json"`` or ``"query"``.
        dem_collection: DEM collection id, if any.
        dem_asset: DEM asset key, if any.
        requires_signing: Whether hrefs need signing at read time.

    Raises:
        InvalidInputError: bad URL, name, band names or filter kind.
    """
    url = _check_url(url)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(f"provider name {name!r} must be kebab-case ([a-z0-9-], 1-63 chars)")
    if filter_support not in ("cql2-json", "query"):
        raise InvalidInputError(f"filter_support must be 'cql2-json' or 'query', got {filter_support!r}")
    if not isinstance(collection, str) or not collection.strip():
        raise InvalidInputError("collection must be a non-empty collection id")
    assets = dict(_PC_BANDS if band_assets is None else band_assets)
    unknown = sorted(set(assets) - set(S2_BANDS))
    if unknown:
        raise InvalidInputError(f"band_assets keys must be canonical band ids, unknown: {unknown}")
    collections = {S2_L2A: collection}
    if dem_collection:
        collections[DEM] = dem_collection
    return Provider(
        name=name,
        title=f"Custom STAC API at {url}",
        url=url,
        collections=_mapping(collections),
        band_assets=_mapping(assets),
        dem_asset=dem_asset,
        filter_support=filter_support,
        requires_signing=requires_signing,
        auth="as configured by the caller (headers / request modifier)",
        scale_offset="declared per item (raster:bands or raster:scale/raster:offset)",
    )


def get_provider(provider: str | Provider) -> Provider:
    """A registered provider by name, or a custom one for an http(s) URL.

    A URL equal to a registered provider's root URL returns that provider.

    Raises:
        InvalidInputError: unknown name or invalid URL.
    """
    if isinstance(provider, Provider):
        return provider
    if not isinstance(provider, str):
        raise InvalidInputError(f"provider must be a name or URL, got {provider!r}")
    key = provider.strip()
    if key.lower() in PROVIDERS:
        return PROVIDERS[key.lower()]
    if "://" in key:
        url = _check_url(key)
        for p in PROVIDERS.values():
            if p.url == url:
                return p
        return custom_provider(url)
    raise InvalidInputError(
        f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)} or a STAC API URL"
    )


def describe_providers(providers: Mapping[str, Provider] | None = None) -> list[dict[str, str]]:
    """One row per provider, for ``stliif providers`` and ``docs/providers.md``.

    Returns:
        Rows with keys ``name``, ``url``, ``s2_collection``, ``dem_collection``, ``search``,
        ``assets``, ``resolution``, ``revisit``, ``signing``, ``auth``, ``scale_offset``, all
        strings.
    """
    rows = []
    for p in (providers or PROVIDERS).values():
        rows.append(
            {
                "name": p.name,
                "url": p.url,
                "s2_collection": p.collections.get(S2_L2A, "-"),
                "dem_collection": p.collections.get(DEM, "-"),
                "search": "CQL2-JSON filter" if p.filter_support == "cql2-json" else "query extension",
                "assets": f"{p.asset_format}; B04 -> {p.band_assets.get('B04', '-')!r}, "
                f"SCL -> {p.band_assets.get('SCL', '-')!r}",
                "resolution": p.resolution,
                "revisit": p.revisit,
                "signing": "yes" if p.requires_signing else "no",
                "auth": p.auth,
                "scale_offset": p.scale_offset,
            }
        )
    return rows


def providers_markdown(providers: Mapping[str, Provider] | None = None) -> str:
    """The provider table and band -> asset key table as Markdown (embedded in the docs)."""
    providers = providers or PROVIDERS
    rows = describe_providers(providers)
    cols = ["name", "url", "s2_collection", "dem_collection", "search", "signing"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    lines += ["", f"Resolution (every provider): {rows[0]['resolution']}. Revisit: {rows[0]['revisit']}."]
    lines += ["", "| band | common name | " + " | ".join(providers) + " |",
              "|" + "---|" * (2 + len(providers))]
    for b in S2_BANDS.values():
        keys = " | ".join(f"`{p.band_assets.get(b.id, '-')}`" for p in providers.values())
        lines.append(f"| {b.id} | {b.common_name} | {keys} |")
    return "\n".join(lines) + "\n"
