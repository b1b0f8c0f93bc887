"""Building blocks of the stochastic duration predictor's 2-channel normalising flows.

Flow convention (shared with ``common.Flip``): ``flow(x, x_mask, g=..., reverse=False)`` returns
``(y, logdet [B])``; with ``reverse=True`` it returns only the inverse image.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vitsrt.train.models.common import ChannelLayerNorm
from vitsrt.train.models.spline import rational_quadratic_spline


class DDSConv(nn.Module):
    """Residual stack of dilated depthwise-separable convs (depthwise k, LN, GELU, 1x1, LN, GELU).

    Dilation grows as ``kernel_size ** layer``, so three layers of k=3 see 27 steps.
    """

    def __init__(self, channels: int, kernel_size: int, n_layers: int, p_dropout: float = 0.0):
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for layer in range(n_layers):
            dilation = kernel_size**layer
            self.convs_sep.append(
                nn.Conv1d(
                    channels,
                    channels,
                    kernel_size,
                    groups=channels,
                    dilation=dilation,
                    padding=(kernel_size * dilation - dilation) // 2,
                )
            )
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(ChannelLayerNorm(channels))
            self.norms_2.append(ChannelLayerNorm(channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        if g is not None:
            x = x + g
        for sep, pointwise, norm_1, norm_2 in zip(
            self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2, strict=True
        ):
            y = F.gelu(norm_1(sep(x * x_mask)))
            y = F.gelu(norm_2(pointwise(y)))
            x = x + self.drop(y)
        return x * x_mask


class ElementwiseAffine(nn.Module):
    """Learned per-channel ``y = m + exp(logs) * x``."""

    def __init__(self, channels: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, reverse: bool = False, **_: object
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if reverse:
            return (x - self.m) * torch.exp(-self.logs) * x_mask
        y = (self.m + torch.exp(self.logs) * x) * x_mask
        return y, torch.sum(self.logs * x_mask, [1, 2])


class LogFlow(nn.Module):
    """``y = log(x)`` (x floored at 1e-5): maps positive durations onto the real line."""

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, reverse: bool = False, **_: object
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if reverse:
            return torch.exp(x) * x_mask
        y = torch.log(torch.clamp_min(x, 1e-5)) * x_mask
        return y, torch.sum(-y, [1, 2])


class ConvFlow(nn.Module):
    """Spline coupling: the first channel half parameterises a rational-quadratic spline on the second."""

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        n_layers: int,
        num_bins: int = 10,
        tail_bound: float = 5.0,
    ):
        super().__init__()
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.half_channels = in_channels // 2
        self.pre = nn.Conv1d(self.half_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers, p_dropout=0.0)
        # Per moved channel: K widths, K heights, K-1 interior slopes.
        self.proj = nn.Conv1d(filter_channels, self.half_channels * (3 * num_bins - 1), 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        kept, moved = x[:, : self.half_channels], x[:, self.half_channels :]
        h = self.convs(self.pre(kept), x_mask, g=g)
        h = self.proj(h) * x_mask
        batch, channels, frames = kept.shape
        # [B, c*(3K-1), T] -> [B, c, T, 3K-1]: spline parameters last.
        h = h.reshape(batch, channels, -1, frames).permute(0, 1, 3, 2)
        k = self.num_bins
        scale = math.sqrt(self.filter_channels)
        moved, logabsdet = rational_quadratic_spline(
            moved,
            h[..., :k] / scale,
            h[..., k : 2 * k] / scale,
            h[..., 2 * k :],
            inverse=reverse,
            tail_bound=self.tail_bound,
        )
        x = torch.cat([kept, moved], 1) * x_mask
        if reverse:
            return x
        return x, torch.sum(logabsdet * x_mask, [1, 2])
