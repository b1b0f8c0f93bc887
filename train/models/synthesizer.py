"""The Bert-VITS2 2.3 / 2.0 generator (`SynthesizerTrn`), split into the stages vitsrt exports.

State-dict keys and shapes equal upstream's, so upstream `G_*.pth` files load with strict=True. Inference
is written as four deterministic stages (encode, predict_logw, flow_reverse, decode) plus length
regulation; all randomness enters as tensors drawn from a per-call generator. `infer` chains them with
upstream semantics, except that the decoder is masked: an item in a padded batch decodes exactly as it
would alone, and samples past its length are zero (upstream lets the padding bleed into the last frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vitsrt.config import (
    BERT_VITS2_N_SYMBOLS,
    BERT_VITS2_NUM_LANGUAGES,
    BERT_VITS2_NUM_TONES,
    BertVits2Config,
    normalize_version,
)
from vitsrt.errors import ConfigError
from vitsrt.train.alignment import maximum_path
from vitsrt.train.models.common import sequence_mask
from vitsrt.train.models.duration import DurationPredictor, StochasticDurationPredictor
from vitsrt.train.models.generator import Generator
from vitsrt.train.models.posterior import PosteriorEncoder
from vitsrt.train.models.residual_flow import ResidualCouplingBlock
from vitsrt.train.models.segments import random_starts, slice_segments
from vitsrt.train.models.text_encoder import TextEncoder
from vitsrt.train.models.transformer_flow import TransformerCouplingBlock

# Sizes upstream hard-codes instead of reading the config.
POSTERIOR_KERNEL, POSTERIOR_DILATION, POSTERIOR_LAYERS = 5, 1, 16
FLOW_KERNEL = 5
DP_FILTER, DP_KERNEL, DP_DROPOUT = 256, 3, 0.5
SDP_KERNEL, SDP_DROPOUT, SDP_FLOWS = 3, 0.5, 4


@dataclass(frozen=True)
class SymbolSizes:
    """Embedding-table sizes, which come from the text front end, not from config.json."""

    n_vocab: int = BERT_VITS2_N_SYMBOLS
    num_tones: int = BERT_VITS2_NUM_TONES
    num_languages: int = BERT_VITS2_NUM_LANGUAGES

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> SymbolSizes:
        def rows(key: str, default: int) -> int:
            return int(state[key].shape[0]) if key in state else default

        return cls(
            rows("enc_p.emb.weight", cls.n_vocab),
            rows("enc_p.tone_emb.weight", cls.num_tones),
            rows("enc_p.language_emb.weight", cls.num_languages),
        )


@dataclass
class InferResult:
    """Everything `infer` computed; the tensors the fixture records keep upstream's names."""

    audio: torch.Tensor  # [B, 1, F*hop], zero past y_lengths*hop
    y_lengths: torch.Tensor  # [B]
    durations: torch.Tensor  # [B, 1, T] float, integer valued (upstream w_ceil)
    logw: torch.Tensor  # [B, 1, T]
    enc: torch.Tensor  # [B, H, T]
    m_p: torch.Tensor  # [B, C, T] before expansion
    logs_p: torch.Tensor  # [B, C, T]
    z_p: torch.Tensor  # [B, C, F]
    z: torch.Tensor  # [B, C, F]
    x_mask: torch.Tensor
    y_mask: torch.Tensor


@dataclass
class TrainOutput:
    """What one training forward produces (upstream's 9-tuple, named)."""

    audio: torch.Tensor  # [B, 1, segment_frames*hop] decoded from the random latent window
    duration_loss: torch.Tensor  # [B] dp MSE + sdp NLL + sdp MSE, each per valid token
    attn: torch.Tensor  # [B, 1, F, T] 0/1 monotonic alignment
    slice_starts: torch.Tensor  # [B] first frame of each window
    x_mask: torch.Tensor  # [B, 1, T]
    y_mask: torch.Tensor  # [B, 1, F]
    z: torch.Tensor  # [B, C, F] posterior sample
    z_p: torch.Tensor  # [B, C, F] posterior sample mapped by the flow
    m_p: torch.Tensor  # [B, C, F] prior mean expanded by the alignment
    logs_p: torch.Tensor  # [B, C, F]
    m_q: torch.Tensor  # [B, C, F]
    logs_q: torch.Tensor  # [B, C, F]
    enc: torch.Tensor  # [B, H, T] text-encoder hidden state (the duration discriminator's input)
    logw: torch.Tensor  # [B, 1, T] dp prediction
    logw_target: torch.Tensor  # [B, 1, T] log of the aligned durations (upstream logw_)
    logw_sdp: torch.Tensor  # [B, 1, T] sdp sample with unit noise
    g: torch.Tensor | None  # [B, G, 1]; None for a model without speakers (single-speaker VITS)
    commit_loss: torch.Tensor | None = None  # 2.2: the emotion quantizer's commitment loss (times c_commit in the loop)


