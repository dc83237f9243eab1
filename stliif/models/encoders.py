"""Convolutional encoders producing LIIF latent grids (no upsampler).

- ``"edsr-baseline"``: :class:`EDSRBaseline`, the 2-D EDSR trunk used by LIIF (Lim et al., "Enhanced
  Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017; as the encoder of Chen,
  Liu, Wang, "Learning Continuous Image Representation with Local Implicit Image Function", CVPR
  2021). Width and depth are arguments: LIIF's is 64 channels x 16 blocks; the CPU configuration
  of this project uses far fewer (see ``docs/models.md``).
- ``"edsr-3d"``: :class:`EDSR3D`, the original study's 3-D variant: the same trunk with
  ``3 x 3 x 3`` convolutions over ``(T, H, W)``, returning one feature map per frame.

Encoders take normalised inputs (the owning model maps ``[0, 1]`` images to ``[-1, 1]``) and keep
the spatial size. They expose ``out_dim`` (feature channels) and ``temporal`` (whether they take a
``(B, T, C, H, W)`` stack).
"""

from __future__ import annotations

import torch
from torch import nn

from stliif.errors import ModelError
from stliif.models.registry import register

__all__ = ["EDSR3D", "EDSRBaseline", "ResBlock2d"]


def _check_sizes(n_feats: int, n_resblocks: int, in_channels: int) -> None:
    if n_feats < 1 or n_resblocks < 0 or in_channels < 1:
        raise ModelError(
            f"need n_feats >= 1, n_resblocks >= 0, in_channels >= 1; got {n_feats}, "
            f"{n_resblocks}, {in_channels}"
        )


class ResBlock2d(nn.Module):
    """EDSR residual block: conv-ReLU-conv, scaled, plus identity. ``(B, F, H, W) -> same``."""

    def __init__(self, n_feats: int, *, kernel_size: int = 3, res_scale: float = 1.0) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W) -> (B, F, H, W)``."""
        return x + self.body(x) * self.res_scale


@register("edsr-baseline")
class EDSRBaseline(nn.Module):
    """EDSR-baseline trunk without upsampler, the LIIF encoder.

    head conv -> ``n_resblocks`` residual blocks -> conv, plus a global skip from the head.

    Reference: Lim et al., CVPRW 2017; used as encoder by Chen, Liu, Wang, "Learning Continuous
    Image Representation with Local Implicit Image Function", CVPR 2021.

    Args:
        in_channels: Input channels (3 for RGB).
        n_feats: Feature channels (LIIF: 64).
        n_resblocks: Residual blocks (LIIF: 16).
        res_scale: Residual scaling inside the blocks.
        kernel_size: Convolution size.
    """

    temporal = False

    def __init__(
        self,
        in_channels: int = 3,
        n_feats: int = 64,
        n_resblocks: int = 16,
        res_scale: float = 1.0,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        _check_sizes(n_feats, n_resblocks, in_channels)
        pad = kernel_size // 2
        self.head = nn.Conv2d(in_channels, n_feats, kernel_size, padding=pad)
        self.body = nn.Sequential(
            *[ResBlock2d(n_feats, kernel_size=kernel_size, res_scale=res_scale)
              for _ in range(n_resblocks)],
            nn.Conv2d(n_feats, n_feats, kernel_size, padding=pad),
        )  # fmt: skip
        self.out_dim = n_feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``(B, C, H, W)`` normalised images into ``(B, F, H, W)`` latent codes."""
        if x.ndim != 4:
            raise ModelError(f"EDSRBaseline expects (B, C, H, W), got {tuple(x.shape)}")
        h = self.head(x)
        return self.body(h) + h


class _ResBlock3d(nn.Module):
    def __init__(self, n_feats: int, kernel: tuple[int, int, int], res_scale: float) -> None:
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
        self.body = nn.Sequential(
            nn.Conv3d(n_feats, n_feats, kernel, padding=pad),
            nn.ReLU(inplace=True),
            nn.Conv3d(n_feats, n_feats, kernel, padding=pad),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


@register("edsr-3d")
class EDSR3D(nn.Module):
    """The original study's 3-D EDSR encoder: EDSR-baseline with ``t x 3 x 3`` convolutions.

    Mixes information across neighbouring frames (zero padding in time; padded/masked frames are
    zeroed before the trunk and after it) and returns one feature map per frame, which the
    temporal LIIF then fuses according to the query time.

    Reference: EDSR (Lim et al., CVPRW 2017) as the LIIF encoder of Chen, Liu, Wang, "Learning
    Continuous Image Representation with Local Implicit Image Function", CVPR 2021, extended to
    3-D convolutions by the space-time study this project revisits.

    Args:
        in_channels: Input channels per frame.
        n_feats: Feature channels.
        n_resblocks: Residual blocks.
        res_scale: Residual scaling.
        time_kernel: Temporal extent of each convolution (odd).
    """

    temporal = True

    def __init__(
        self,
        in_channels: int = 3,
        n_feats: int = 64,
        n_resblocks: int = 16,
        res_scale: float = 1.0,
        time_kernel: int = 3,
    ) -> None:
        super().__init__()
        _check_sizes(n_feats, n_resblocks, in_channels)
        if time_kernel < 1 or time_kernel % 2 == 0:
            raise ModelError(f"time_kernel must be odd and >= 1, got {time_kernel}")
        k = (time_kernel, 3, 3)
        pad = (time_kernel // 2, 1, 1)
        self.head = nn.Conv3d(in_channels, n_feats, k, padding=pad)
        self.blocks = nn.Sequential(
            *[_ResBlock3d(n_feats, k, float(res_scale)) for _ in range(n_resblocks)]
        )
        self.tail = nn.Conv3d(n_feats, n_feats, k, padding=pad)
        self.out_dim = n_feats

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a ``(B, T, C, H, W)`` stack into ``(B, T, F, H, W)`` per-frame features.

        Args:
            x: Normalised frames.
            mask: ``(B, T)`` bool, True for real frames (default: all real).
        """
        if x.ndim != 5:
            raise ModelError(f"EDSR3D expects (B, T, C, H, W), got {tuple(x.shape)}")
        m = None
        if mask is not None:
            m = mask.to(x.dtype)[:, None, :, None, None]  # (B, 1, T, 1, 1)
        v = x.transpose(1, 2)  # (B, C, T, H, W)
        if m is not None:
            v = v * m
        h = self.head(v)
        out = self.tail(self.blocks(h)) + h
        if m is not None:
            out = out * m
        return out.transpose(1, 2)
