"""How far the HiFi-GAN decoder and the WaveNet-coupling flow look past a window edge, from the layer layout alone.

The streaming engine decodes frames ``[s, e)`` as a window with ``C`` extra frames on each side and
keeps only the centre. That is exact when no centre sample depends on anything beyond the window.
Rather than summing "kernel reach" heuristically, we follow how far an edge disturbance travels:
``n`` disturbed positions at a layer's input become ``n'`` disturbed positions at its output, layer by
layer, with the exact index arithmetic of each convolution's padding. At the end the disturbed sample
count is rounded up to whole frames.

Deliberately torch-free and in core: loading a voice (serving must not import torch) recomputes a
bundle's ``decoder_context_frames`` (and ``flow_context_frames``) from the layouts recorded in voice.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _conv_spread(left: int, right: int, kernel: int, dilation: int, padding: int) -> tuple[int, int]:
    """Stride-1 conv: output ``n`` reads inputs ``n - padding + j*dilation`` for ``j < kernel``."""
    reach_right = (kernel - 1) * dilation - padding
    return left + padding, right + reach_right


def _transposed_spread(count: int, kernel: int, stride: int, padding: int) -> int:
    """Transposed conv, either edge: output ``n`` gathers inputs ``i`` with ``0 <= n + padding - i*stride < kernel``.

    Working through the first (last) input index that an output still reads gives the same count on
    both sides: ``(count - 1) * stride + kernel - padding`` disturbed outputs, never fewer than zero.
    """
    return max(0, (count - 1) * stride + kernel - padding)


def _resblock_spread(left: int, right: int, resblock: str, kernel: int, dilations: Sequence[int]) -> tuple[int, int]:
    """One residual block is a chain of 'same' convs (the skip path only adds to the chain's reach)."""
    if resblock == "1":
        for d in dilations[:3]:  # ResBlock1 builds convs for the first three dilations only
            left, right = _conv_spread(left, right, kernel, d, (kernel * d - d) // 2)
            left, right = _conv_spread(left, right, kernel, 1, (kernel - 1) // 2)
    elif resblock == "2":
        for d in dilations[:2]:  # ResBlock2: the first two
            left, right = _conv_spread(left, right, kernel, d, (kernel * d - d) // 2)
    else:
        raise ValueError(f"unknown resblock type {resblock!r} (expected '1' or '2')")
    return left, right


def decoder_edge_samples(
    upsample_rates: Sequence[int],
    upsample_kernel_sizes: Sequence[int],
    resblock: str,
    resblock_kernel_sizes: Sequence[int],
    resblock_dilation_sizes: Sequence[Sequence[int]],
    pre_kernel: int = 7,
    post_kernel: int = 7,
) -> tuple[int, int]:
    """Output samples (left, right) that differ when the frame input is cut at a window edge.

    The input cut itself disturbs zero frames; every layer then widens the disturbed zone.
    Parallel residual blocks are summed, so the widest of them counts.
    """
    left, right = _conv_spread(0, 0, pre_kernel, 1, (pre_kernel - 1) // 2)
    for rate, kernel in zip(upsample_rates, upsample_kernel_sizes, strict=True):
        padding = (kernel - rate) // 2
        left = _transposed_spread(left, kernel, rate, padding)
        right = _transposed_spread(right, kernel, rate, padding)
        spreads = [
            _resblock_spread(left, right, resblock, k, d)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True)
        ]
        left = max(s[0] for s in spreads)
        right = max(s[1] for s in spreads)
    return _conv_spread(left, right, post_kernel, 1, (post_kernel - 1) // 2)


def decoder_context_frames(
    upsample_rates: Sequence[int],
    upsample_kernel_sizes: Sequence[int],
    resblock: str,
    resblock_kernel_sizes: Sequence[int],
    resblock_dilation_sizes: Sequence[Sequence[int]],
) -> int:
    """Frames of context needed on each side of a decode window for an exact (one-shot equal) result."""
    hop = math.prod(upsample_rates)
    left, right = decoder_edge_samples(
        upsample_rates, upsample_kernel_sizes, resblock, resblock_kernel_sizes, resblock_dilation_sizes
    )
    return -(-max(left, right) // hop)


def coupling_flow_edge_frames(n_flows: int, kernel_size: int, dilation_rate: int, n_layers: int) -> tuple[int, int]:
    """Frames (left, right) of a WaveNet-coupling flow's output that differ when its input is cut at a window edge.

    One coupling keeps half the channels and shifts the other half by a WaveNet stack over the kept half: the
    stack's layer ``i`` is a 'same' conv of ``kernel_size`` at dilation ``dilation_rate ** i`` whose output
    feeds every later layer (residual sum), so the stack reaches as far as all its convs together; its 1x1
    convs and gates reach nowhere. A flip between couplings swaps the halves, so the next coupling reads the
    half the last one changed. The two halves are followed separately, in the inference (reverse) order.
    """
    reach = (0, 0)
    for layer in range(n_layers):
        d = dilation_rate**layer
        reach = _conv_spread(*reach, kernel_size, d, (kernel_size * d - d) // 2)
    kept, moved = (0, 0), (0, 0)
    for _ in range(n_flows):  # reverse order: flip, then coupling (the flip after the last coupling runs first)
        kept, moved = moved, kept
        changed = (kept[0] + reach[0], kept[1] + reach[1])
        moved = (max(moved[0], changed[0]), max(moved[1], changed[1]))
    return max(kept[0], moved[0]), max(kept[1], moved[1])


def coupling_flow_context_frames(n_flows: int, kernel_size: int, dilation_rate: int, n_layers: int) -> int:
    """Frames of context needed on each side of a window of a WaveNet-coupling flow (the flow of original VITS
    and of Bert-VITS2 without the transformer flow) for a result equal to the whole-utterance flow."""
    return max(coupling_flow_edge_frames(n_flows, kernel_size, dilation_rate, n_layers))
