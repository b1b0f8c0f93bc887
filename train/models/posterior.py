"""Posterior encoder ``enc_q``: linear spectrogram -> latent z (training only; inference never runs it)."""

from __future__ import annotations

import torch
from torch import nn

from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.wavenet import WN, fold_weight_norm


class PosteriorEncoder(nn.Module):
    """1x1 in, WN stack, 1x1 out to (mean, log-std); z is a reparameterised sample.

    The sampling noise is injectable (``noise`` tensor or ``generator``) so training steps can be
    replayed exactly and tests can pin z.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        g: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, spec, T], x_lengths [B] -> (z, m, logs, x_mask); z, m, logs are [B, out, T].

        ``noise`` (standard normal, [B, out, T]) wins over ``generator``; with neither, the global RNG
        is used like upstream's ``randn_like``.
        """
        x_mask = sequence_mask(x_lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        h = self.pre(x) * x_mask
        h = self.enc(h, x_mask, g=g)
        stats = self.proj(h) * x_mask
        m, logs = stats[:, : self.out_channels], stats[:, self.out_channels :]
        if noise is None:
            noise = torch.randn(m.shape, generator=generator, dtype=m.dtype, device=m.device)
        z = (m + noise * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask

    def remove_weight_norm(self) -> None:
        fold_weight_norm(self)