def as_batch_vector(value: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
    """A Python float or a [B] tensor -> a [B, 1, 1] tensor on like's device and dtype."""
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return tensor.reshape(-1).expand(batch).reshape(batch, 1, 1) if tensor.numel() == 1 else tensor.reshape(
        batch, 1, 1
    )


def durations_from_logw(logw: torch.Tensor, x_mask: torch.Tensor, length_scale: torch.Tensor) -> torch.Tensor:
    """Upstream's w_ceil = ceil(exp(logw) * x_mask * length_scale), [B, 1, T]."""
    return torch.ceil(torch.exp(logw) * x_mask * length_scale)


def expand_by_durations(
    durations: torch.Tensor, *token_tensors: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Repeat each token's column `duration` times (upstream's generate_path + matmul, without the matrix).

    durations [B, 1, T] integer-valued floats; token tensors [B, C, T]. Returns y_lengths [B] and the
    expanded [B, C, F] tensors (zero past each item's total duration), F = max y_length.
    """
    counts = durations.squeeze(1).long()
    ends = torch.cumsum(counts, dim=1)  # [B, T]
    totals = ends[:, -1]
    y_lengths = torch.clamp_min(totals, 1)
    frames = torch.arange(int(y_lengths.max()), device=durations.device)
    # Frame f belongs to the first token whose cumulative end exceeds f.
    token_index = torch.searchsorted(ends, frames.unsqueeze(0).expand(ends.size(0), -1).contiguous(), right=True)
    token_index = token_index.clamp_max(counts.size(1) - 1)
    covered = (frames.unsqueeze(0) < totals.unsqueeze(1)).unsqueeze(1)
    expanded = tuple(
        torch.gather(t, 2, token_index.unsqueeze(1).expand(-1, t.size(1), -1)) * covered.to(t.dtype)
        for t in token_tensors
    )
    return y_lengths, expanded


@torch.no_grad()
def monotonic_alignment(
    z_p: torch.Tensor,
    m_p: torch.Tensor,
    logs_p: torch.Tensor,
    x_mask: torch.Tensor,
    y_mask: torch.Tensor,
    noise_scale: float = 0.0,
) -> torch.Tensor:
    """VITS's alignment for training: the monotonic path maximising log N(z_p | m_p, exp(logs_p)).

    z_p [B, C, F], m_p/logs_p [B, C, T], masks [B, 1, T] / [B, 1, F] -> attn [B, 1, F, T] (0/1, z_p's dtype).
    ``noise_scale`` > 0 adds VITS2's Gaussian noise (scaled by the grid's std) before the search.
    """
    # log N(z_p | m_p, exp(logs_p)) for every (frame, token), summed over channels, in float32.
    zf, mf, lf = z_p.float(), m_p.float(), logs_p.float()
    inv_var = torch.exp(-2 * lf)  # [B, C, T]
    const = torch.sum(-0.5 * math.log(2 * math.pi) - lf, [1], keepdim=True)  # [B, 1, T]
    quad_z = torch.matmul(-0.5 * (zf**2).transpose(1, 2), inv_var)  # [B, F, T]
    cross = torch.matmul(zf.transpose(1, 2), mf * inv_var)  # [B, F, T]
    quad_m = torch.sum(-0.5 * (mf**2) * inv_var, [1], keepdim=True)  # [B, 1, T]
    neg_cent = const + quad_z + cross + quad_m
    if noise_scale > 0:
        neg_cent = neg_cent + torch.std(neg_cent) * torch.randn_like(neg_cent) * noise_scale
    attn_mask = x_mask.unsqueeze(2) * y_mask.unsqueeze(-1)  # [B, 1, F, T]
    return maximum_path(neg_cent, attn_mask.squeeze(1)).unsqueeze(1).to(z_p.dtype)


def expand_prior(attn: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior statistics per frame, following the path: [B, C, T] -> [B, C, F] with attn [B, 1, F, T]."""
    m_frames = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
    logs_frames = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
    return m_frames, logs_frames


class SynthesizerTrn(nn.Module):
    """Generator of Bert-VITS2 2.3 (also 2.0): text encoder, duration predictors, flow, HiFi-GAN decoder."""

    def __init__(self, config: BertVits2Config, symbols: SymbolSizes | None = None, emotion: bool | None = None):
        """`emotion`: build 2.2's CLAP emotion branch in the text encoder (None: when the config's version is 2.2)."""
        super().__init__()
        m = config.model
        symbols = symbols or SymbolSizes()
        if config.data.n_speakers < 1:
            raise ConfigError("data.n_speakers must be >= 1 (reference-encoder models are not supported)")
        if m.flow_share_parameter:
            raise ConfigError("model.flow_share_parameter=true is not supported")
        self.config = config
        self.symbols = symbols
        self.hop_length = config.hop_length
        self.inter_channels = m.inter_channels
        self.gin_channels = m.gin_channels
        enc_gin = m.gin_channels if m.use_spk_conditioned_encoder else 0
        self.enc_p = TextEncoder(
            symbols.n_vocab,
            m.inter_channels,
            m.hidden_channels,
            m.filter_channels,
            m.n_heads,
            m.n_layers,
            m.kernel_size,
            m.p_dropout,
            gin_channels=enc_gin,
            num_tones=symbols.num_tones,
            num_languages=symbols.num_languages,
            emotion=emotion_version(config) if emotion is None else emotion,
        )
        self.dec = Generator(
            m.inter_channels,
            m.resblock,
            m.resblock_kernel_sizes,
            m.resblock_dilation_sizes,
            m.upsample_rates,
            m.upsample_initial_channel,
            m.upsample_kernel_sizes,
            gin_channels=m.gin_channels,
        )
        self.enc_q = PosteriorEncoder(
            config.spec_channels,
            m.inter_channels,
            m.hidden_channels,
            POSTERIOR_KERNEL,
            POSTERIOR_DILATION,
            POSTERIOR_LAYERS,
            gin_channels=m.gin_channels,
        )
        if m.use_transformer_flow:
            self.flow: nn.Module = TransformerCouplingBlock(
                m.inter_channels,
                m.hidden_channels,
                m.filter_channels,
                m.n_heads,
                m.n_layers_trans_flow,
                FLOW_KERNEL,
                m.p_dropout,
                m.n_flow_layer,
                gin_channels=m.gin_channels,
            )
        else:
            self.flow = ResidualCouplingBlock(
                m.inter_channels,
                m.hidden_channels,
                FLOW_KERNEL,
                1,
                m.n_flow_layer,
                gin_channels=m.gin_channels,
            )
        self.sdp = StochasticDurationPredictor(
            m.hidden_channels, 192, SDP_KERNEL, SDP_DROPOUT, SDP_FLOWS, gin_channels=m.gin_channels
        )
        self.dp = DurationPredictor(m.hidden_channels, DP_FILTER, DP_KERNEL, DP_DROPOUT, gin_channels=m.gin_channels)
        self.emb_g = nn.Embedding(config.data.n_speakers, m.gin_channels)

    # ----- the exported stages -------------------------------------------------------------------

    def speaker_embedding(self, sid: torch.Tensor) -> torch.Tensor:
        return self.emb_g(sid).unsqueeze(-1)  # [B, G, 1]

    def speaker_mix(self, weights: torch.Tensor) -> torch.Tensor:
        """g [B, G, 1] = weights [B, S] @ the speaker table: a one-hot row gives that row of emb_g exactly, a blend's
        weights the weighted sum of the speakers' vectors."""
        return torch.matmul(weights, self.emb_g.weight).unsqueeze(-1)

    def encode(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        sid: torch.Tensor,
        emo: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> enc [B,H,T], m_p [B,C,T], logs_p [B,C,T], x_mask [B,1,T], g [B,G,1]. `emo` [B,512]: 2.2 only."""
        g = self.speaker_embedding(sid)
        return self.encode_with_g(x, x_lengths, tone, language, bert, ja_bert, en_bert, g, emo)

    def encode_with_g(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        g: torch.Tensor,
        emo: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`encode` with the speaker given as its vector g [B,G,1] (e.g. `speaker_mix`); g is returned as given."""
        enc, m_p, logs_p, x_mask = self.enc_p(x, x_lengths, tone, language, bert, ja_bert, en_bert, g=g, emo=emo)
        return enc, m_p, logs_p, x_mask, g

    def predict_logw_dp(self, enc: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.dp(enc, x_mask, g=g)

    def predict_logw(
        self,
        enc: torch.Tensor,
        x_mask: torch.Tensor,
        g: torch.Tensor,
        sdp_noise: torch.Tensor,
        sdp_ratio: torch.Tensor,
    ) -> torch.Tensor:
        """Upstream's mix sdp*ratio + dp*(1-ratio), with a per-item ratio [B] and pre-scaled noise [B,2,T]."""
        ratio = as_batch_vector(sdp_ratio, enc.size(0), enc)
        logw_sdp = self.sdp.infer(enc, x_mask, g, sdp_noise)
        return logw_sdp * ratio + self.dp(enc, x_mask, g=g) * (1 - ratio)

    def flow_reverse(self, z_p: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.flow(z_p, y_mask, g=g, reverse=True)

    def decode(self, z: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Masked HiFi-GAN: [B, C, F] -> [B, 1, F*hop], exact per item inside a padded batch."""
        return self.dec(z * y_mask, g=g, y_mask=y_mask)

    def decoder_context_frames(self) -> int:
        return self.dec.receptive_field_frames()

    # ----- training -------------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        sid: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        segment_frames: int,
        mas_noise_scale: float = 0.0,
        emo: torch.Tensor | None = None,
    ) -> TrainOutput:
        """One training pass with upstream 2.3 semantics.

        Posterior z from the linear spectrogram, flow to z_p, alignment by monotonic search on the
        prior's log-likelihood of z_p (optionally with VITS2's decaying Gaussian noise), both duration
        predictors trained on the aligned durations, prior expanded along the path, and the decoder run
        on one random ``segment_frames`` window per item (unmasked, as upstream trains it). `emo` [B, 512]: 2.2's
        CLAP embedding per item (its quantizer's commitment loss comes back as ``commit_loss``).
        """
        enc, m_p, logs_p, x_mask, g = self.encode(x, x_lengths, tone, language, bert, ja_bert, en_bert, sid, emo)
        commit_loss = self.enc_p.emo_vq.take_commitment() if self.enc_p.emotion else None
        z, m_q, logs_q, y_mask = self.enc_q(spec, spec_lengths, g=g)
        z_p = self.flow(z, y_mask, g=g)
        attn = monotonic_alignment(z_p, m_p, logs_p, x_mask, y_mask, mas_noise_scale)
        w = attn.sum(2)  # [B, 1, T] frames per token
        tokens = torch.sum(x_mask)
        sdp_nll = self.sdp(enc, x_mask, w, g=g) / tokens
        logw_target = torch.log(w + 1e-6) * x_mask
        logw = self.dp(enc, x_mask, g=g)
        sdp_noise = torch.randn(enc.size(0), 2, enc.size(2), device=enc.device, dtype=enc.dtype)
        logw_sdp = self.sdp.infer(enc, x_mask, g, sdp_noise)
        dp_mse = torch.sum((logw - logw_target) ** 2, [1, 2]) / tokens
        sdp_mse = torch.sum((logw_sdp - logw_target) ** 2, [1, 2]) / tokens
        duration_loss = dp_mse + sdp_nll + sdp_mse

        m_p, logs_p = expand_prior(attn, m_p, logs_p)

        starts = random_starts(spec_lengths, segment_frames)
        audio = self.dec(slice_segments(z, starts, segment_frames), g=g)
        return TrainOutput(
            audio, duration_loss, attn, starts, x_mask, y_mask, z, z_p, m_p, logs_p, m_q, logs_q,
            enc, logw, logw_target, logw_sdp, g, commit_loss,
        )

    # ----- whole-utterance inference -------------------------------------------------------------

    @torch.no_grad()
    def infer(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        sid: torch.Tensor,
        tone: torch.Tensor,
        language: torch.Tensor,
        bert: torch.Tensor,
        ja_bert: torch.Tensor,
        en_bert: torch.Tensor,
        noise_scale: float = 0.667,
        length_scale: float | torch.Tensor = 1.0,
        noise_scale_w: float = 0.8,
        sdp_ratio: float | torch.Tensor = 0.0,
        generator: torch.Generator | None = None,
        emo: torch.Tensor | None = None,
    ) -> InferResult:
        """Upstream `infer` semantics; `generator` makes the sdp noise and prior sample reproducible; `emo`
        [B, 512] is 2.2's CLAP embedding per item."""
        enc, m_p, logs_p, x_mask, g = self.encode(x, x_lengths, tone, language, bert, ja_bert, en_bert, sid, emo)
        sdp_noise = _randn(enc.size(0), 2, enc.size(2), like=enc, generator=generator) * noise_scale_w
        logw = self.predict_logw(enc, x_mask, g, sdp_noise, torch.as_tensor(sdp_ratio, dtype=enc.dtype))
        durations = durations_from_logw(logw, x_mask, as_batch_vector(length_scale, enc.size(0), enc))
        y_lengths, (m_frames, logs_frames) = expand_by_durations(durations, m_p, logs_p)
        y_mask = sequence_mask(y_lengths, m_frames.size(2)).unsqueeze(1).to(enc.dtype)
        eps = _randn(*m_frames.shape, like=m_frames, generator=generator)
        z_p = m_frames + eps * torch.exp(logs_frames) * noise_scale
        z = self.flow_reverse(z_p, y_mask, g)
        audio = self.decode(z, y_mask, g)
        return InferResult(audio, y_lengths, durations, logw, enc, m_p, logs_p, z_p, z, x_mask, y_mask)


def emotion_version(config: BertVits2Config) -> bool:
    """Whether the config describes a Bert-VITS2 2.2 generator (the one with the CLAP emotion branch)."""
    return config.version is not None and normalize_version(config.version) == "2.2"


def _randn(*shape: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=like.dtype, device=like.device)
