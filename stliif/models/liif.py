"""LIIF: Local Implicit Image Function, with a decoder factored for CPU speed.

Reference: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit Image
Function", CVPR 2021. The design is LIIF's: an encoder turns the low-resolution image into a grid
of latent codes; a query at a continuous coordinate ``(y, x)`` with a cell size is decoded by an
MLP from (3x3-unfolded latent code, coordinate relative to the code, cell), and the predictions
of the 4 nearest codes are blended with area weights (local ensemble).

Exact factorisation used here (:class:`ImplicitDecoder`): the MLP's first layer is linear in its
input ``[unfold3x3(feat), rel_coord, cell]``, so its feature part is a 3x3 convolution of the
latent grid, computed once per image at low resolution (``feat_proj``). Each query then only
gathers one ``hidden``-vector per corner and adds the (tiny) coordinate/cell part. This gives the
same function as LIIF (the 3x3 unfolding with zero padding *is* a 3x3 convolution with zero
padding; weights of a LIIF MLP map one-to-one) at a fraction of the cost per query: the first
layer goes from ``9F x hidden`` to ``4 x hidden`` multiply-adds per corner.

Additions (all optional, off in the plain ``"liif"`` defaults): a residual over a smooth
upsampling of the input (``residual="bilinear"``), a learned global 3x4 colour map of that base
and a learned global sub-pixel shift of it (:class:`ResidualBase`).

Images are float ``[0, 1]`` with channels first; the encoder sees ``(x - 0.5) / 0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from stliif.errors import ModelError
from stliif.models.coords import local_corners, make_coord, to_grid
from stliif.models.registry import make_model, register

__all__ = ["DEFAULT_CHUNK", "LIIF", "ImplicitDecoder", "ResidualBase", "default_chunk"]

DEFAULT_CHUNK = 8192
"""Queries decoded at once by default: bounds memory to ``4 * chunk * hidden`` floats a layer.
Small chunks stay in the CPU caches (8192 was the fastest measured here, 2x faster than 65536);
on a GPU pass a much larger one (see :func:`default_chunk`)."""


def default_chunk(device: torch.device | str) -> int:
    """A good query chunk for ``device``: :data:`DEFAULT_CHUNK` on CPU, 2**18 on CUDA."""
    return 1 << 18 if torch.device(device).type == "cuda" else DEFAULT_CHUNK

ResidualMode = Literal["none", "bilinear", "bicubic"]


def _check_query(coord: torch.Tensor, cell: torch.Tensor | None, batch: int) -> None:
    if coord.ndim != 3 or coord.shape[0] != batch or coord.shape[-1] != 2:
        raise ModelError(f"coord must be (B={batch}, Q, 2), got {tuple(coord.shape)}")
    if cell is not None and cell.shape != coord.shape:
        raise ModelError(f"cell must match coord {tuple(coord.shape)}, got {tuple(cell.shape)}")


class ImplicitDecoder(nn.Module):
    """LIIF's local implicit decoder (MLP + feature unfolding + local ensemble + cell decoding).

    Reference: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit
    Image Function", CVPR 2021. The first MLP layer is factored into ``feat_proj`` (a 3x3 conv,
    or 1x1 without unfolding, applied to the latent grid) plus ``coord_proj`` (applied to the
    relative coordinate and cell of each query): see the module docstring.

    Args:
        feat_dim: Channels ``F`` of the latent grid.
        out_dim: Output channels (3 for RGB).
        hidden: Widths of the MLP's hidden layers (LIIF: ``(256, 256, 256, 256)``).
        feat_unfold: Use the 3x3 neighbourhood of each code.
        local_ensemble: Blend the 4 nearest codes with area weights (else the nearest only).
        cell_decode: Feed the query cell to the MLP.
        zero_init_last: Start the last layer at zero (the decoder then outputs 0: useful for a
            residual model, which starts as its base).
    """

    def __init__(
        self,
        feat_dim: int,
        out_dim: int = 3,
        hidden: Sequence[int] = (256, 256, 256, 256),
        *,
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if feat_dim < 1 or out_dim < 1 or not hidden or min(hidden) < 1:
            raise ModelError(
                f"need feat_dim, out_dim >= 1 and non-empty positive hidden, got "
                f"{feat_dim}, {out_dim}, {hidden}"
            )
        self.feat_unfold = bool(feat_unfold)
        self.local_ensemble = bool(local_ensemble)
        self.cell_decode = bool(cell_decode)
        k = 3 if self.feat_unfold else 1
        n_geo = 4 if self.cell_decode else 2
        self.feat_proj = nn.Conv2d(feat_dim, hidden[0], k, padding=k // 2)
        self.coord_proj = nn.Linear(n_geo, hidden[0], bias=False)
        # LIIF's first layer is one nn.Linear(9F + 4, hidden): give both parts its default init.
        bound = 1.0 / math.sqrt(feat_dim * k * k + n_geo)
        assert self.feat_proj.bias is not None
        for p in (self.feat_proj.weight, self.feat_proj.bias, self.coord_proj.weight):
            nn.init.uniform_(p, -bound, bound)
        layers: list[nn.Module] = []
        prev = hidden[0]
        for h in hidden[1:]:
            layers += [nn.ReLU(inplace=True), nn.Linear(prev, h)]
            prev = h
        last = nn.Linear(prev, out_dim)
        if zero_init_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers += [nn.ReLU(inplace=True), last]
        self.mlp = nn.Sequential(*layers)
        self.out_dim = out_dim

    def project(self, feat: torch.Tensor) -> torch.Tensor:
        """First-layer feature term of every latent code: ``(B, F, H, W) -> (B, hidden0, H, W)``."""
        if feat.ndim != 4:
            raise ModelError(f"feat must be (B, F, H, W), got {tuple(feat.shape)}")
        return self.feat_proj(feat)

    def query(
        self,
        proj: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        chunk: int | None = DEFAULT_CHUNK,
    ) -> torch.Tensor:
        """Decode queries from a projected latent grid.

        Args:
            proj: ``(B, hidden0, H, W)`` from :meth:`project`.
            coord: ``(B, Q, 2)`` ``(y, x)`` in ``[-1, 1]`` (see :mod:`stliif.models.coords`).
            cell: ``(B, Q, 2)`` query cell sizes (required when ``cell_decode``).
            chunk: Queries decoded at once (``None``: all).

        Returns:
            ``(B, Q, out_dim)``.
        """
        b, hd, h, w = proj.shape
        _check_query(coord, cell, b)
        if self.cell_decode and cell is None:
            raise ModelError("this decoder uses cell decoding: pass cell")
        size = coord.new_tensor([h, w])
        w_geo = self.coord_proj.weight  # (hd, 2 [+ 2])
        # rel = (coord - centre) * size is linear: fold the code-centre term into the table once
        # per image, so each query adds one (B, n, hd) term shared by its K corners.
        centres = make_coord((h, w), device=proj.device, dtype=proj.dtype) * size
        table = proj.flatten(2).transpose(1, 2) - centres @ w_geo[:, :2].T  # (B, H*W, hd)
        table = table.contiguous().view(b * h * w, hd)  # rows contiguous: fast gathers
        offset = (torch.arange(b, device=proj.device) * (h * w)).view(b, 1, 1)
        q = coord.shape[1]
        step = q if not chunk or chunk <= 0 else int(chunk)
        out: torch.Tensor | None = None  # filled in place: no small live blocks between the
        # chunks' big temporaries, so freed memory goes back to the allocator whole
        for s in range(0, q, max(step, 1)):
            c = coord[:, s : s + step]
            n = c.shape[1]
            corners = local_corners(c, (h, w), local_ensemble=self.local_ensemble)
            k = corners.index.shape[1]
            per_query = (c * size) @ w_geo[:, :2].T  # (B, n, hd)
            if self.cell_decode:
                assert cell is not None
                per_query = per_query + (cell[:, s : s + step] * size) @ w_geo[:, 2:].T
            z = table.index_select(0, (corners.index + offset).reshape(-1)).view(b, k, n, hd)
            z += per_query.unsqueeze(1)
            pred = self.mlp(z)  # (B, K, n, out)
            part = (pred * corners.weight.unsqueeze(-1)).sum(dim=1)
            if out is None:
                out = part.new_empty(b, q, part.shape[-1])
            out[:, s : s + n] = part
        assert out is not None
        return out


class ResidualBase(nn.Module):
    """The smooth prediction a residual LIIF adds its output to.

    ``base(coord) = interp(colour(img), coord + shift)``: an image (the input, or a temporal
    fusion of the inputs) sampled at the query coordinates by bilinear/bicubic interpolation
    (``grid_sample``, border padding; bilinear at the output grid equals
    ``F.interpolate(..., align_corners=False)``), optionally after a learned global affine colour
    map (``C x (C + 1)``, identity at start) and with a learned global sub-pixel shift (in
    low-resolution pixels, 0 at start) for the systematic LR/HR misregistration.

    Args:
        mode: ``"bilinear"``, ``"bicubic"`` or ``"none"`` (base = 0).
        channels: Image channels.
        colour_map: Learn the affine colour map.
        learn_shift: Learn the ``(dy, dx)`` shift.
    """

    def __init__(
        self,
        mode: ResidualMode = "bilinear",
        channels: int = 3,
        *,
        colour_map: bool = False,
        learn_shift: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("none", "bilinear", "bicubic"):
            raise ModelError(f"residual must be 'none', 'bilinear' or 'bicubic', got {mode!r}")
        self.mode = mode
        self.colour: nn.Conv2d | None = None
        if colour_map:
            self.colour = nn.Conv2d(channels, channels, 1)
            with torch.no_grad():
                self.colour.weight.copy_(torch.eye(channels)[:, :, None, None])
                assert self.colour.bias is not None
                self.colour.bias.zero_()
        self.shift = nn.Parameter(torch.zeros(2)) if learn_shift else None

    def forward(self, img: torch.Tensor | None, coord: torch.Tensor) -> torch.Tensor | None:
        """Sample ``img`` ``(B, C, H, W)`` at ``coord`` ``(B, Q, 2)`` -> ``(B, Q, C)`` (or None)."""
        if self.mode == "none":
            return None
        if img is None:
            raise ModelError("a residual model needs its base image (pass base=...)")
        if self.colour is not None:
            img = self.colour(img)
        c = coord
        if self.shift is not None:
            c = c + self.shift * 2.0 / c.new_tensor(img.shape[-2:])
        out = F.grid_sample(
            img, to_grid(c), mode=self.mode, padding_mode="border", align_corners=False
        )
        return out[:, :, 0, :].transpose(1, 2)


def _default_encoder() -> dict[str, Any]:
    return {"name": "edsr-baseline", "args": {"n_feats": 64, "n_resblocks": 16}}


class DecodesQueries:
    """``query_rgb`` of LIIF and Temporal LIIF: a model with an :class:`ImplicitDecoder`
    ``decoder`` and a :class:`ResidualBase` ``base`` (mixed in before ``nn.Module``)."""

    decoder: ImplicitDecoder
    base: ResidualBase

    def _init_decoding(
        self,
        feat_dim: int,
        out_channels: int,
        hidden: Sequence[int],
        *,
        feat_unfold: bool,
        local_ensemble: bool,
        cell_decode: bool,
        residual: ResidualMode,
        colour_map: bool,
        learn_shift: bool,
    ) -> None:
        """Make ``decoder`` and ``base`` (in this order: parameter names and initial values are
        those of every checkpoint); a residual model's decoder starts at 0, i.e. at its base."""
        self.decoder = ImplicitDecoder(
            feat_dim,
            out_channels,
            hidden,
            feat_unfold=feat_unfold,
            local_ensemble=local_ensemble,
            cell_decode=cell_decode,
            zero_init_last=residual != "none",
        )
        self.base = ResidualBase(
            residual, out_channels, colour_map=colour_map, learn_shift=learn_shift
        )

    def query_rgb(
        self,
        feat: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        base: torch.Tensor | None = None,
        chunk: int | None = DEFAULT_CHUNK,
    ) -> torch.Tensor:
        """Decode queries from a latent grid (a temporal model's: at the time ``gen_feat`` fused for).

        Args:
            feat: ``(B, F, H, W)`` from ``gen_feat`` (Temporal LIIF: ``TemporalLatent.feat``).
            coord: ``(B, Q, 2)`` ``(y, x)`` in ``[-1, 1]``.
            cell: ``(B, Q, 2)`` cell sizes.
            base: ``(B, C, H, W)`` image the residual is added to (the input, or the fused image;
                residual models only).
            chunk: Queries decoded at once; memory is bounded by the chunk, not by ``Q``.

        Returns:
            ``(B, Q, C)`` values in ``[0, 1]`` units (not clipped).
        """
        proj = self.decoder.project(feat)
        return _decode(self.decoder, self.base, proj, coord, cell, base, chunk)


