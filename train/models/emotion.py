"""Bert-VITS2 2.2's emotion branch of the text encoder: a CLAP embedding per item -> one vector added to every token.

Upstream 2.2 (``oldVersion/V220/models.py``) builds it inside ``enc_p`` from three modules whose parameter names
this module keeps, so upstream checkpoints load strictly:

* ``in_feature_net``: Linear 512 -> 1028 (no bias), GELU, LayerNorm, one pre-norm gated-MLP residual block
  (``norm``, ``mlp.c_fc1``/``c_fc2``/``c_proj``), Linear 1028 -> 512 (no bias);
* ``emo_vq``: a multi-head vector quantizer (vector-quantize-pytorch's ``VectorQuantize`` with 32 heads, a
  separate 64-code codebook of 32 dims per head): ``project_in`` 512 -> 1024, per head the nearest code
  (Euclidean), the chosen codes concatenated and ``project_out`` 1024 -> 512;
* ``out_feature_net``: Linear 512 -> hidden.

In eval mode the quantizer picks the nearest code deterministically; the output depends on the input only through
the 32 chosen code indices (the branch is piecewise constant). In training mode it behaves as upstream's quantizer
trains (vector-quantize-pytorch with upstream's settings, re-implemented here): codes are sampled (Gumbel noise on
the negative distances, temperature 1), gradients pass straight through to ``project_in``, the commitment loss
``0.1 * mse(projected, chosen code)`` is kept on the module (:meth:`EmotionQuantizer.take_commitment`; the
training loop adds it times ``train.c_commit``), and the codebooks follow the batch by exponential moving
averages (decay 0.85, Laplace-smoothed counts) with codes used less than twice replaced by batch vectors. The
sizes are hard-coded upstream (they do not follow the config), so they are constants here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

# Upstream's hard-coded sizes: the CLAP embedding, the feature net's width, the quantizer's heads and codebooks.
CLAP_DIM = 512
FEATURE_WIDTH = 1028
BLOCK_HIDDEN = 512
VQ_HEADS = 32
VQ_CODEBOOK_SIZE = 64
VQ_CODEBOOK_DIM = 32
# Upstream's training settings of the quantizer: commitment weight, EMA decay, dead-code threshold, smoothing eps.
VQ_COMMITMENT_WEIGHT = 0.1
VQ_DECAY = 0.85
VQ_DEAD_CODE_THRESHOLD = 2.0
VQ_EPS = 1e-5

__all__ = [
    "CLAP_DIM",
    "VQ_CODEBOOK_DIM",
    "VQ_CODEBOOK_SIZE",
    "VQ_COMMITMENT_WEIGHT",
    "VQ_HEADS",
    "EmotionQuantizer",
    "EmotionTrace",
    "GatedBlock",
    "feature_net",
    "normalize_emotion_state",
]


class _GatedMlp(nn.Module):
    """``c_proj(silu(c_fc1(x)) * c_fc2(x))``, no biases."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc1 = nn.Linear(width, hidden, bias=False)
        self.c_fc2 = nn.Linear(width, hidden, bias=False)
        self.c_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.silu(self.c_fc1(x)) * self.c_fc2(x))


