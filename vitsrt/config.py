"""Upstream Bert-VITS2 `config.json`, read as it is.

The three sections keep every key they are given (unknown keys are preserved, so a config we read and
write back loses nothing). Keys that upstream's `SynthesizerTrn` constructor defaults when absent get the
same defaults here, so a checkpoint built from a sparse config gets the same architecture as upstream.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitsrt.errors import ConfigError

# Symbol-table sizes of upstream Bert-VITS2 2.x (text/symbols.py): 112 symbols, 6 + 2 + 4 tones, 3 languages.
BERT_VITS2_N_SYMBOLS = 112
BERT_VITS2_NUM_TONES = 12
BERT_VITS2_NUM_LANGUAGES = 3
BERT_DIM = 1024

SUPPORTED_VERSIONS = ("2.0", "2.3")
_UNSUPPORTED_REASONS = {
    "1": "1.x models have no English BERT input and a different text encoder",
    "2.1": "2.1 models take emotion embeddings (an extra encoder input and quantizer) that vitsrt does not export",
    "2.2": "2.2 models take CLAP emotion features (an extra encoder input) that vitsrt does not export",
}


class _Section(BaseModel):
    """A config section: known keys typed, unknown keys kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TrainSection(_Section):
    log_interval: int = 200
    eval_interval: int = 1000
    seed: int = 42
    epochs: int = 1000
    learning_rate: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    batch_size: int = Field(16, ge=1)
    bf16_run: bool = False
    lr_decay: float = Field(0.99995, gt=0, le=1)
    segment_size: int = Field(16384, ge=1)
    init_lr_ratio: float = 1.0
    warmup_epochs: int = 0
    c_mel: float = 45.0
    c_kl: float = 1.0
    c_commit: float = 100.0
    skip_optimizer: bool = True
    freeze_ZH_bert: bool = False
    freeze_JP_bert: bool = False
    freeze_EN_bert: bool = False
    freeze_emo: bool = False


class DataSection(_Section):
    training_files: str = "filelists/train.list"
    validation_files: str = "filelists/val.list"
    max_wav_value: float = 32768.0
    sampling_rate: int = Field(44100, gt=0)
    filter_length: int = Field(2048, gt=0)
    hop_length: int = Field(512, gt=0)
    win_length: int = Field(2048, gt=0)
    n_mel_channels: int = Field(128, gt=0)
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    add_blank: bool = True
    n_speakers: int = Field(256, ge=0)
    cleaned_text: bool = True
    spk2id: dict[str, int] = Field(default_factory=dict)


class ModelSection(_Section):
    use_spk_conditioned_encoder: bool = True
    use_noise_scaled_mas: bool = False
    use_mel_posterior_encoder: bool = False
    use_duration_discriminator: bool = False
    inter_channels: int = Field(192, gt=0)
    hidden_channels: int = Field(192, gt=0)
    filter_channels: int = Field(768, gt=0)
    n_heads: int = Field(2, gt=0)
    n_layers: int = Field(6, gt=0)
    kernel_size: int = Field(3, gt=0)
    p_dropout: float = Field(0.1, ge=0, lt=1)
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[int] = Field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = Field(default_factory=lambda: [[1, 3, 5]] * 3)
    upsample_rates: list[int] = Field(default_factory=lambda: [8, 8, 2, 2, 2])
    upsample_initial_channel: int = Field(512, gt=0)
    upsample_kernel_sizes: list[int] = Field(default_factory=lambda: [16, 16, 8, 2, 2])
    n_layers_q: int = 3
    use_spectral_norm: bool = False
    gin_channels: int = Field(256, ge=0)
    # Constructor defaults of upstream SynthesizerTrn, applied when the config omits them.
    use_sdp: bool = True
    n_flow_layer: int = Field(4, gt=0)
    n_layers_trans_flow: int = Field(4, gt=0)
    flow_share_parameter: bool = False
    use_transformer_flow: bool = True
    mas_noise_scale_initial: float = 0.01
    noise_scale_delta: float = 2e-6

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelSection:
        if self.hidden_channels % self.n_heads:
            raise ValueError(
                f"hidden_channels ({self.hidden_channels}) must be divisible by n_heads ({self.n_heads})"
            )
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
        for rate, kernel in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            if rate <= 0 or kernel < rate or (kernel - rate) % 2:
                raise ValueError(f"upsample kernel {kernel} must be >= rate {rate} and have the same parity")
        # Upstream asserts this in every speaker-conditioned attention stack (cond_layer_idx = 2).
        if self.use_spk_conditioned_encoder and self.gin_channels > 0 and self.n_layers <= 2:
            raise ValueError(f"n_layers must be > 2 with a speaker-conditioned encoder (got {self.n_layers})")
        if self.use_transformer_flow and self.gin_channels > 0 and self.n_layers_trans_flow <= 2:
            raise ValueError(f"n_layers_trans_flow must be > 2 with gin_channels > 0 (got {self.n_layers_trans_flow})")
        return self


