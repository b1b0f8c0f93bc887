"""WaveNet-coupling normalising flow (the ``flow`` module when ``use_transformer_flow`` is false).

Each coupling layer keeps the first half of the channels and shifts (and, unless mean-only, scales)
the second half by amounts predicted from the first half, so it is invertible in closed form.
Channel flips between couplings let both halves get transformed. Keys: ``flows.{0,2,4,...}`` are
couplings (``pre`` / ``enc`` / ``post``), the odd indices are parameter-free flips.
"""

from __future__ import annotations

import torch
from torch import nn

from vitsrt.receptive_field import coupling_flow_context_frames
from vitsrt.train.models.common import CouplingStack, Flip
from vitsrt.train.models.wavenet import WN, fold_weight_norm


class ResidualCouplingLayer(nn.Module):
    """Affine coupling whose shift/log-scale come from a WN stack over the untouched half."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        p_dropout: float = 0.0,
        gin_channels: int = 0,
        mean_only: bool = False,
    ):
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even channel count, got {channels}")
        self.channels = channels
        self.half_channels = channels // 2
        self.mean_only = mean_only
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(
            hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels, p_dropout=p_dropout
        )
        stats_channels = self.half_channels if mean_only else 2 * self.half_channels
        self.post = nn.Conv1d(hidden_channels, stats_channels, 1)
        # Start as the identity map so a fresh flow does not disturb early training.
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def _shift_and_log_scale(
        self, kept: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.pre(kept) * x_mask
        h = self.enc(h, x_mask, g=g)
        stats = self.post(h) * x_mask
        if self.mean_only:
            return stats, torch.zeros_like(stats)
        return stats[:, : self.half_channels], stats[:, self.half_channels :]

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Forward: returns (y, logdet [B]); reverse: returns x only (the flow-list convention)."""
        kept, moved = x[:, : self.half_channels], x[:, self.half_channels :]
        shift, log_scale = self._shift_and_log_scale(kept, x_mask, g)
        if reverse:
            moved = (moved - shift) * torch.exp(-log_scale) * x_mask
            return torch.cat([kept, moved], 1)
        moved = shift + moved * torch.exp(log_scale) * x_mask
        return torch.cat([kept, moved], 1), torch.sum(log_scale, [1, 2])


class ResidualCouplingBlock(CouplingStack):
    """``n_flows`` mean-only couplings, each followed by a channel flip (VITS2 / Bert-VITS2 layout)."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels,
                    hidden_channels,
                    kernel_size,
                    dilation_rate,
                    n_layers,
                    gin_channels=gin_channels,
                    mean_only=True,
                )
            )
            self.flows.append(Flip())

    def layout(self) -> dict[str, int]:
        """The layer layout as built (voice.json's ``flow``): couplings and their WaveNet stacks' convs."""
        stacks = [flow.enc for flow in self.flows if isinstance(flow, ResidualCouplingLayer)]
        shapes = {(wn.kernel_size, wn.dilation_rate, wn.n_layers) for wn in stacks}
        if len(shapes) != 1:
            raise ValueError(f"the couplings differ in their WaveNet layout: {sorted(shapes)}")
        ((kernel_size, dilation_rate, n_layers),) = shapes
        return {"n_flows": len(stacks), "kernel_size": kernel_size, "dilation_rate": dilation_rate,
                "n_layers": n_layers}

    def receptive_field_frames(self) -> int:
        """Frames of context per side that make the flow on a window equal the flow on the whole utterance."""
        return coupling_flow_context_frames(**self.layout())

    def remove_weight_norm(self) -> None:
        fold_weight_norm(self)
