"""Relative-position self-attention stack used by the text encoder and the transformer flow.

Parameter names follow upstream Bert-VITS2 (``attn_layers.N.conv_q`` ..., ``emb_rel_k``,
``norm_layers_1``, ``ffn_layers.N.conv_1``, ``norm_layers_2``, ``spk_emb_linear``) so upstream
checkpoints load with ``strict=True``.

Export note: upstream builds the relative-position terms by padding / slicing the embedding table
with Python integers derived from the sequence length, which freezes that length into a traced
graph. Here every length-dependent quantity is derived from ``torch.arange`` over the traced length
and applied with ``gather`` (ONNX GatherElements) plus ``where``, so a graph exported at one length
is exact for every other length, including lengths shorter than the attention window.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vitsrt.train.models.common import ChannelLayerNorm

# Upstream's hard-coded attention window (relative distances -4..4 get their own embedding).
DEFAULT_WINDOW_SIZE = 4
# Upstream adds the speaker vector right before this layer ("3rd block", as in the VITS2 paper).
DEFAULT_COND_LAYER_IDX = 2
# Logit given to masked-out key positions (upstream value; kept for bit-level parity).
_MASKED_LOGIT = -1e4


def _band_indices(
    length: int | torch.Tensor, window: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tables that map between absolute (query, key) pairs and relative offsets.

    Returns ``(key_slot, key_valid, band_key, band_valid)``:

    * ``key_slot[i, j]`` - row of the ``2*window+1`` embedding table for the pair (query i, key j),
      i.e. ``(j - i) + window`` clamped into range; ``key_valid[i, j]`` says ``|j - i| <= window``.
    * ``band_key[i, k]`` - the key position ``i + k - window`` seen by query ``i`` at band slot
      ``k`` (clamped to 0 where it falls outside the sequence); ``band_valid[i, k]`` says it is inside.

    Pairs outside the window / sequence are exactly the entries that upstream's zero-padded
    embedding table turns into zeros, so zeroing them reproduces upstream for every length.
    """
    positions = torch.arange(length, device=device)
    offset = positions.unsqueeze(0) - positions.unsqueeze(1)  # [T, T]: key - query
    key_valid = offset.abs() <= window
    key_slot = offset.clamp(-window, window) + window

    slots = torch.arange(2 * window + 1, device=device)
    band_key = positions.unsqueeze(1) + slots.unsqueeze(0) - window  # [T, 2w+1]
    band_valid = (band_key >= 0) & (band_key < length)
    band_key = torch.where(band_valid, band_key, torch.zeros_like(band_key))
    return key_slot, key_valid, band_key, band_valid


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with windowed relative-position embeddings (Shaw et al. style).

    The embeddings are shared by all heads (upstream ``heads_share=True``): ``emb_rel_k`` adds a
    learned key bias per relative distance to the logits, ``emb_rel_v`` a learned value per distance
    to the output. Distances beyond ``window_size`` get neither.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_heads: int,
        p_dropout: float = 0.0,
        window_size: int = DEFAULT_WINDOW_SIZE,
    ):
        super().__init__()
        if channels % n_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.channels = channels
        self.n_heads = n_heads
        self.head_channels = channels // n_heads
        self.window_size = window_size

        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)

        rel_std = self.head_channels**-0.5
        table_shape = (1, 2 * window_size + 1, self.head_channels)
        self.emb_rel_k = nn.Parameter(torch.randn(table_shape) * rel_std)
        self.emb_rel_v = nn.Parameter(torch.randn(table_shape) * rel_std)
        # Same initialisation as upstream so training from scratch behaves alike.
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, heads, T, head_channels]."""
        return x.reshape(x.shape[0], self.n_heads, self.head_channels, -1).transpose(2, 3)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T]; attn_mask: [B, 1, T, T] (nonzero = may attend). Returns [B, out, T]."""
        length = x.shape[2]
        query = self._split_heads(self.conv_q(x)) / math.sqrt(self.head_channels)
        key = self._split_heads(self.conv_k(x))
        value = self._split_heads(self.conv_v(x))

        key_slot, key_valid, band_key, band_valid = _band_indices(length, self.window_size, x.device)

        scores = torch.matmul(query, key.transpose(-2, -1))  # [B, h, T, T]
        # Query . relative-key embedding for each of the 2w+1 distances, then spread to (i, j).
        rel_logits = torch.matmul(query, self.emb_rel_k.unsqueeze(0).transpose(-2, -1))  # [B, h, T, 2w+1]
        rel_scores = torch.gather(rel_logits, -1, key_slot.expand(scores.shape))
        scores = scores + torch.where(key_valid, rel_scores, torch.zeros_like(rel_scores))

        scores = scores.masked_fill(attn_mask == 0, _MASKED_LOGIT)
        weights = self.drop(F.softmax(scores, dim=-1))
        out = torch.matmul(weights, value)  # [B, h, T, d]

        # Attention mass per relative distance (the band around the diagonal) times its value embedding.
        band_shape = (*weights.shape[:3], band_key.shape[1])
        band_weights = torch.gather(weights, -1, band_key.expand(band_shape))
        band_weights = torch.where(band_valid, band_weights, torch.zeros_like(band_weights))
        out = out + torch.matmul(band_weights, self.emb_rel_v.unsqueeze(0))

        out = out.transpose(2, 3).reshape(x.shape[0], self.channels, -1)
        return self.conv_o(out)


