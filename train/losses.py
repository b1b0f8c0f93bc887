"""The VITS / Bert-VITS2 training losses (least-squares GAN, feature matching, KL), upstream semantics.

All are computed in float32 even under autocast: they are sums of many small terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN: each discriminator pushes real scores to 1 and fake scores to 0; summed over discriminators."""
    total = torch.zeros((), device=real[0].device)
    for r, f in zip(real, fake, strict=True):
        total = total + torch.mean((1 - r.float()) ** 2) + torch.mean(f.float() ** 2)
    return total


def generator_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator side: fake scores pushed to 1."""
    total = torch.zeros((), device=fake[0].device)
    for f in fake:
        total = total + torch.mean((1 - f.float()) ** 2)
    return total


def feature_loss(
    real_maps: Sequence[Sequence[torch.Tensor]], fake_maps: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between discriminator activations on real and generated audio, x2 (upstream's weight)."""
    total = torch.zeros((), device=real_maps[0][0].device)
    for real_layers, fake_layers in zip(real_maps, fake_maps, strict=True):
        for r, f in zip(real_layers, fake_layers, strict=True):
            total = total + torch.mean(torch.abs(r.float().detach() - f.float()))
    return total * 2


def kl_loss(
    z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL(q || p) of the flow-mapped posterior sample against the aligned prior, per valid frame-channel.

    z_p, logs_q [B, C, F] (posterior side); m_p, logs_p [B, C, F] (prior expanded to frames); mask [B, 1, F].
    """
    z_p, logs_q, m_p, logs_p, mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * ((z_p - m_p) ** 2) * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * mask) / torch.sum(mask)
