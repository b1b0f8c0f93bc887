"""Random training windows: the decoder only ever sees a short slice of each utterance's latent."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_starts(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """A uniformly drawn window start per item so that ``[start, start + size)`` fits inside its length.

    Items shorter than ``size`` start at 0 (their window runs into zero padding). Uses the global RNG
    like upstream's ``rand_slice_segments``; the training loop seeds it per step.
    """
    room = torch.clamp_min(lengths - size + 1, 1)
    return (torch.rand(lengths.size(0), device=lengths.device) * room).long()


def slice_segments(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """x [B, C, T] -> [B, C, size], item b taken from ``starts[b]``; zero-padded past T."""
    if x.size(2) < int(starts.max()) + size:
        x = F.pad(x, (0, int(starts.max()) + size - x.size(2)))
    index = starts.view(-1, 1, 1) + torch.arange(size, device=x.device).view(1, 1, -1)
    return torch.gather(x, 2, index.expand(-1, x.size(1), -1))
