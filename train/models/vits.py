"""The original VITS generator (Kim et al. 2021), as upstream VITS and piper build it: ``VitsSynthesizer``.

Parameter names equal upstream's / piper's (``enc_p.emb``, ``enc_p.encoder.*``, ``enc_p.proj``, ``dp.*``,
``flow.flows.N.*``, ``dec.*``, ``enc_q.*`` and, for multi-speaker models only, ``emb_g``), so their
checkpoints load with strict=True and a piper ONNX graph's initializers name our parameters once weight
norm is folded. Every module is the one the Bert-VITS2 generator uses (attention stack, duration
predictors, WaveNet coupling flow, HiFi-GAN, posterior encoder); only the text encoder is VITS's own (phone
embeddings alone: no tones, languages or BERT features, no speaker conditioning).

Differences from Bert-VITS2, all upstream VITS's: one duration predictor (``dp`` is the stochastic one when
``use_sdp``, else the deterministic one; no sdp/dp mix), a 4-coupling WaveNet flow, and no speaker vector at
all for a single-speaker model (``g`` is None everywhere; speaker-conditioning layers that the config's
``gin_channels`` still creates are left unused, as upstream leaves them).

Inference is the same four deterministic stages as :class:`~vitsrt.train.models.synthesizer.SynthesizerTrn`
(encode, predict_logw, flow_reverse, decode) with host-side length regulation; randomness enters as
tensors drawn from a per-call generator, and the decoder is masked (batched == alone).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitsrt.config import VitsConfig
from vitsrt.errors import ConfigError
from vitsrt.train.models.attentions import Encoder
from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.duration import DurationPredictor, StochasticDurationPredictor
from vitsrt.train.models.generator import Generator
from vitsrt.train.models.posterior import PosteriorEncoder
from vitsrt.train.models.residual_flow import ResidualCouplingBlock
from vitsrt.train.models.segments import random_starts, slice_segments
from vitsrt.train.models.synthesizer import (
    DP_DROPOUT,
    DP_FILTER,
    DP_KERNEL,
    FLOW_KERNEL,
    POSTERIOR_DILATION,
    POSTERIOR_KERNEL,
    POSTERIOR_LAYERS,
    SDP_DROPOUT,
    SDP_FLOWS,
    SDP_KERNEL,
    InferResult,
    TrainOutput,
    as_batch_vector,
    durations_from_logw,
    expand_by_durations,
    expand_prior,
    monotonic_alignment,
)
from vitsrt.train.models.wavenet import fold_weight_norm

__all__ = ["VitsSynthesizer", "VitsTextEncoder"]

# Upstream VITS hard-codes these (its flow has 4 couplings of 4 WaveNet layers; the SDP's filter is 192).
FLOW_COUPLINGS, FLOW_LAYERS = 4, 4
SDP_FILTER = 192


class VitsTextEncoder(nn.Module):
    """VITS's prior encoder ``enc_p``: phone embeddings * sqrt(H), the attention stack, a 1x1 projection to
    the prior mean / log-std. Keys ``emb``, ``encoder``, ``proj``."""

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
    ):
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.emb = nn.Embedding(n_vocab, hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, hidden_channels**-0.5)
        self.encoder = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self, x: torch.Tensor, x_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T] int, x_lengths [B] -> (enc [B, H, T], m_p [B, C, T], logs_p [B, C, T], x_mask [B, 1, T])."""
        h = (self.emb(x) * math.sqrt(self.hidden_channels)).transpose(1, 2)  # [B, H, T]
        x_mask = sequence_mask(x_lengths, h.shape[2]).unsqueeze(1).to(h.dtype)
        h = self.encoder(h * x_mask, x_mask)
        stats = self.proj(h) * x_mask
        m_p, logs_p = torch.split(stats, self.out_channels, dim=1)
        return h, m_p, logs_p, x_mask


