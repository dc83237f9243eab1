"""Option parsing shared by the commands."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from stliif.errors import InvalidInputError

__all__ = ["build_spec", "parse_floats"]

S = TypeVar("S", bound=BaseModel)


def build_spec(cls: type[S], fields: dict[str, Any], what: str) -> S:
    """``cls(**fields)``, a validation failure as :class:`InvalidInputError` ("invalid <what>: ...")."""
    try:
        return cls(**fields)
    except ValidationError as err:
        raise InvalidInputError(f"invalid {what}: {err}") from err


def parse_floats(text: str | None, n: int, opt: str) -> tuple[float, ...] | None:
    """``"a,b,c"`` -> ``(a, b, c)``: exactly ``n`` comma-separated numbers, or ``None`` for ``None``."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n:
        raise InvalidInputError(f"{opt} needs {n} comma-separated numbers, got {text!r}")
    return values