class BertVits2Config(BaseModel):
    """A whole upstream config.json. Unknown top-level keys are preserved."""

    model_config = ConfigDict(extra="allow")

    train: TrainSection = Field(default_factory=TrainSection)
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    version: str | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> BertVits2Config:
        hop = 1
        for rate in self.model.upsample_rates:
            hop *= rate
        if hop != self.data.hop_length:
            raise ValueError(
                f"product of model.upsample_rates ({hop}) must equal data.hop_length ({self.data.hop_length})"
            )
        for name, sid in self.data.spk2id.items():
            if not 0 <= sid < max(self.data.n_speakers, 1):
                raise ValueError(f"data.spk2id[{name!r}] = {sid} is outside 0..n_speakers-1 ({self.data.n_speakers})")
        return self

    @property
    def hop_length(self) -> int:
        return self.data.hop_length

    @property
    def sampling_rate(self) -> int:
        return self.data.sampling_rate

    @property
    def spec_channels(self) -> int:
        return self.data.filter_length // 2 + 1

    @property
    def segment_frames(self) -> int:
        return self.train.segment_size // self.data.hop_length

    def speakers(self) -> dict[str, int]:
        """Speaker name -> id, ordered by id. Falls back to `speaker_<i>` names when spk2id is empty."""
        if self.data.spk2id:
            return dict(sorted(self.data.spk2id.items(), key=lambda item: item[1]))
        return {f"speaker_{i}": i for i in range(self.data.n_speakers)}

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2, ensure_ascii=False)


def normalize_version(raw: str) -> str:
    """'2.3' -> '2.3', '2.0.2' -> '2.0', 'v2.3' -> '2.3', '1.1.1' -> '1'."""
    match = re.match(r"^v?(\d+)(?:\.(\d+))?", raw.strip())
    if not match:
        raise ConfigError(f"unrecognised model version {raw!r}")
    major, minor = match.group(1), match.group(2) or "0"
    return major if major == "1" else f"{major}.{minor}"


def check_supported(version: str) -> str:
    """Return the normalised version or raise ConfigError('unsupported version X: reason')."""
    normalized = normalize_version(version)
    if normalized in SUPPORTED_VERSIONS:
        return normalized
    reason = _UNSUPPORTED_REASONS.get(normalized, f"vitsrt supports Bert-VITS2 {' and '.join(SUPPORTED_VERSIONS)}")
    raise ConfigError(f"unsupported version {version}: {reason}")


def version_from_state_dict_keys(keys: set[str]) -> str | None:
    """Infer the Bert-VITS2 generation from generator state_dict keys (None when nothing tells)."""
    if any(".emo_" in k or k.startswith("enc_p.emo") or ".emo_vq" in k or "in_feature_net" in k for k in keys):
        # 2.1 projects 1024-dim emotion embeddings; 2.2 adds a CLAP feature net. Both are emotion models.
        return "2.2" if any("in_feature_net" in k for k in keys) else "2.1"
    if "enc_p.bert_proj.weight" in keys and "enc_p.en_bert_proj.weight" not in keys:
        return "1"
    if "enc_p.en_bert_proj.weight" in keys:
        return "2.3"  # 2.0 and 2.3 generators share one layout; the config's `version` tells them apart.
    return None


def load_config(path: str | Path) -> BertVits2Config:
    """Read and validate a config.json; any problem becomes a one-line ConfigError."""
    path = Path(path)
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "config") -> BertVits2Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level")
    try:
        config = BertVits2Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{source}: invalid {where}: {message}") from None
    if config.version is not None:
        check_supported(config.version)
    return config