class GatedBlock(nn.Module):
    """A pre-norm residual block: ``x + mlp(norm(x))``."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = _GatedMlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


def feature_net() -> nn.Sequential:
    """``in_feature_net``: indices 0..4 as upstream numbers them (1 is the parameter-free GELU)."""
    return nn.Sequential(
        nn.Linear(CLAP_DIM, FEATURE_WIDTH, bias=False),
        nn.GELU(),
        nn.LayerNorm(FEATURE_WIDTH),
        GatedBlock(FEATURE_WIDTH, BLOCK_HIDDEN),
        nn.Linear(FEATURE_WIDTH, CLAP_DIM, bias=False),
    )


class _Codebooks(nn.Module):
    """The quantizer's codebooks (``embed`` [heads, codes, dim]) and its training-only EMA state, as buffers."""

    def __init__(self, heads: int, size: int, dim: int):
        super().__init__()
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.zeros(heads, size))
        embed = torch.randn(heads, size, dim)
        self.register_buffer("embed_avg", embed.clone())  # a fresh codebook's EMA sum starts at the codes
        self.register_buffer("embed", embed)

    @torch.no_grad()
    def update(self, vectors: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step from a batch: `vectors` [H, B, D] (projected, detached) that chose `codes` [H, B]."""
        onehot = F.one_hot(codes, self.embed.size(1)).to(vectors.dtype)  # [H, B, C]
        self.cluster_size.mul_(VQ_DECAY).add_(onehot.sum(1), alpha=1 - VQ_DECAY)
        self.embed_avg.mul_(VQ_DECAY).add_(onehot.transpose(1, 2) @ vectors, alpha=1 - VQ_DECAY)
        total = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + VQ_EPS) / (total + self.embed.size(1) * VQ_EPS) * total
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(-1))
        self._expire(vectors)

    def _expire(self, vectors: torch.Tensor) -> None:
        """Codes used less than the threshold (by the EMA count) become random vectors of this batch."""
        dead = self.cluster_size < VQ_DEAD_CODE_THRESHOLD  # [H, C]
        if not bool(dead.any()):
            return
        picks = torch.randint(0, vectors.size(1), dead.shape, device=vectors.device)  # [H, C]
        sampled = torch.gather(vectors, 1, picks.unsqueeze(-1).expand(-1, -1, vectors.size(2)))  # [H, C, D]
        mask = dead.unsqueeze(-1)
        self.embed.copy_(torch.where(mask, sampled, self.embed))
        self.embed_avg.copy_(torch.where(mask, sampled * VQ_DEAD_CODE_THRESHOLD, self.embed_avg))
        self.cluster_size.copy_(torch.where(dead, torch.full_like(self.cluster_size, VQ_DEAD_CODE_THRESHOLD),
                                            self.cluster_size))


class EmotionQuantizer(nn.Module):
    """``emo_vq``: project to heads x dim, nearest code per head, project back (training mode: see the module)."""

    def __init__(self, dim: int = CLAP_DIM, heads: int = VQ_HEADS, size: int = VQ_CODEBOOK_SIZE,
                 codebook_dim: int = VQ_CODEBOOK_DIM):
        super().__init__()
        self.heads, self.codebook_dim = heads, codebook_dim
        self.project_in = nn.Linear(dim, heads * codebook_dim)
        self.project_out = nn.Linear(heads * codebook_dim, dim)
        self._codebook = _Codebooks(heads, size, codebook_dim)
        self.commitment: torch.Tensor | None = None  # the last training forward's commitment loss

    def distances(self, projected: torch.Tensor) -> torch.Tensor:
        """[B, heads * dim] -> [heads, B, codes]: the Euclidean distance of each head's vector to each code."""
        u = projected.reshape(projected.size(0), self.heads, 1, self.codebook_dim).transpose(0, 1)  # [H, B, 1, D]
        embed = self._codebook.embed  # [H, C, D]
        u2 = (u * u).sum(-1)  # [H, B, 1]
        e2 = (embed * embed).sum(-1).unsqueeze(1)  # [H, 1, C]
        cross = torch.matmul(u.squeeze(2), embed.transpose(1, 2))  # [H, B, C]
        return torch.sqrt(torch.clamp_min(u2 + e2 - 2 * cross, 0.0))

    def codes(self, projected: torch.Tensor) -> torch.Tensor:
        """Per head the index of the nearest code: [B, heads * dim] -> [B, heads] int64.

        Distances as upstream computes them, ``sqrt(max(|u|^2 + |e|^2 - 2 u.e, 0))``, so near-ties resolve the
        same way; the first of equal distances wins (argmin), as upstream's argmax of the negated distances."""
        return self.distances(projected).argmin(-1).transpose(0, 1)  # [B, H]

    def sampled_codes(self, projected: torch.Tensor) -> torch.Tensor:
        """Training: per head a code drawn by Gumbel-max on the negative distances (temperature 1) [B, H]."""
        logits = -self.distances(projected)
        uniform = torch.rand_like(logits).clamp(1e-20, 1.0)
        return (logits - torch.log(-torch.log(uniform).clamp_min(1e-20))).argmax(-1).transpose(0, 1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The chosen codes, heads concatenated in order: [B, heads] -> [B, heads * dim]."""
        embed = self._codebook.embed  # [H, C, D]
        index = codes.transpose(0, 1).unsqueeze(-1).expand(-1, -1, self.codebook_dim)  # [H, B, D]
        chosen = torch.gather(embed, 1, index)  # [H, B, D]
        return chosen.transpose(0, 1).reshape(codes.size(0), self.heads * self.codebook_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, dim] -> [B, dim]: the quantized, projected-back vector (training mode: see the module docs)."""
        projected = self.project_in(features)
        if not self.training:
            return self.project_out(self.lookup(self.codes(projected)))
        codes = self.sampled_codes(projected.detach())
        chosen = self.lookup(codes)
        self.commitment = F.mse_loss(projected.float(), chosen.detach().float()) * VQ_COMMITMENT_WEIGHT
        if torch.is_grad_enabled():
            vectors = projected.detach().float().reshape(-1, self.heads, self.codebook_dim).transpose(0, 1)
            self._codebook.update(vectors, codes.transpose(0, 1))
        return self.project_out(projected + (chosen - projected).detach())  # straight through to project_in

    def take_commitment(self) -> torch.Tensor | None:
        """The commitment loss of the last training forward (then cleared, so a stale one is never added)."""
        loss, self.commitment = self.commitment, None
        return loss


class EmotionTrace:
    """Every intermediate of the branch for inputs ``emo`` [B, 512] (what upstream's hooks record), for tests
    and diagnostics: ``emo_feat`` [B, 512], ``emo_vq_in`` [B, 1024], ``codes`` [B, 32], ``emo_vq_out``
    [B, 512], ``emo_emb`` [B, hidden]."""

    def __init__(self, in_feature_net: nn.Module, emo_vq: EmotionQuantizer, out_feature_net: nn.Module,
                 emo: torch.Tensor):
        self.emo_feat = in_feature_net(emo)
        self.emo_vq_in = emo_vq.project_in(self.emo_feat)
        self.codes = emo_vq.codes(self.emo_vq_in)
        self.emo_vq_out = emo_vq.project_out(emo_vq.lookup(self.codes))
        self.emo_emb = out_feature_net(self.emo_vq_out)


def normalize_emotion_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A 2.2 state dict with the quantizer's ``initted`` flag in the layout this module stores ([1] float32):
    vector-quantize-pytorch >= 1.27 saves it as a 0-d bool. Nothing else changes."""
    out = dict(state)
    for key, value in state.items():
        if key.endswith("emo_vq._codebook.initted") and tuple(value.shape) != (1,):
            out[key] = value.reshape(-1)[:1].to(torch.float32) if value.numel() else torch.ones(1)
    return out
