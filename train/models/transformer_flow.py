"""VITS2 transformer-coupling flow (upstream ``flow`` when ``use_transformer_flow`` is true).

Layout matches upstream so checkpoints load strictly: ``flows.{0,2,4,...}`` are coupling layers
(``pre`` / ``enc`` / ``post``), ``flows.{1,3,...}`` parameter-free channel flips. Each coupling
layer's conditioner is the same relative-attention ``Encoder`` as the text encoder (upstream builds
``attentions.Encoder(..., isflow=True, gin_channels=...)``; the ``isflow`` flag changes nothing),
so the speaker vector enters before its layer 2 through ``enc.spk_emb_linear``.

Upstream's ``share_parameter=True`` variant (one ``attentions.FFT`` shared by all couplings,
stored under ``flow.wn``) is off in every released 2.x config and is not implemented.
"""

from __future__ import annotations

import torch
from torch import nn

from vitsrt.train.models.attentions import Encoder
from vitsrt.train.models.common import CouplingStack, Flip


class TransformerCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second channel half is shifted by a function of the first half
    computed with the attention encoder. Upstream only ever builds this flow with ``mean_only=True``
    (``post`` has ``channels // 2`` outputs), so the log-scale is identically 0 and the log-determinant
    of the forward map is 0."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float = 0.0,
        gin_channels: int = 0,
    ):
        super().__init__()
        if channels % 2 != 0:
            raise ValueError(f"channels ({channels}) must be even")
        self.half_channels = channels // 2

        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = Encoder(
            hidden_channels,
            filter_channels,
            n_heads,
            n_layers,
            kernel_size,
            p_dropout,
            gin_channels=gin_channels,
        )
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)
        # Zero-initialised output makes every fresh coupling an identity map (stable training start).
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Forward returns ``(y, logdet [B])``; reverse returns the inverse only, as upstream."""
        x0, x1 = torch.split(x, [self.half_channels, self.half_channels], dim=1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        shift = self.post(h) * x_mask
        if reverse:
            return torch.cat([x0, (x1 - shift) * x_mask], dim=1)
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        return torch.cat([x0, shift + x1 * x_mask], dim=1), logdet


class TransformerCouplingBlock(CouplingStack):
    """``n_flows`` (coupling, flip) pairs. Reverse (inference) maps the prior sample z_p to z."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                TransformerCouplingLayer(
                    channels,
                    hidden_channels,
                    filter_channels,
                    n_heads,
                    n_layers,
                    kernel_size,
                    p_dropout,
                    gin_channels=gin_channels,
                )
            )
            self.flows.append(Flip())
