"""HiFi-GAN decoder ``dec``: latent frames z [B, C, F] -> waveform [B, 1, F * hop].

Upstream semantics, plus optional length masking. Upstream decodes a padded batch as is, so the
padding frames (non-zero after ``conv_pre`` bias and speaker conditioning) leak into the last
frames of every shorter item and its row continues with noise after its end. Given ``y_mask`` we
zero every activation past the item's end right after each layer that could make it non-zero
(``conv_pre`` + cond, each transposed conv, each resblock conv, ``conv_post``). Inside the item this
reproduces exactly the zero padding a lone decode sees, so batched == alone, and the tail is 0.
With ``y_mask=None`` nothing is multiplied, so an all-ones mask and no mask agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vitsrt.train.models.common import LRELU_SLOPE, get_padding
from vitsrt.train.models.receptive_field import decoder_context_frames, decoder_edge_samples
from vitsrt.train.models.wavenet import fold_weight_norm, weight_normed


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def upsample_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, 1, L] -> [B, 1, L * factor], each step repeated ``factor`` times (any leading axes: the 2-D export
    layout's [B, 1, 1, L] works too).

    Expand + reshape rather than ``repeat_interleave`` or interpolation: exact, and it exports to a
    plain Expand/Reshape with dynamic batch and length.
    """
    lead = [mask.size(axis) for axis in range(mask.dim() - 1)]
    return mask.unsqueeze(-1).expand(*([-1] * mask.dim()), factor).reshape(*lead, -1)


def _same_conv(channels: int, kernel_size: int, dilation: int) -> nn.Conv1d:
    return weight_normed(
        nn.Conv1d(channels, channels, kernel_size, 1, dilation=dilation, padding=get_padding(kernel_size, dilation))
    )


class ResBlock1(nn.Module):
    """Three (dilated conv, plain conv) pairs, each pair a residual branch (HiFi-GAN V1 block)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList([_same_conv(channels, kernel_size, d) for d in dilation[:3]])
        self.convs2 = nn.ModuleList([_same_conv(channels, kernel_size, 1) for _ in dilation[:3]])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for dilated, plain in zip(self.convs1, self.convs2, strict=True):
            branch = _masked(dilated(F.leaky_relu(x, LRELU_SLOPE)), mask)
            branch = _masked(plain(F.leaky_relu(branch, LRELU_SLOPE)), mask)
            x = x + branch
        return x

    def remove_weight_norm(self) -> None:
        fold_weight_norm(self)


class ResBlock2(nn.Module):
    """Two dilated convs, each its own residual branch (HiFi-GAN V3 block)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList([_same_conv(channels, kernel_size, d) for d in dilation[:2]])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for conv in self.convs:
            x = x + _masked(conv(F.leaky_relu(x, LRELU_SLOPE)), mask)
        return x

    def remove_weight_norm(self) -> None:
        fold_weight_norm(self)


class Generator(nn.Module):
    """conv_pre (+ speaker cond) -> [leaky ReLU, transposed conv, mean of resblocks] per stage -> conv_post -> tanh."""

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int = 0,
    ):
        super().__init__()
        if resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {resblock!r}")
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                # Otherwise a transposed conv does not produce exactly rate x its input length.
                raise ValueError(f"upsample kernel {kernel} does not fit rate {rate}")
        self.resblock = resblock
        self.resblock_kernel_sizes = list(resblock_kernel_sizes)
        self.resblock_dilation_sizes = [list(d) for d in resblock_dilation_sizes]
        self.upsample_rates = list(upsample_rates)
        self.upsample_kernel_sizes = list(upsample_kernel_sizes)
        self.num_kernels = len(self.resblock_kernel_sizes)

        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, 7, 1, padding=3)
        block_cls = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            self.ups.append(
                weight_normed(nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2))
            )
            channels //= 2
            for k, d in zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes, strict=True):
                self.resblocks.append(block_cls(channels, k, d))
        self.conv_post = nn.Conv1d(channels, 1, 7, 1, padding=3, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    @property
    def hop_length(self) -> int:
        hop = 1
        for rate in self.upsample_rates:
            hop *= rate
        return hop

    def receptive_field_samples(self) -> int:
        """Output samples next to a window edge that depend on frames beyond it (wider side)."""
        return max(
            decoder_edge_samples(
                self.upsample_rates,
                self.upsample_kernel_sizes,
                self.resblock,
                self.resblock_kernel_sizes,
                self.resblock_dilation_sizes,
            )
        )

    def receptive_field_frames(self) -> int:
        """Context frames per side that make a windowed decode equal the one-shot decode."""
        return decoder_context_frames(
            self.upsample_rates,
            self.upsample_kernel_sizes,
            self.resblock,
            self.resblock_kernel_sizes,
            self.resblock_dilation_sizes,
        )

    def forward(
        self, z: torch.Tensor, g: torch.Tensor | None = None, y_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z [B, C, F], g [B, gin, 1] or None, y_mask [B, 1, F] (1 valid / 0 pad) or None -> [B, 1, F*hop].

        Nothing here depends on the rank apart from the convs: a 2-D copy (vitsrt.export.planar) runs this same
        forward on [B, C, 1, F]."""
        mask = y_mask
        x = self.conv_pre(_masked(z, mask))
        if g is not None:
            x = x + self.cond(g)
        x = _masked(x, mask)
        for stage, (up, rate) in enumerate(zip(self.ups, self.upsample_rates, strict=True)):
            if mask is not None:
                mask = upsample_mask(mask, rate)
            x = _masked(up(F.leaky_relu(x, LRELU_SLOPE)), mask)
            blocks = self.resblocks[stage * self.num_kernels : (stage + 1) * self.num_kernels]
            total = blocks[0](x, mask)
            for block in blocks[1:]:
                total = total + block(x, mask)
            x = total / self.num_kernels
        # Upstream uses leaky ReLU's default slope (0.01) here, not LRELU_SLOPE.
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(_masked(x, mask))

    def remove_weight_norm(self) -> None:
        fold_weight_norm(self)
