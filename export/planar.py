"""The decoder in 2-D ("planar") layout: HiFi-GAN computed on [B, C, 1, T] instead of [B, C, T].

onnxruntime's CPU provider has blocked-channel (NCHWc) kernels only for 2-D convolutions: its NchwcTransformer
rewrites a 4-D Conv into a blocked one and keeps the blocked layout through the element-wise ops between convs
(activations, residual adds). A 1-D conv gets none of that. So the export can write the decoder stage with every
Conv1d as a Conv2d with a (1, k) kernel (ConvTranspose1d likewise), on tensors with a unit height axis: the graph
unsqueezes its inputs once, runs the 2-D copy of the generator and squeezes the audio once at the end. The graph's
interface ([B, latent, F] z, [B, 1, F] y_mask, [B, gin, G] g -> [B, 1, F * hop] audio) is the 1-D one, so a
bundle's manifest and every backend read it unchanged; only the arithmetic order inside a conv may differ (float
rounding, ~1e-7).

What onnxruntime (1.32) makes of it: every Conv becomes a blocked NchwcConv, but a ReorderOutput/ReorderInput pair
still sits around almost each one, because three things between the convs are not kept blocked by its
NchwcTransformer: LeakyRelu (Relu, Tanh and Sigmoid are; measured on a 3-conv probe graph), the mask multiply (a
Mul whose other input, [B, 1, 1, T], broadcasts over channels: only element-wise ops of two blocked tensors with
the same channels are blocked) and ConvTranspose (no blocked kernel; a resblock's residual input comes from it).
Removing every mask multiply from joe's graph leaves all 20 ReorderOutput nodes in place, so masks are not the
limit. The gain (1.2-1.4x at one thread) comes from the blocked conv kernels alone. A blocked conv splits its work
by batch x blocks of 64 output channels x output rows; with the rows axis of height 1, a batch-1 call of a conv
with at most 64 output channels runs on one thread, so at 2+ threads a batch of one gains less
(benchmarks/results/2026-12-02-decoder-layout.md). On CPU the serving side rewrites this graph further
(:mod:`vitsrt.serve.backends.decoder_rewrite`: ConvTranspose as a polyphase Conv, mask multiplies dropped for
unpadded calls); the exported file stays as described here.

The conversion is generic: :func:`planar_copy` deep-copies a module tree and replaces each 1-D conv by its 2-D
equivalent (weights unsqueezed on the height axis; stride, padding, dilation, output padding mapped to the width
axis). The generator's forward is rank-agnostic (its masks broadcast and
:func:`~vitsrt.train.models.generator.upsample_mask` keeps the leading axes), so the copy runs its own forward on
4-D tensors. The training path never sees any of this.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from vitsrt.errors import VitsrtError

__all__ = ["DECODER_LAYOUTS", "DEFAULT_DECODER_LAYOUT", "DecoderLayout", "PlanarDecoder", "planar_conv", "planar_copy"]

DecoderLayout = Literal["1d", "2d"]
DECODER_LAYOUTS: tuple[DecoderLayout, ...] = ("1d", "2d")
# Measured on onnxruntime CPU (benchmarks/results/2026-12-02-decoder-layout.md): 1.19-1.29x faster at one thread
# (each CPU lane's default on 2-3 cores) for every window size the engine uses, and for batches of 2-4 at two
# threads; a batch of one at two threads is break-even on large windows (0.91-1.09x).
DEFAULT_DECODER_LAYOUT: DecoderLayout = "2d"

# The height axis a 2-D decoder inserts: [B, C, T] -> [B, C, 1, T].
HEIGHT_AXIS = 2


class PlanarError(VitsrtError):
    """A module cannot be converted to the 2-D layout (one-line reason)."""


def _check_plain(conv: nn.Module) -> None:
    if getattr(conv, "parametrizations", None) or hasattr(conv, "weight_g"):
        raise PlanarError(f"{type(conv).__name__} still has weight norm: fold it before the 2-D conversion")
    if conv.padding_mode != "zeros":
        raise PlanarError(f"{type(conv).__name__} with padding_mode={conv.padding_mode!r} has no 2-D equivalent here")
    if isinstance(conv.padding, str):
        raise PlanarError(f"{type(conv).__name__} with padding={conv.padding!r}: give the padding as a number")


def planar_conv(conv: nn.Conv1d | nn.ConvTranspose1d) -> nn.Conv2d | nn.ConvTranspose2d:
    """The 2-D conv that computes `conv` on [B, C, 1, T] (kernel (1, k); the same weights and bias)."""
    _check_plain(conv)
    common = dict(
        kernel_size=(1, conv.kernel_size[0]),
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    if isinstance(conv, nn.ConvTranspose1d):
        out: nn.Conv2d | nn.ConvTranspose2d = nn.ConvTranspose2d(
            conv.in_channels, conv.out_channels, output_padding=(0, conv.output_padding[0]), **common
        )
    else:
        out = nn.Conv2d(conv.in_channels, conv.out_channels, **common)
    with torch.no_grad():
        out.weight.copy_(conv.weight.detach().unsqueeze(HEIGHT_AXIS))
        if conv.bias is not None:
            out.bias.copy_(conv.bias.detach())
    return out.train(conv.training)


def _convert_children(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
            setattr(module, name, planar_conv(child))
            count += 1
        else:
            count += _convert_children(child)
    return count


def planar_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with every Conv1d / ConvTranspose1d replaced by its 2-D equivalent. The copy's
    forward must be rank-agnostic apart from its convs (the generator's is); `module` is left untouched."""
    for conv in module.modules():
        if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
            _check_plain(conv)  # before the copy: a weight-normed module cannot even be deep-copied
    planar = copy.deepcopy(module)
    if isinstance(planar, (nn.Conv1d, nn.ConvTranspose1d)):
        return planar_conv(planar)
    if not _convert_children(planar):
        raise PlanarError(f"{type(module).__name__} has no 1-D conv to convert")
    return planar


def _planar(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(HEIGHT_AXIS)


class PlanarDecoder(nn.Module):
    """A synthesizer's ``decode`` (``dec(z * y_mask, g, y_mask)``) on a 2-D copy of its generator: the same
    inputs and output shapes, computed on [B, C, 1, T] in between."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.dec = planar_copy(generator)

    def forward(self, z: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        mask = _planar(y_mask)
        audio = self.dec(_planar(z) * mask, g=None if g is None else _planar(g), y_mask=mask)
        # select, not squeeze: an exported squeeze of a dynamic axis becomes an If (checks the size is 1).
        return audio.select(HEIGHT_AXIS, 0)
