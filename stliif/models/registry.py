"""Model registry: ``{name, args}`` specs built by :func:`make_model` (LIIF's ``models.make``).

A spec is a mapping ``{"name": "<kebab-case key>", "args": {...}}``; nested specs (an encoder
inside a LIIF) are plain mappings in ``args`` built by the model itself. Every model built here
remembers its resolved spec (:func:`model_spec`), which checkpoints store so that a model can be
rebuilt from its checkpoint alone.

Built-in keys: ``"edsr-baseline"``, ``"edsr-3d"`` (encoders), ``"liif"``, ``"temporal-liif"``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from stliif.errors import ModelError

__all__ = ["ModelSpecLike", "make_model", "model_spec", "normalize_spec", "register", "registered"]

ModelSpecLike = Mapping[str, Any]
"""``{"name": str, "args": mapping}`` (``args`` optional), or any object with ``name``/``args``."""

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_KEY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_BUILTIN_MODULES = ("stliif.models.encoders", "stliif.models.liif", "stliif.models.temporal_liif")
_SPEC_ATTR = "_stliif_spec"

M = TypeVar("M", bound=Callable[..., nn.Module])


def register(name: str) -> Callable[[M], M]:
    """Class decorator registering a model constructor under a kebab-case ``name``."""
    if not _KEY.match(name):
        raise ModelError(f"registry keys are kebab-case (a-z, 0-9, '-'), got {name!r}")

    def deco(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ModelError(f"model name {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def registered() -> list[str]:
    """Sorted names of every registered model."""
    _load_builtins()
    return sorted(_REGISTRY)


def normalize_spec(spec: ModelSpecLike | Any) -> dict[str, Any]:
    """A JSON-safe deep copy ``{"name": str, "args": dict}`` of ``spec``.

    Raises:
        ModelError: ``spec`` is not a mapping/object with a string ``name`` and mapping ``args``,
            or its arguments are not JSON-serialisable (specs are stored in checkpoints).
    """
    if isinstance(spec, Mapping):
        name, args = spec.get("name"), spec.get("args", {})
        extra = set(spec) - {"name", "args"}
        if extra:
            raise ModelError(f"model spec has unknown keys {sorted(extra)}; use {{name, args}}")
    elif hasattr(spec, "name"):
        name, args = spec.name, getattr(spec, "args", {}) or {}
    else:
        raise ModelError(f"a model spec is {{'name': ..., 'args': {{...}}}}, got {spec!r}")
    if not isinstance(name, str) or not name:
        raise ModelError(f"model spec name must be a non-empty string, got {name!r}")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ModelError(f"model spec args must be a mapping, got {type(args).__name__}")
    try:
        args = json.loads(json.dumps(dict(args)))
    except (TypeError, ValueError) as err:
        raise ModelError(f"model spec args must be JSON-serialisable: {err}") from err
    return {"name": name, "args": args}


def make_model(spec: ModelSpecLike | Any, *, args: Mapping[str, Any] | None = None) -> nn.Module:
    """Build a model from its ``{name, args}`` spec.

    Args:
        spec: The spec (see :data:`ModelSpecLike`).
        args: Overrides merged over ``spec["args"]`` (e.g. an encoder's ``in_channels`` set by the
            model that owns it), as LIIF's ``models.make(spec, args=...)``.

    Returns:
        The module, with its resolved spec attached (:func:`model_spec`).

    Raises:
        ModelError: Unknown name or arguments the constructor does not accept.
    """
    s = normalize_spec(spec)
    if args:
        s["args"] = {**s["args"], **normalize_spec({"name": s["name"], "args": args})["args"]}
    _load_builtins()
    ctor = _REGISTRY.get(s["name"])
    if ctor is None:
        raise ModelError(f"unknown model {s['name']!r}; registered: {sorted(_REGISTRY)}")
    try:
        inspect.signature(ctor).bind(**s["args"])
    except TypeError as err:
        raise ModelError(f"bad arguments for model {s['name']!r}: {err}") from err
    model = ctor(**copy.deepcopy(s["args"]))
    setattr(model, _SPEC_ATTR, s)
    return model


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The resolved spec a model was built from by :func:`make_model` (a copy).

    Raises:
        ModelError: The model was not built by :func:`make_model`.
    """
    s = getattr(model, _SPEC_ATTR, None)
    if s is None:
        raise ModelError(f"{type(model).__name__} was not built by make_model: no spec attached")
    return copy.deepcopy(s)