@register("liif")
class LIIF(DecodesQueries, nn.Module):
    """Single-image LIIF: encoder + :class:`ImplicitDecoder` (+ optional :class:`ResidualBase`).

    Reference: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit
    Image Function", CVPR 2021. The defaults are LIIF's (EDSR-baseline 64 x 16, MLP 4 x 256,
    unfolding, local ensemble, cell decoding, no residual); the CPU configuration of this project
    is smaller and residual (``docs/models.md``).

    Args:
        encoder_spec: ``{name, args}`` of a 2-D encoder (default EDSR-baseline 64 x 16);
            ``in_channels`` is set to ``in_channels``.
        hidden: MLP hidden widths.
        feat_unfold: 3x3 feature unfolding.
        local_ensemble: 4-corner local ensemble.
        cell_decode: Cell decoding.
        residual: ``"none"`` (LIIF) or predict a residual over a ``"bilinear"``/``"bicubic"``
            upsampling of the input.
        colour_map: Learned affine colour map of the base (residual only).
        learn_shift: Learned global sub-pixel shift of the base (residual only).
        in_channels: Input channels.
        out_channels: Output channels.
    """

    temporal = False

    def __init__(
        self,
        encoder_spec: Mapping[str, Any] | None = None,
        hidden: Sequence[int] = (256, 256, 256, 256),
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        residual: ResidualMode = "none",
        colour_map: bool = False,
        learn_shift: bool = False,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.encoder = make_model(encoder_spec or _default_encoder(), args={"in_channels": in_channels})
        if getattr(self.encoder, "temporal", False):
            raise ModelError("LIIF needs a 2-D encoder; use temporal-liif for edsr-3d")
        self._init_decoding(
            int(getattr(self.encoder, "out_dim")),  # noqa: B009 - a module attribute torch types as Tensor | Module
            out_channels, hidden, feat_unfold=feat_unfold, local_ensemble=local_ensemble,
            cell_decode=cell_decode, residual=residual, colour_map=colour_map, learn_shift=learn_shift,
        )  # fmt: skip
        self.in_channels = in_channels

    def gen_feat(self, inp: torch.Tensor) -> torch.Tensor:
        """Latent grid of ``inp`` ``(B, C, H, W)`` in ``[0, 1]`` -> ``(B, F, H, W)``."""
        if inp.ndim != 4 or inp.shape[1] != self.in_channels:
            raise ModelError(
                f"inp must be (B, {self.in_channels}, H, W), got {tuple(inp.shape)}"
            )
        return self.encoder((inp - 0.5) / 0.5)

    def forward(
        self,
        inp: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        chunk: int | None = DEFAULT_CHUNK,
    ) -> torch.Tensor:
        """``inp (B, C, H, W)``, ``coord``/``cell (B, Q, 2)`` -> ``(B, Q, C)``."""
        return self.query_rgb(self.gen_feat(inp), coord, cell, base=inp, chunk=chunk)


def _decode(
    decoder: ImplicitDecoder,
    base_fn: ResidualBase,
    proj: torch.Tensor,
    coord: torch.Tensor,
    cell: torch.Tensor | None,
    base: torch.Tensor | None,
    chunk: int | None,
) -> torch.Tensor:
    """Chunked decoding + base, shared by LIIF and temporal LIIF: ``(B, Q, C)``."""
    out = decoder.query(proj, coord, cell, chunk=chunk)
    b = base_fn(base, coord)
    return out if b is None else out + b
