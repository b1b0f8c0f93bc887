"""Bert-VITS2 prior text encoder (upstream ``enc_p``): phones + tones + languages + BERT -> prior stats.

Bert-VITS2 2.0 and 2.3 share this module exactly (same parameters: ``emb``, ``tone_emb``,
``language_emb``, ``bert_proj``, ``ja_bert_proj``, ``en_bert_proj``, ``encoder``, ``proj``; same
forward). Only the symbol / tone / language table sizes differ between releases, and those come
from the config, so one class serves both. Built with ``emotion=True`` it is 2.2's encoder: the same
modules plus the CLAP emotion branch (:mod:`vitsrt.train.models.emotion`), whose output is added to every
token before the scaling.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitsrt.train.models.attentions import Encoder
from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.emotion import CLAP_DIM, EmotionQuantizer, EmotionTrace, feature_net

# Hidden size of the three BERT feature streams (ZH / JA / EN large models) in Bert-VITS2 2.x.
BERT_CHANNELS = 1024
# Table sizes of the upstream 2.x symbol set: tones 6 (ZH) + 2 (JA) + 4 (EN); languages ZH, JP, EN.
DEFAULT_NUM_TONES = 12
DEFAULT_NUM_LANGUAGES = 3


class TextEncoder(nn.Module):
    """Embeds the token streams, sums the projected BERT features and runs the attention encoder.

    Returns the encoder hidden state (used by the duration predictors) and the prior mean / log-std
    (``proj`` output split in two), all masked to the valid tokens.
    """

    def __init__(
        self,
        n_vocab: int,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        gin_channels: int = 0,
        num_tones: int = DEFAULT_NUM_TONES,
        num_languages: int = DEFAULT_NUM_LANGUAGES,
        emotion: bool = False,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.gin_channels = gin_channels

        self.emb = nn.Embedding(n_vocab, hidden_channels)
        self.tone_emb = nn.Embedding(num_tones, hidden_channels)
        self.language_emb = nn.Embedding(num_languages, hidden_channels)
        for table in (self.emb, self.tone_emb, self.language_emb):
            nn.init.normal_(table.weight, 0.0, hidden_channels**-0.5)
        self.bert_proj = nn.Conv1d(BERT_CHANNELS, hidden_channels, 1)
        self.ja_bert_proj = nn.Conv1d(BERT_CHANNELS, hidden_channels, 1)
        self.en_bert_proj = nn.Conv1d(BERT_CHANNELS, hidden_channels, 1)

        self.encoder = Encoder(
            hidden_channels,
            filter_channels,
            n_heads,
            n_layers,
            kernel_size,
            p_dropout,
            gin_channels=gin_channels,
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)
        self.emotion = emotion
        if emotion:  # Bert-VITS2 2.2 (attribute names are upstream's state-dict keys)
            self.in_feature_net = feature_net()
            self.emo_vq = EmotionQuantizer()
            self.out_feature_net = nn.Linear(CLAP_DIM, hidden_channels)

    def emotion_trace(self, emo: torch.Tensor) -> EmotionTrace:
        """The emotion branch's intermediates for CLAP embeddings ``emo`` [B, 512] (2.2 encoders only)."""
        return EmotionTrace(self.in_feature_net, self.emo_vq, self.out_feature_net, emo)

    def emotion_embedding(self, emo: torch.Tensor | None) -> torch.Tensor:
        """[B, 512] CLAP embeddings -> [B, 1, H], the vector added to every token (2.2 encoders only)."""
        if emo is None:
            raise ValueError("a Bert-VITS2 2.2 encoder needs the emotion embedding `emo` [B, 512]")
        return self.out_feature_net(self.emo_vq(self.in_feature_net(emo))).unsqueeze(1)

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        g: torch.Tensor | None = None,
        emo: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shapes: x, tone, language [B, T] int; x_lengths [B]; bert/ja_bert/en_bert [B, 1024, T];
        g [B, gin, 1] or None (ignored when built with gin_channels=0, as upstream); emo [B, 512] (2.2 only:
        one CLAP embedding per item; required there, ignored otherwise).

        Returns ``(enc [B, H, T], m_p [B, C, T], logs_p [B, C, T], x_mask [B, 1, T])``.
        """
        # Summed in upstream's order so float rounding matches the reference closely.
        h = (
            self.emb(x)
            + self.tone_emb(tone)
            + self.language_emb(language)
            + self.bert_proj(bert).transpose(1, 2)
            + self.ja_bert_proj(ja_bert).transpose(1, 2)
            + self.en_bert_proj(en_bert).transpose(1, 2)
        )
        if self.emotion:
            h = h + self.emotion_embedding(emo)  # [B, 1, H] broadcast over the tokens
        h = h * math.sqrt(self.hidden_channels)  # [B, T, H]
        h = h.transpose(1, 2)  # [B, H, T]
        x_mask = sequence_mask(x_lengths, h.shape[2]).unsqueeze(1).to(h.dtype)

        h = self.encoder(h * x_mask, x_mask, g=g)
        stats = self.proj(h) * x_mask
        m_p, logs_p = torch.split(stats, self.out_channels, dim=1)
        return h, m_p, logs_p, x_mask
