"""The decoder's receptive field (the streaming contract) and its masking, on random weights.

Contract: decode frames [s, e) as a window with C = receptive_field_frames() context frames per
side (clipped at the utterance edges), keep the centre -> identical to a one-shot decode.
Tightness is checked structurally: in float64, the gradient of the kept samples with respect to
frames just outside C is exactly zero, and with respect to the frame at distance C it is not, so
C - 1 frames would leave a real (if, with realistic weights, sometimes tiny) dependence out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import pytest
import torch

from vitsrt.train.models.generator import Generator
from vitsrt.train.models.receptive_field import decoder_context_frames, decoder_edge_samples
from vitsrt.train.models.wavenet import fold_weight_norm

log = logging.getLogger(__name__)

RB_KERNELS = [3, 7, 11]
RB_DILATIONS = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
LAYOUTS = {
    # name: (upsample rates, kernels, resblock type, expected context frames)
    "44k_rb1": ([8, 8, 2, 2, 2], [16, 16, 8, 2, 2], "1", 13),  # upstream Bert-VITS2 default (= fixture)
    "22k_rb2": ([8, 8, 2, 2], [16, 16, 4, 4], "2", 7),
    "22k_rb1": ([8, 8, 2, 2], [16, 16, 4, 4], "1", 13),  # upstream VITS LJSpeech layout
}


def _generator(layout: str, seed: int = 0, gin: int = 8) -> Generator:
    rates, kernels, resblock, _ = LAYOUTS[layout]
    torch.manual_seed(seed)
    dec = Generator(16, resblock, RB_KERNELS, RB_DILATIONS, rates, 32, kernels, gin_channels=gin)
    with torch.no_grad():
        # Effective weights of std 1/sqrt(taps per output), as in the fixture: PyTorch's default init
        # (std 1/sqrt(3 * size(1) * k)) attenuates the signal into a bias-driven DC offset.
        for module in dec.modules():
            if hasattr(module, "weight_g"):
                torch_fan = module.weight_v.size(1) * module.weight_v.size(2)
                module.weight_g.mul_(math.sqrt(3 * torch_fan / _taps_per_output(module)))
    return dec.eval()


def _taps_per_output(module: torch.nn.Module) -> float:
    if isinstance(module, torch.nn.ConvTranspose1d):
        return module.in_channels * module.kernel_size[0] / module.stride[0]
    return module.in_channels * module.kernel_size[0]


def _chunked(
    dec: Generator, z: torch.Tensor, g: torch.Tensor | None, context: int, sizes: Sequence[int]
) -> torch.Tensor:
    hop, frames = dec.hop_length, z.size(2)
    pieces, start, i = [], 0, 0
    while start < frames:
        end = min(frames, start + sizes[min(i, len(sizes) - 1)])
        lo, hi = max(0, start - context), min(frames, end + context)
        audio = dec(z[:, :, lo:hi], g)
        offset = (start - lo) * hop
        pieces.append(audio[:, :, offset : offset + (end - start) * hop])
        start, i = end, i + 1
    return torch.cat(pieces, 2)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_context_frames_formula(layout: str) -> None:
    rates, kernels, resblock, expected = LAYOUTS[layout]
    frames = decoder_context_frames(rates, kernels, resblock, RB_KERNELS, RB_DILATIONS)
    left, right = decoder_edge_samples(rates, kernels, resblock, RB_KERNELS, RB_DILATIONS)
    log.info("%s: edge samples %d/%d, hop %d -> %d context frames", layout, left, right, math.prod(rates), frames)
    assert frames == expected
    assert _generator(layout).receptive_field_frames() == expected


@pytest.mark.parametrize("layout", ["44k_rb1", "22k_rb2"])
def test_chunked_decode_with_context_equals_one_shot(layout: str) -> None:
    dec = _generator(layout)
    context = dec.receptive_field_frames()
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(1, 16, 3 * context + 20, generator=gen)
    g = torch.randn(1, 8, 1, generator=gen)
    with torch.no_grad():
        full = dec(z, g)
        exact = (_chunked(dec, z, g, context, [5, 16]) - full).abs().max().item()
        short = (_chunked(dec, z, g, context - 1, [5, 16]) - full).abs().max().item()
    log.info("%s: chunked vs one-shot, C=%d: %.3g; C-1: %.3g", layout, context, exact, short)
    assert exact < 1e-5
    if layout == "22k_rb2":
        # Numerically visible for this shallow layout; for resblock "1" layouts the dependence at
        # distance C goes through ~12 extreme kernel taps and is below float32 rounding (see below).
        assert short > 1e-5


def _dependence(dec: Generator, z: torch.Tensor, g: torch.Tensor, samples: slice) -> torch.Tensor:
    """Per input frame: max |d sum(w * audio[samples]) / d z| (random w: no accidental cancellation)."""
    z = z.clone().requires_grad_(True)
    audio = dec(z, g)[0, 0, samples]
    weights = torch.rand(audio.shape, generator=torch.Generator().manual_seed(2), dtype=audio.dtype) + 0.5
    (grad,) = torch.autograd.grad((audio * weights).sum(), z)
    return grad.abs().amax(dim=(0, 1))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_receptive_field_is_tight(layout: str) -> None:
    """Samples of frames [s, e) depend on frames s-C .. e-1+C, and on nothing farther."""
    dec = _generator(layout).double()
    context, hop = dec.receptive_field_frames(), dec.hop_length
    start, end = context + 2, context + 5
    frames = end + context + 2
    gen = torch.Generator().manual_seed(9)
    z = torch.randn(1, 16, frames, generator=gen, dtype=torch.float64)
    g = torch.randn(1, 8, 1, generator=gen, dtype=torch.float64)
    dep = _dependence(dec, z, g, slice(start * hop, end * hop))
    assert torch.all(dep[: start - context] == 0) and torch.all(dep[end + context :] == 0)
    first = _dependence(dec, z, g, slice(start * hop, start * hop + 1))
    last = _dependence(dec, z, g, slice(end * hop - 1, end * hop))
    log.info(
        "%s: d first kept sample / d frame s-C = %.3g; d last / d frame e-1+C = %.3g",
        layout,
        first[start - context].item(),
        last[end - 1 + context].item(),
    )
    assert first[start - context] > 0 and last[end - 1 + context] > 0


def test_masked_batch_equals_single_decodes_and_zero_tail() -> None:
    dec = _generator("22k_rb2")
    hop = dec.hop_length
    gen = torch.Generator().manual_seed(3)
    lengths = [23, 9, 16]
    z = torch.randn(3, 16, max(lengths), generator=gen)
    g = torch.randn(3, 8, 1, generator=gen)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).unsqueeze(1).float()
    z = z + 5.0 * (1 - mask)  # garbage in the padding must not matter either
    with torch.no_grad():
        batched = dec(z, g, y_mask=mask)
        unmasked = dec(z * mask, g)
        for i, n in enumerate(lengths):
            alone = dec(z[i : i + 1, :, :n], g[i : i + 1])
            assert (batched[i : i + 1, :, : n * hop] - alone).abs().max().item() < 1e-5
            assert torch.all(batched[i, :, n * hop :] == 0)
    # Negative control: upstream (no mask) leaks padding into the short items.
    assert (unmasked[1, :, : lengths[1] * hop] - dec(z[1:2, :, : lengths[1]], g[1:2])).abs().max() > 1e-4


def test_fold_weight_norm_keeps_output() -> None:
    dec = _generator("44k_rb1")
    z = torch.randn(2, 16, 12, generator=torch.Generator().manual_seed(4))
    g = torch.randn(2, 8, 1)
    with torch.no_grad():
        before = dec(z, g)
        n_wn = sum(1 for name, _ in dec.named_parameters() if name.endswith("weight_g"))
        assert fold_weight_norm(dec) == n_wn > 0
        assert fold_weight_norm(dec) == 0
        after = dec(z, g)
    assert not any(name.endswith(("weight_g", "weight_v")) for name in dec.state_dict())
    assert (before - after).abs().max().item() < 1e-6