class VitsSynthesizer(nn.Module):
    """Generator of original VITS / piper: text encoder, one duration predictor, WaveNet flow, HiFi-GAN.

    ``n_vocab`` overrides ``config.model.n_vocab`` (the phone table's rows usually come from the front end
    or the checkpoint, not from config.json).
    """

    def __init__(self, config: VitsConfig, n_vocab: int | None = None):
        super().__init__()
        m = config.model
        if config.multi_speaker and m.gin_channels < 1:
            raise ConfigError("a multi-speaker VITS model needs model.gin_channels > 0")
        self.config = config
        self.n_vocab = int(n_vocab if n_vocab is not None else m.n_vocab)
        self.n_speakers = config.n_speakers
        self.hop_length = config.hop_length
        self.inter_channels = m.inter_channels
        self.gin_channels = m.gin_channels
        self.use_sdp = m.use_sdp
        gin = m.gin_channels
        self.enc_p = VitsTextEncoder(
            self.n_vocab,
            m.inter_channels,
            m.hidden_channels,
            m.filter_channels,
            m.n_heads,
            m.n_layers,
            m.kernel_size,
            m.p_dropout,
        )
        self.dec = Generator(
            m.inter_channels,
            m.resblock,
            m.resblock_kernel_sizes,
            m.resblock_dilation_sizes,
            m.upsample_rates,
            m.upsample_initial_channel,
            m.upsample_kernel_sizes,
            gin_channels=gin,
        )
        self.enc_q = PosteriorEncoder(
            config.spec_channels,
            m.inter_channels,
            m.hidden_channels,
            POSTERIOR_KERNEL,
            POSTERIOR_DILATION,
            POSTERIOR_LAYERS,
            gin_channels=gin,
        )
        self.flow = ResidualCouplingBlock(
            m.inter_channels, m.hidden_channels, FLOW_KERNEL, 1, FLOW_LAYERS, FLOW_COUPLINGS, gin_channels=gin
        )
        if m.use_sdp:
            self.dp: nn.Module = StochasticDurationPredictor(
                m.hidden_channels, SDP_FILTER, SDP_KERNEL, SDP_DROPOUT, SDP_FLOWS, gin_channels=gin
            )
        else:
            self.dp = DurationPredictor(m.hidden_channels, DP_FILTER, DP_KERNEL, DP_DROPOUT, gin_channels=gin)
        if config.multi_speaker:
            self.emb_g = nn.Embedding(config.n_speakers, gin)

    @property
    def multi_speaker(self) -> bool:
        return self.n_speakers > 1

    # ----- the exported stages -------------------------------------------------------------------

    def speaker_embedding(self, sid: torch.Tensor | None) -> torch.Tensor | None:
        """[B] ids -> g [B, gin, 1]; None for a single-speaker model (whatever `sid` is)."""
        if not self.multi_speaker:
            return None
        if sid is None:
            raise ValueError("this VITS model has several speakers: a speaker id (sid) is required")
        return self.emb_g(sid).unsqueeze(-1)

    def encode(
        self, x: torch.Tensor, x_lengths: torch.Tensor, sid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> enc [B,H,T], m_p [B,C,T], logs_p [B,C,T], x_mask [B,1,T], g [B,G,1] or None."""
        enc, m_p, logs_p, x_mask = self.enc_p(x, x_lengths)
        return enc, m_p, logs_p, x_mask, self.speaker_embedding(sid)

    def predict_logw(
        self,
        enc: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor | None = None,
        sdp_noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """logw [B, 1, T]. With the SDP, `sdp_noise` [B, 2, T] is upstream's randn * noise_scale_w (None:
        zeros); the deterministic predictor ignores it."""
        if self.use_sdp:
            return self.dp.infer(enc, x_mask, g, sdp_noise)
        return self.dp(enc, x_mask, g=g)

    def flow_reverse(self, z_p: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self.flow(z_p, y_mask, g=g, reverse=True)

    def decode(self, z: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """Masked HiFi-GAN: [B, C, F] -> [B, 1, F*hop], exact per item inside a padded batch."""
        return self.dec(z * y_mask, g=g, y_mask=y_mask)

    def decoder_context_frames(self) -> int:
        return self.dec.receptive_field_frames()

    def fold_weight_norm(self) -> int:
        """The inference form: weight norm baked into plain conv weights (upstream's ``remove_weight_norm``;
        afterwards the state dict holds ``weight`` where it held ``weight_g``/``weight_v``). Returns the count."""
        return fold_weight_norm(self)

    def remove_weight_norm(self) -> int:
        return self.fold_weight_norm()

    # ----- training -------------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        sid: torch.Tensor | None,
        segment_frames: int,
    ) -> TrainOutput:
        """One training pass with upstream VITS semantics: posterior z, flow to z_p, monotonic alignment
        against the prior, the duration predictor's loss (SDP: its variational bound; else the log-duration
        MSE), prior expanded along the path, decoder on one random window per item."""
        enc, m_p, logs_p, x_mask, g = self.encode(x, x_lengths, sid)
        z, m_q, logs_q, y_mask = self.enc_q(spec, spec_lengths, g=g)
        z_p = self.flow(z, y_mask, g=g)
        attn = monotonic_alignment(z_p, m_p, logs_p, x_mask, y_mask)
        w = attn.sum(2)  # [B, 1, T] frames per token
        tokens = torch.sum(x_mask)
        logw_target = torch.log(w + 1e-6) * x_mask
        if self.use_sdp:
            duration_loss = self.dp(enc, x_mask, w, g=g) / tokens
            # The SDP predicts nothing without sampling; no duration discriminator reads it in VITS, and drawing
            # a sample here would move the global RNG away from upstream's order (the window starts next).
            logw = logw_target.detach()
        else:
            logw = self.dp(enc, x_mask, g=g)
            duration_loss = torch.sum((logw - logw_target) ** 2, [1, 2]) / tokens
        m_p, logs_p = expand_prior(attn, m_p, logs_p)
        starts = random_starts(spec_lengths, segment_frames)
        audio = self.dec(slice_segments(z, starts, segment_frames), g=g)
        return TrainOutput(
            audio, duration_loss, attn, starts, x_mask, y_mask, z, z_p, m_p, logs_p, m_q, logs_q,
            enc, logw, logw_target, logw, g,
        )

    # ----- whole-utterance inference -------------------------------------------------------------

    @torch.no_grad()
    def infer(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        sid: torch.Tensor | None = None,
        noise_scale: float = 0.667,
        length_scale: float | torch.Tensor = 1.0,
        noise_scale_w: float = 0.8,
        generator: torch.Generator | None = None,
    ) -> InferResult:
        """Upstream / piper ``infer`` semantics. The draws (SDP noise [B, 2, T], then the prior's noise, laid out
        [B, F, C]) are upstream's, so with ``generator`` seeded like the global RNG the noise equals upstream's."""
        enc, m_p, logs_p, x_mask, g = self.encode(x, x_lengths, sid)
        sdp_noise = None
        if self.use_sdp:
            sdp_noise = _randn(enc.size(0), 2, enc.size(2), like=enc, generator=generator) * noise_scale_w
        logw = self.predict_logw(enc, x_mask, g, sdp_noise)
        durations = durations_from_logw(logw, x_mask, as_batch_vector(length_scale, enc.size(0), enc))
        y_lengths, (m_frames, logs_frames) = expand_by_durations(durations, m_p, logs_p)
        y_mask = sequence_mask(y_lengths, m_frames.size(2)).unsqueeze(1).to(enc.dtype)
        eps = _prior_noise(m_frames, generator)
        z_p = m_frames + eps * torch.exp(logs_frames) * noise_scale
        z = self.flow_reverse(z_p, y_mask, g)
        audio = self.decode(z, y_mask, g)
        return InferResult(audio, y_lengths, durations, logw, enc, m_p, logs_p, z_p, z, x_mask, y_mask)


def _randn(*shape: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=like.dtype, device=like.device)


def _prior_noise(m_frames: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard-normal noise shaped like m_frames [B, C, F], filled as upstream's ``randn_like(m_p)`` fills it:
    its m_p is a transposed matmul result (memory order [B, F, C]), and torch fills a non-contiguous tensor
    element by element, which gives other numbers than a contiguous ``randn`` from the same generator."""
    batch, channels, frames = m_frames.shape
    noise = torch.empty(batch, frames, channels, dtype=m_frames.dtype, device=m_frames.device).transpose(1, 2)
    return noise.normal_(generator=generator)