class FeedForward(nn.Module):
    """Two masked 'same'-padded convolutions with a ReLU between (upstream ``FFN``, keys conv_1/conv_2).

    Upstream zero-pads the masked input by ``(k-1)//2`` left and ``k//2`` right before an unpadded
    conv; ``padding="same"`` is the same split for odd and even kernels and exports as the Conv's
    own ``pads`` attribute instead of a separate Pad node.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        filter_channels: int,
        kernel_size: int,
        p_dropout: float = 0.0,
    ):
        super().__init__()
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding="same")
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size, padding="same")
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        x = self.drop(torch.relu(self.conv_1(x * x_mask)))
        return self.conv_2(x * x_mask) * x_mask


class Encoder(nn.Module):
    """Post-norm transformer stack with relative self-attention and conv feed-forward blocks.

    With ``gin_channels > 0`` a speaker vector ``g`` [B, gin, 1] is projected by ``spk_emb_linear``
    and added to the hidden state right before layer ``cond_layer_idx`` (VITS2 speaker-conditioned
    text encoder; also used inside every transformer-flow coupling layer).
    """

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 1,
        p_dropout: float = 0.0,
        window_size: int = DEFAULT_WINDOW_SIZE,
        gin_channels: int = 0,
        cond_layer_idx: int = DEFAULT_COND_LAYER_IDX,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.gin_channels = gin_channels
        if gin_channels > 0:
            # Upstream asserts this too: a speaker vector that is never added would be a silent bug.
            if not 0 <= cond_layer_idx < n_layers:
                raise ValueError(f"cond_layer_idx ({cond_layer_idx}) must be < n_layers ({n_layers})")
            self.spk_emb_linear = nn.Linear(gin_channels, hidden_channels)
            self.cond_layer_idx = cond_layer_idx
        else:
            self.cond_layer_idx = None

        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(
                RelativeSelfAttention(
                    hidden_channels, hidden_channels, n_heads, p_dropout=p_dropout, window_size=window_size
                )
            )
            self.norm_layers_1.append(ChannelLayerNorm(hidden_channels))
            self.ffn_layers.append(
                FeedForward(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout=p_dropout)
            )
            self.norm_layers_2.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, H, T]; x_mask: [B, 1, T]; g: [B, gin, 1] or None. Returns [B, H, T] (masked)."""
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)  # [B, 1, T, T]
        x = x * x_mask
        for i in range(self.n_layers):
            if i == self.cond_layer_idx and g is not None:
                speaker = self.spk_emb_linear(g.transpose(1, 2)).transpose(1, 2)  # [B, H, 1]
                x = (x + speaker) * x_mask
            y = self.drop(self.attn_layers[i](x, attn_mask))
            x = self.norm_layers_1[i](x + y)
            y = self.drop(self.ffn_layers[i](x, x_mask))
            x = self.norm_layers_2[i](x + y)
        return x * x_mask
