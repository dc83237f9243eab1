"""Option parsing shared by the commands."""

from __future__ import annotations

from stliif.errors import InvalidInputError

__all__ = ["parse_floats"]


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
