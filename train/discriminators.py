"""Discriminators of Bert-VITS2 2.3 training, state_dict-compatible with upstream ``D_*.pth`` / ``DUR_*.pth``.

* `MultiPeriodDiscriminator` (HiFi-GAN): one scale discriminator on the raw waveform plus one 2-D
  conv stack per period looking at the waveform folded into ``period`` columns. Upstream's layout
  (periods 2, 3, 5, 7, 11; widths up to 1024) is the default and loads upstream ``D_0.pth`` for
  fine-tuning. `channel_divisor` and `periods` shrink it for CPU training: upstream's is ~47M
  parameters and costs about half of every CPU step. A divided discriminator has other shapes,
  so it cannot start from an upstream ``D_0.pth``.
* `DurationDiscriminator` (VITS2, 2.3 variant with a bidirectional LSTM): scores log-durations
  given the text encoding. Its forward takes any number of duration tracks at once (real, dp,
  sdp) and runs them as one batch, so one call per optimisation phase keeps DDP happy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vitsrt.train.models.common import LRELU_SLOPE, ChannelLayerNorm, get_padding
from vitsrt.train.models.wavenet import weight_normed

UPSTREAM_PERIODS = (2, 3, 5, 7, 11)

FeatureMaps = list[torch.Tensor]


def _normed(module: nn.Module, spectral: bool) -> nn.Module:
    return nn.utils.spectral_norm(module) if spectral else weight_normed(module)


def _width(channels: int, divisor: int) -> int:
    return max(1, channels // divisor)


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into [T / period, period] and runs (k x 1) 2-D convs down the time axis."""

    _WIDTHS = (32, 128, 512, 1024, 1024)

    def __init__(
        self, period: int, kernel_size: int = 5, stride: int = 3, spectral: bool = False, channel_divisor: int = 1
    ):
        super().__init__()
        self.period = period
        widths = [1] + [_width(c, channel_divisor) for c in self._WIDTHS]
        pad = (get_padding(kernel_size, 1), 0)
        self.convs = nn.ModuleList(
            _normed(
                nn.Conv2d(widths[i], widths[i + 1], (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad),
                spectral,
            )
            for i in range(5)
        )
        self.conv_post = _normed(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)), spectral)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, FeatureMaps]:
        """x [B, 1, L] -> (scores [B, N], feature maps of every layer)."""
        batch, channels, length = x.shape
        remainder = length % self.period
        if remainder:
            x = F.pad(x, (0, self.period - remainder), "reflect")
        x = x.view(batch, channels, -1, self.period)
        features: FeatureMaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return torch.flatten(x, 1, -1), features


class ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convs over the raw waveform (MelGAN-style)."""

    # (out channels, kernel, stride, groups)
    _LAYERS = ((16, 15, 1, 1), (64, 41, 4, 4), (256, 41, 4, 16), (1024, 41, 4, 64), (1024, 41, 4, 256), (1024, 5, 1, 1))

    def __init__(self, spectral: bool = False, channel_divisor: int = 1):
        super().__init__()
        layers = []
        in_channels = 1
        for out_channels, kernel, stride, groups in self._LAYERS:
            out_channels = _width(out_channels, channel_divisor)
            groups = math.gcd(groups, math.gcd(in_channels, out_channels))
            layers.append(
                _normed(
                    nn.Conv1d(in_channels, out_channels, kernel, stride, groups=groups, padding=kernel // 2), spectral
                )
            )
            in_channels = out_channels
        self.convs = nn.ModuleList(layers)
        self.conv_post = _normed(nn.Conv1d(in_channels, 1, 3, 1, padding=1), spectral)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, FeatureMaps]:
        features: FeatureMaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return torch.flatten(x, 1, -1), features


class MultiPeriodDiscriminator(nn.Module):
    """``discriminators.0`` is the scale discriminator, ``discriminators.1..`` one per period (upstream keys)."""

    def __init__(
        self,
        use_spectral_norm: bool = False,
        periods: Sequence[int] = UPSTREAM_PERIODS,
        channel_divisor: int = 1,
    ):
        super().__init__()
        if channel_divisor < 1:
            raise ValueError(f"channel_divisor must be >= 1, got {channel_divisor}")
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator(use_spectral_norm, channel_divisor)]
            + [PeriodDiscriminator(p, spectral=use_spectral_norm, channel_divisor=channel_divisor) for p in periods]
        )

    def forward(
        self, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[FeatureMaps], list[FeatureMaps]]:
        """Both [B, 1, L]. Real and fake go through each discriminator as one batch (half the calls)."""
        both = torch.cat([real, fake], dim=0)
        batch = real.size(0)
        scores_real, scores_fake, features_real, features_fake = [], [], [], []
        for disc in self.discriminators:
            scores, features = disc(both)
            scores_real.append(scores[:batch])
            scores_fake.append(scores[batch:])
            features_real.append([f[:batch] for f in features])
            features_fake.append([f[batch:] for f in features])
        return scores_real, scores_fake, features_real, features_fake


class DurationDiscriminator(nn.Module):
    """VITS2 duration discriminator as in Bert-VITS2 2.3 (conv trunk + bidirectional LSTM + sigmoid)."""

    def __init__(
        self, in_channels: int, filter_channels: int, kernel_size: int, p_dropout: float, gin_channels: int = 0
    ):
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = ChannelLayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = ChannelLayerNorm(filter_channels)
        self.dur_proj = nn.Conv1d(1, filter_channels, 1)
        self.LSTM = nn.LSTM(2 * filter_channels, filter_channels, batch_first=True, bidirectional=True)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)
        self.output_layer = nn.Sequential(nn.Linear(2 * filter_channels, 1), nn.Sigmoid())

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        durations: Sequence[torch.Tensor],
        g: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """x [B, H, T] text encoding, x_mask [B, 1, T], each duration track [B, 1, T] (log-durations).

        Returns one probability tensor [B, T, 1] per track. The text side is detached (the
        discriminator must not train the text encoder), like upstream.
        """
        x = torch.detach(x)
        if g is not None and hasattr(self, "cond"):
            x = x + self.cond(torch.detach(g))
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        n = len(durations)
        stacked = torch.cat([self.dur_proj(d) for d in durations], dim=0)  # [n*B, F, T]
        joined = torch.cat([x.repeat(n, 1, 1), stacked], dim=1).transpose(1, 2)
        hidden, _ = self.LSTM(joined)
        probs = self.output_layer(hidden)  # [n*B, T, 1]
        return list(probs.chunk(n, dim=0))
