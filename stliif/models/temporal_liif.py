"""Temporal LIIF: space-time queries ``(y, x, t, cell) -> RGB`` from a set of dated revisits.

Reference: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit Image
Function", CVPR 2021 (the spatial decoder); the temporal extension follows the space-time study
this project revisits, with the fixes listed in ``PROTOCOLS.md``:

- time comes from the acquisition dates: each frame carries ``t_i`` (days from any reference,
  divided by a time scale, e.g. 30) and a query carries ``t_q``; the model only ever sees the
  differences ``dt_i = t_i - t_q``, so a query at any date is meaningful and the reference is
  irrelevant;
- a variable number of frames is explicit: frames are padded to ``T`` and a ``(B, T)`` mask says
  which are real; padded frames get zero weight and do not enter the median;
- the encoder is shared per frame (2-D, cheap on a CPU) and followed by a fusion that depends on
  the query time (:class:`TemporalFusion`); the study's 3-D EDSR encoder is available
  (``encoder_spec={"name": "edsr-3d", ...}``) for comparison.

Pipeline for frames ``x_i`` ``(B, T, C, H, W)`` in ``[0, 1]``:

1. ``med`` = masked per-pixel temporal median (mean of the two middle values for even counts).
2. ``f_i = E([x_i, x_i - med])`` per frame (shared 2-D encoder), or ``E3d`` over the stack.
3. ``h_i = f_i + tau(dt_i)`` (time embedding), logits
   ``a_i = head(h_i) - lambda |dt_i| - kappa dev_i`` where ``dev_i`` is the 3x3-averaged absolute
   deviation of ``x_i`` from ``med`` (a cloud/outlier cue); the two prior strengths start at
   ``time_prior`` and ``robust_prior`` and are learned (log scale), ``head`` starts at 0.
4. ``w = softmax_T(a)`` per pixel (masked); fused features ``sum_i w_i h_i`` (then a few 2-D
   residual blocks) and fused image ``sum_i w_i x_i``.
5. LIIF decoding of the fused features, as a residual over the bilinear upsampling of the
   colour-mapped fused image (:class:`stliif.models.liif.ResidualBase`).

At start (``head`` and the decoder's last layer at 0) the model is a robust, time-weighted
average of the frames, bilinearly upsampled: a strong base that training then refines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stliif.errors import ModelError
from stliif.models.encoders import ResBlock2d
from stliif.models.liif import DEFAULT_CHUNK, DecodesQueries, ResidualMode
from stliif.models.registry import make_model, register

__all__ = [
    "TemporalFusion",
    "TemporalLIIF",
    "TemporalLatent",
    "TimeEmbedding",
    "masked_median",
]


def masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-pixel median over the real frames.

    Args:
        x: ``(B, T, C, H, W)``.
        mask: ``(B, T)`` bool; every batch element needs at least one real frame.

    Returns:
        ``(B, C, H, W)``: the middle value for odd counts, the mean of the two middle values for
        even counts (numpy's convention).
    """
    if mask.ndim != 2 or mask.shape != x.shape[:2]:
        raise ModelError(f"mask must be (B, T) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    n = mask.sum(dim=1)
    if bool((n == 0).any()):
        raise ModelError("every batch element needs at least one real frame (mask all False)")
    m = mask[:, :, None, None, None]
    filled = torch.where(m, x, torch.full_like(x, math.inf))
    srt = filled.sort(dim=1).values
    lo = ((n - 1) // 2).view(-1, 1, 1, 1, 1).expand(-1, 1, *x.shape[2:])
    hi = (n // 2).view(-1, 1, 1, 1, 1).expand(-1, 1, *x.shape[2:])
    return 0.5 * (srt.gather(1, lo) + srt.gather(1, hi)).squeeze(1)


class TimeEmbedding(nn.Module):
    scales: torch.Tensor  # a buffer
    """Embedding of a time difference ``dt`` (in time-scale units) into ``dim`` channels.

    Features ``tanh(dt / s)`` and ``|tanh(dt / s)|`` for ``s`` in ``scales`` (bounded, so a
    2.5-year gap does not blow up), then a 2-layer MLP. ``(B, T) -> (B, T, dim)``.
    """

    def __init__(self, dim: int, scales: Sequence[float] = (0.25, 1.0, 4.0, 16.0)) -> None:
        super().__init__()
        self.register_buffer("scales", torch.tensor([float(s) for s in scales]))
        self.net = nn.Sequential(
            nn.Linear(2 * len(scales), dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)
        )

    def forward(self, dt: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> ``(B, T, dim)``."""
        z = torch.tanh(dt.unsqueeze(-1) / self.scales)
        return self.net(torch.cat([z, z.abs()], dim=-1))


class TemporalFusion(nn.Module):
    prior_init: torch.Tensor  # a buffer
    """Per-pixel attention over frames that depends on the query time.

    ``a_i = head(f_i + tau(dt_i)) - lambda |dt_i| - kappa dev_i``,
    ``w = softmax_T(a)`` over the real frames (mask), then ``sum_i w_i (f_i + tau(dt_i))`` and
    ``sum_i w_i x_i``. ``head`` is a 2-layer 1x1-conv MLP whose last layer starts at 0, so the
    initial weights come from the two interpretable priors only: closer in time and closer to the
    median (robust to clouds) weigh more.

    Args:
        feat_dim: Feature channels ``F``.
        time_prior: Initial ``lambda`` (logit penalty per time unit of ``|dt|``).
        robust_prior: Initial ``kappa`` (logit penalty per unit of mean absolute deviation from
            the median, images in ``[0, 1]``).
        prior_gain: ``lambda = time_prior * exp(gain * p)`` (same for ``kappa``), ``p`` learned
            from 0: the gain sets how fast Adam can move the two strengths.
    """

    def __init__(
        self,
        feat_dim: int,
        *,
        time_prior: float = 0.1,
        robust_prior: float = 20.0,
        prior_gain: float = 10.0,
    ) -> None:
        super().__init__()
        self.time_embed = TimeEmbedding(feat_dim)
        self.head = nn.Sequential(
            nn.Conv2d(feat_dim, feat_dim, 1), nn.ReLU(inplace=True), nn.Conv2d(feat_dim, 1, 1)
        )
        last = self.head[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if time_prior <= 0 or robust_prior <= 0:
            raise ModelError(f"prior strengths must be > 0, got {time_prior}, {robust_prior}")
        self.register_buffer("prior_init", torch.tensor([float(time_prior), float(robust_prior)]))
        # log-parametrised with a gain: Adam moves each strength by ~gain * lr in log space per
        # step (about 1 % at lr 1e-3), fast enough for two scalars that set the whole weighting.
        self.prior_log = nn.Parameter(torch.zeros(2))
        self.prior_gain = float(prior_gain)

    def strengths(self) -> torch.Tensor:
        """Current ``(time, robust)`` prior strengths, ``(2,)``."""
        return self.prior_init * torch.exp(self.prior_gain * self.prior_log)

    def forward(
        self,
        feats: torch.Tensor,
        frames: torch.Tensor,
        dev: torch.Tensor,
        dt: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fuse per-frame features and images.

        Args:
            feats: ``(B, T, F, H, W)`` per-frame features.
            frames: ``(B, T, C, H, W)`` images in ``[0, 1]``.
            dev: ``(B, T, 1, H, W)`` deviation from the median.
            dt: ``(B, T)`` frame time minus query time.
            mask: ``(B, T)`` bool, real frames.

        Returns:
            ``(fused features (B, F, H, W), fused image (B, C, H, W), weights (B, T, H, W))``.
        """
        b, t, f, h, w = feats.shape
        hfeat = feats + self.time_embed(dt)[..., None, None]
        logits = self.head(hfeat.reshape(b * t, f, h, w)).view(b, t, h, w)
        lam = self.strengths()
        logits = logits - lam[0] * dt.abs()[..., None, None] - lam[1] * dev[:, :, 0]
        logits = logits.masked_fill(~mask[..., None, None], -math.inf)
        weights = torch.softmax(logits, dim=1)  # (B, T, H, W)
        fused = (weights.unsqueeze(2) * hfeat).sum(dim=1)
        image = (weights.unsqueeze(2) * frames).sum(dim=1)
        return fused, image, weights


class TemporalLatent(NamedTuple):
    """What :meth:`TemporalLIIF.gen_feat` returns for one query time per batch element.

    Attributes:
        feat: ``(B, F, H, W)`` fused latent grid.
        base: ``(B, C, H, W)`` fused low-resolution image (before the colour map).
        weights: ``(B, T, H, W)`` fusion weights (0 on padded frames).
    """

    feat: torch.Tensor
    base: torch.Tensor
    weights: torch.Tensor


def _default_encoder() -> dict[str, Any]:
    return {"name": "edsr-baseline", "args": {"n_feats": 32, "n_resblocks": 4}}


@register("temporal-liif")
class TemporalLIIF(DecodesQueries, nn.Module):
    """Space-time LIIF over a variable number of dated revisits (see the module docstring).

    Reference: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit
    Image Function", CVPR 2021, extended in time with query-time-dependent fusion.

    Args:
        encoder_spec: ``{name, args}`` of the frame encoder: a 2-D one (shared per frame, default
            EDSR-baseline 32 x 4) or ``"edsr-3d"``; ``in_channels`` is set by this model.
        hidden: MLP hidden widths of the decoder.
        fusion_blocks: 2-D residual blocks after the fusion.
        feat_unfold: 3x3 feature unfolding.
        local_ensemble: 4-corner local ensemble.
        cell_decode: Cell decoding.
        residual: Base the decoder's output is added to: ``"bilinear"`` (default), ``"bicubic"``
            or ``"none"``.
        colour_map: Learned affine colour map of the base.
        learn_shift: Learned global sub-pixel shift of the base.
        median_input: Feed ``x_i - median`` to the encoder next to ``x_i``.
        time_prior: Initial time penalty of the fusion logits (per time unit).
        robust_prior: Initial deviation-from-median penalty of the fusion logits.
        prior_gain: Learning-rate gain of the two (log-parametrised) prior strengths.
        learn_fusion: Learn the fusion weights (default); False keeps them at their priors (the
            head at 0, the two strengths at their initial values): a fixed, time-weighted and
            cloud-robust average of the revisits, the ablation of the learned attention.
        in_channels: Channels per frame.
        out_channels: Output channels.
    """

    temporal = True

    def __init__(
        self,
        encoder_spec: Mapping[str, Any] | None = None,
        hidden: Sequence[int] = (64, 64, 64),
        fusion_blocks: int = 1,
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        residual: ResidualMode = "bilinear",
        colour_map: bool = True,
        learn_shift: bool = True,
        median_input: bool = True,
        time_prior: float = 0.1,
        robust_prior: float = 20.0,
        prior_gain: float = 10.0,
        learn_fusion: bool = True,
        in_channels: int = 3,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        if residual != "none" and out_channels != in_channels:
            raise ModelError("a residual model needs out_channels == in_channels")
        self.in_channels = in_channels
        self.median_input = bool(median_input)
        enc_in = in_channels * (2 if median_input else 1)
        self.encoder = make_model(encoder_spec or _default_encoder(), args={"in_channels": enc_in})
        feat_dim = int(getattr(self.encoder, "out_dim"))  # noqa: B009 - torch types module attributes as Tensor | Module
        self.fusion = TemporalFusion(
            feat_dim, time_prior=time_prior, robust_prior=robust_prior, prior_gain=prior_gain
        )
        if not learn_fusion:
            for param in (*self.fusion.head.parameters(), self.fusion.prior_log):
                param.requires_grad_(False)
        self.post = nn.Sequential(*[ResBlock2d(feat_dim) for _ in range(int(fusion_blocks))])
        self._init_decoding(
            feat_dim, out_channels, hidden, feat_unfold=feat_unfold, local_ensemble=local_ensemble,
            cell_decode=cell_decode, residual=residual, colour_map=colour_map, learn_shift=learn_shift,
        )  # fmt: skip

    def _check(
        self, frames: torch.Tensor, times: torch.Tensor, t_query: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:  # fmt: skip
        if frames.ndim != 5 or frames.shape[2] != self.in_channels:
            raise ModelError(
                f"frames must be (B, T, {self.in_channels}, H, W), got {tuple(frames.shape)}"
            )
        b, t = frames.shape[:2]
        if times.shape != (b, t):
            raise ModelError(f"times must be (B, T) = {(b, t)}, got {tuple(times.shape)}")
        if t_query.shape != (b,):
            raise ModelError(f"t_query must be (B,) = ({b},), got {tuple(t_query.shape)}")
        if mask is None:
            return torch.ones(b, t, dtype=torch.bool, device=frames.device)
        if mask.shape != (b, t) or mask.dtype != torch.bool:
            raise ModelError(f"mask must be bool (B, T) = {(b, t)}, got {mask.dtype} {tuple(mask.shape)}")
        if bool((~mask.any(dim=1)).any()):
            raise ModelError("every batch element needs at least one real frame (mask all False)")
        return mask

    def gen_feat(
        self,
        frames: torch.Tensor,
        times: torch.Tensor,
        t_query: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> TemporalLatent:
        """Fuse the frames for one query time per batch element.

        Args:
            frames: ``(B, T, C, H, W)`` in ``[0, 1]``; padded frames may hold anything.
            times: ``(B, T)`` frame times (days / time scale, any common reference).
            t_query: ``(B,)`` query time, same units and reference.
            mask: ``(B, T)`` bool, True for real frames (default: all real).

        Returns:
            A :class:`TemporalLatent` (fused features, fused image, weights).
        """
        mask = self._check(frames, times, t_query, mask)
        b, t, c, h, w = frames.shape
        frames = frames * mask[:, :, None, None, None].to(frames.dtype)  # padded frames -> 0
        med = masked_median(frames, mask)
        diff = frames - med.unsqueeze(1)
        dev = F.avg_pool2d(
            diff.abs().mean(dim=2).reshape(b * t, 1, h, w), 3, stride=1, padding=1,
            count_include_pad=False,
        ).view(b, t, 1, h, w)  # fmt: skip
        x = (frames - 0.5) / 0.5
        if self.median_input:
            x = torch.cat([x, 2.0 * diff], dim=2)
        if getattr(self.encoder, "temporal", False):
            feats = self.encoder(x, mask)
        else:
            valid = mask.reshape(-1)
            flat = x.reshape(b * t, *x.shape[2:])
            enc = self.encoder(flat[valid])  # real frames only
            feats = enc.new_zeros(b * t, *enc.shape[1:])
            feats[valid] = enc
            feats = feats.view(b, t, *enc.shape[1:])
        dt = times - t_query[:, None]
        fused, image, weights = self.fusion(feats, frames, dev, dt, mask)
        return TemporalLatent(self.post(fused), image, weights)

    def forward(
        self,
        frames: torch.Tensor,
        times: torch.Tensor,
        t_query: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        chunk: int | None = DEFAULT_CHUNK,
    ) -> torch.Tensor:
        """Space-time query: RGB at ``(coord, t_query)`` with ``cell``.

        Args:
            frames: ``(B, T, C, H, W)`` in ``[0, 1]``.
            times: ``(B, T)`` frame times.
            t_query: ``(B,)`` query time per batch element (all its ``Q`` queries share it; ask
                for several dates with several batch elements).
            coord: ``(B, Q, 2)``.
            cell: ``(B, Q, 2)``.
            mask: ``(B, T)`` bool real-frame mask.
            chunk: Queries decoded at once.

        Returns:
            ``(B, Q, C)``.
        """
        lat = self.gen_feat(frames, times, t_query, mask)
        return self.query_rgb(lat.feat, coord, cell, base=lat.base, chunk=chunk)
