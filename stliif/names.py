"""Validation of user-supplied names: AOI ids, artifact paths, branches, tags, run names.

Names end up in file paths and in permanent Icechunk refs, so they are checked before any I/O.
"""

from __future__ import annotations

import re

from stliif.errors import InvalidInputError

__all__ = ["validate_artifact_path", "validate_name", "validate_ref_name"]

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
