"""Gated, dilated WaveNet stack (upstream key layout: in_layers / res_skip_layers / cond_layer).

Also home of the weight-norm helpers every conv-side module uses. We keep the legacy
``torch.nn.utils.weight_norm`` hook (not the parametrization API) because it stores exactly the
``weight_g`` / ``weight_v`` keys that upstream checkpoints contain.
"""

from __future__ import annotations

import warnings
from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils.weight_norm import WeightNorm

from vitsrt.train.models.common import fused_add_tanh_sigmoid_multiply

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def weight_normed(module: ModuleT) -> ModuleT:
    """Apply legacy weight norm on ``weight`` (dim 0), silencing only its own deprecation notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*weight_norm.*")
        return nn.utils.weight_norm(module, name="weight")


def has_weight_norm(module: nn.Module) -> bool:
    """True when ``module`` itself carries a legacy weight-norm hook."""
    return any(isinstance(hook, WeightNorm) for hook in module._forward_pre_hooks.values())


def fold_weight_norm(root: nn.Module) -> int:
    """Bake ``weight_g * weight_v / ||weight_v||`` into a plain ``weight`` everywhere below ``root``.

    Needed before export: the graph then holds one constant per conv instead of the norm arithmetic.
    Idempotent; returns how many convs were folded.
    """
    folded = 0
    for module in root.modules():
        if has_weight_norm(module):
            nn.utils.remove_weight_norm(module, name="weight")
            folded += 1
    return folded


class WN(nn.Module):
    """Non-causal WaveNet: per layer a dilated conv, a tanh*sigmoid gate, and a 1x1 residual/skip conv.

    The skip outputs of all layers are summed; the last layer has no residual half (its 1x1 conv
    produces skip channels only), which is why its ``res_skip_layers`` entry is half as wide.
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        p_dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN needs an odd kernel size, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        self.p_dropout = p_dropout

        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)
        if gin_channels:
            # One projection of the speaker vector feeds every layer; layer i uses its own slice.
            self.cond_layer = weight_normed(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))

        for layer in range(n_layers):
            dilation = dilation_rate**layer
            self.in_layers.append(
                weight_normed(
                    nn.Conv1d(
                        hidden_channels,
                        2 * hidden_channels,
                        kernel_size,
                        dilation=dilation,
                        padding=(kernel_size * dilation - dilation) // 2,
                    )
                )
            )
            out = hidden_channels if layer == n_layers - 1 else 2 * hidden_channels
            self.res_skip_layers.append(weight_normed(nn.Conv1d(hidden_channels, out, 1)))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, H, T], x_mask [B, 1, T], g [B, gin, 1] or None -> [B, H, T] (masked)."""
        h = self.hidden_channels
        cond = self.cond_layer(g) if g is not None else None
        skip = torch.zeros_like(x)
        for layer, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            pre_act = in_layer(x)
            bias = torch.zeros_like(pre_act) if cond is None else cond[:, 2 * h * layer : 2 * h * (layer + 1)]
            acts = self.drop(fused_add_tanh_sigmoid_multiply(pre_act, bias, h))
            res_skip = res_skip_layer(acts)
            if layer < self.n_layers - 1:
                x = (x + res_skip[:, :h]) * x_mask
                skip = skip + res_skip[:, h:]
            else:
                skip = skip + res_skip
        return skip * x_mask

    def remove_weight_norm(self) -> None:
        """Fold every weight-normed conv of this stack (see :func:`fold_weight_norm`)."""
        fold_weight_norm(self)
