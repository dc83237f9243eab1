"""What a model must provide to be rendered, evaluated and trained: the implicit-image contract.

A model maps its inputs to a latent grid (``gen_feat``) and decodes any continuous ``(y, x)``
query of it (``query_rgb``), LIIF's split. :class:`ImplicitModel` encodes one image
(``gen_feat(inp (B, C, H, W))``); :class:`TemporalImplicitModel` fuses a stack of dated frames
for one query time (``gen_feat(frames (B, T, C, H, W), times (B, T), t_query (B,))``, returning
an object with ``feat`` and ``base``). Both carry a ``temporal`` flag that says which one they
are. :func:`check_model` refuses anything else with one clear line, so a model of another
shape fails when it is loaded, not deep inside inference.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from stliif.errors import ModelError

__all__ = ["ImplicitModel", "TemporalImplicitModel", "check_model"]


class _Decodes(Protocol):
    """What both kinds share: the ``temporal`` flag and decoding queries from a latent grid."""

    temporal: bool

    def query_rgb(
        self,
        feat: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        base: torch.Tensor | None = None,
        chunk: int | None = None,
    ) -> torch.Tensor:
        """``(B, Q, 2)`` ``(y, x)`` queries in ``[-1, 1]`` (and cell sizes) -> ``(B, Q, C)`` in ``[0, 1]``
        (a temporal model: at the time ``gen_feat`` fused for)."""
        ...


@runtime_checkable
class ImplicitModel(_Decodes, Protocol):
    """A single-image implicit model (LIIF): ``temporal`` is False."""

    def gen_feat(self, inp: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in ``[0, 1]`` -> ``(B, F, H, W)`` latent grid."""
        ...


@runtime_checkable
class TemporalImplicitModel(_Decodes, Protocol):
    """A space-time implicit model (Temporal LIIF): ``temporal`` is True."""

    def gen_feat(
        self, frames: torch.Tensor, times: torch.Tensor, t_query: torch.Tensor, mask: torch.Tensor | None = None
    ) -> Any:
        """Dated frames fused for ``t_query`` -> an object with ``feat`` ``(B, F, H, W)`` and ``base``."""
        ...


def check_model(model: object) -> ImplicitModel | TemporalImplicitModel:
    """``model`` if it follows the contract (a ``temporal`` flag, ``gen_feat``, ``query_rgb``).

    Raises:
        ModelError: a missing method or flag, named.
    """
    missing = [a for a in ("temporal", "gen_feat", "query_rgb") if not hasattr(model, a)]
    if missing or not isinstance(model, torch.nn.Module):
        what = f"lacks {', '.join(missing)}" if missing else "is not a torch.nn.Module"
        raise ModelError(
            f"{type(model).__name__} {what}: a model needs a temporal flag, gen_feat and query_rgb "
            "(stliif.models.interface)"
        )
    if not isinstance(model.temporal, bool):
        raise ModelError(f"{type(model).__name__}.temporal must be True or False")
    return model
