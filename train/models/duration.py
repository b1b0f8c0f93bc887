"""Duration predictors: deterministic ``dp`` and flow-based stochastic ``sdp`` (both predict log-durations).

Both detach their text-encoder input (and speaker vector): the duration losses must not push the
text encoder around, exactly as upstream trains them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vitsrt.train.models.common import ChannelLayerNorm, Flip
from vitsrt.train.models.sdp_flows import ConvFlow, DDSConv, ElementwiseAffine, LogFlow

_LOG_2PI = math.log(2 * math.pi)


class DurationPredictor(nn.Module):
    """Two conv + ReLU + LayerNorm layers and a 1x1 projection to one log-duration per token."""

    def __init__(
        self, in_channels: int, filter_channels: int, kernel_size: int, p_dropout: float, gin_channels: int = 0
    ):
        super().__init__()
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_1 = ChannelLayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.norm_2 = ChannelLayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, H, T], x_mask [B, 1, T], g [B, gin, 1] -> logw [B, 1, T] (masked)."""
        x = torch.detach(x)
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask


class StochasticDurationPredictor(nn.Module):
    """Flow-based duration model (VITS SDP).

    Inference maps noise through the inverse of ``flows`` conditioned on the text; training scores
    observed durations with a variational lower bound using ``post_*`` as the posterior.
    Like upstream, the filter width is forced to ``in_channels`` (``filter_channels`` is ignored),
    which is what the checkpoints' shapes require.
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float,
        n_flows: int = 4,
        gin_channels: int = 0,
    ):
        super().__init__()
        del filter_channels  # upstream quirk, see class docstring
        width = in_channels
        self.log_flow = LogFlow()
        self.flows = self._flow_stack(width, kernel_size, n_flows)

        self.post_pre = nn.Conv1d(1, width, 1)
        self.post_proj = nn.Conv1d(width, width, 1)
        self.post_convs = DDSConv(width, kernel_size, n_layers=3, p_dropout=p_dropout)
        self.post_flows = self._flow_stack(width, kernel_size, 4)

        self.pre = nn.Conv1d(in_channels, width, 1)
        self.proj = nn.Conv1d(width, width, 1)
        self.convs = DDSConv(width, kernel_size, n_layers=3, p_dropout=p_dropout)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, width, 1)

    @staticmethod
    def _flow_stack(width: int, kernel_size: int, n_flows: int) -> nn.ModuleList:
        stack: list[nn.Module] = [ElementwiseAffine(2)]
        for _ in range(n_flows):
            stack += [ConvFlow(2, width, kernel_size, n_layers=3), Flip()]
        return nn.ModuleList(stack)

    def _condition(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        x = self.pre(torch.detach(x))
        if g is not None:
            x = x + self.cond(torch.detach(g))
        return self.proj(self.convs(x, x_mask)) * x_mask

    def infer(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, H, T], x_mask [B, 1, T], g [B, gin, 1], noise [B, 2, T] already scaled -> logw [B, 1, T].

        ``noise`` is upstream's ``randn * noise_scale_w``, drawn by the caller so graphs stay
        deterministic; ``None`` means zeros (noise_scale_w = 0).
        """
        h = self._condition(x, x_mask, g)
        z = torch.zeros_like(h[:, :2]) if noise is None else noise
        # Inverse order; the first ConvFlow (applied last in the inverse) is skipped, as upstream does:
        # it only changes the discarded second channel.
        inverse = list(reversed(self.flows))
        for flow in [*inverse[:-2], inverse[-1]]:
            z = flow(z, x_mask, g=h, reverse=True)
        return z[:, :1]

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        w: torch.Tensor,
        g: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training: observed durations w [B, 1, T] -> negative variational bound on log p(w) per item [B].

        ``noise`` [B, 2, T] is the posterior's standard-normal draw (``None``: global RNG).
        """
        h = self._condition(x, x_mask, g)
        if noise is None:
            noise = torch.randn(w.size(0), 2, w.size(2), dtype=h.dtype, device=h.device)
        e_q = noise * x_mask

        # Posterior q(u, z1 | w, text): dequantisation noise u in (0, 1) and the auxiliary channel.
        h_w = self.post_proj(self.post_convs(self.post_pre(w), x_mask)) * x_mask
        z_q = e_q
        logdet_q = torch.zeros(w.size(0), dtype=h.dtype, device=h.device)
        for flow in self.post_flows:
            z_q, logdet = flow(z_q, x_mask, g=h + h_w)
            logdet_q = logdet_q + logdet
        z_u, z1 = z_q[:, :1], z_q[:, 1:]
        u = torch.sigmoid(z_u) * x_mask
        z0 = (w - u) * x_mask
        logdet_q = logdet_q + torch.sum((F.logsigmoid(z_u) + F.logsigmoid(-z_u)) * x_mask, [1, 2])
        log_q = torch.sum(-0.5 * (_LOG_2PI + e_q**2) * x_mask, [1, 2]) - logdet_q

        # Prior: push (log(w - u), z1) through the main flows to a standard normal.
        z0, logdet_p = self.log_flow(z0, x_mask)
        z = torch.cat([z0, z1], 1)
        for flow in self.flows:
            z, logdet = flow(z, x_mask, g=h, reverse=False)
            logdet_p = logdet_p + logdet
        nll = torch.sum(0.5 * (_LOG_2PI + z**2) * x_mask, [1, 2]) - logdet_p
        return nll + log_q
