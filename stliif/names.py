"""Validation of user-supplied names: AOI ids, artifact paths, branches, tags, run names.

Names end up in file paths and in permanent Icechunk refs, so they are checked before any I/O.

An AOI of the store is named either by a plain name (``bcn``: its cube is ``raw/bcn``, imported
or acquired) or, for a crop of a cube, by the crop's store path (``crop/raw/bcn/eixample``, made
by ``stliif crop raw/bcn eixample``: its cube is that path). Derived artifacts put the AOI name
after their group: ``mask/crop/raw/bcn/eixample``, ``render/crop/raw/bcn/eixample/...``.
"""

from __future__ import annotations

import re

from stliif.errors import InvalidInputError

__all__ = ["aoi_cube_path", "is_crop_aoi", "validate_aoi", "validate_artifact_path", "validate_name", "validate_ref_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REF = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def validate_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a safe single path segment (letters, digits, ``._-``), else raise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInputError(
            f"invalid {what} {name!r}: use 1-128 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_ref_name(name: str) -> str:
    """Return a branch or tag name if it matches ``^[a-z0-9][a-z0-9._-]{0,62}$``, else raise."""
    if not isinstance(name, str) or not _REF.fullmatch(name) or ".." in name:
        raise InvalidInputError(
            f"invalid branch or tag name {name!r}: use 1-63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def validate_artifact_path(path: str) -> str:
    """Return ``path`` (``segment/segment/...``) if every segment is a safe name, else raise."""
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        raise InvalidInputError(f"invalid artifact path {path!r}: expected 'group/sub/name'")
    for segment in path.split("/"):
        validate_name(segment, what=f"segment of artifact path {path!r}")
    return path


CROP_PREFIX = "crop/"


def is_crop_aoi(aoi: str) -> bool:
    """Whether ``aoi`` names a crop (``crop/<source path>/<name>``) rather than a plain AOI."""
    return isinstance(aoi, str) and aoi.startswith(CROP_PREFIX)


def validate_aoi(aoi: str) -> str:
    """Return an AOI name if it is a plain name (:func:`validate_name`) or the store path of a
    crop of an LR cube (``crop/raw/<aoi>/<name>``, or a crop of such a crop), else raise."""
    if not is_crop_aoi(aoi):
        return validate_name(aoi, what="AOI name")
    validate_artifact_path(aoi)
    rest = aoi
    while rest.startswith(CROP_PREFIX):
        rest = rest[len(CROP_PREFIX):]
    parts = rest.split("/")
    if parts[0] != "raw" or len(parts) < 3:
        raise InvalidInputError(
            f"invalid AOI {aoi!r}: a crop AOI is the crop's store path, crop/raw/<aoi>/<name> "
            "(see `stliif store ls crop`)"
        )
    return aoi


def aoi_cube_path(aoi: str) -> str:
    """The store path of an AOI's LR cube: ``raw/<aoi>``, or the crop's own path."""
    return validate_aoi(aoi) if is_crop_aoi(aoi) else f"raw/{validate_aoi(aoi)}"
