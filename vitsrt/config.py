"""Upstream Bert-VITS2 `config.json`, read as it is.

The three sections keep every key they are given (unknown keys are preserved, so a config we read and
write back loses nothing). Keys that upstream's `SynthesizerTrn` constructor defaults when absent get the
same defaults here, so a checkpoint built from a sparse config gets the same architecture as upstream.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from vitsrt.errors import ConfigError, clip
from vitsrt.files import NotRegularFileError, open_regular

# Symbol-table sizes of upstream Bert-VITS2 2.x (text/symbols.py): 112 symbols, 6 + 2 + 4 tones, 3 languages.
BERT_VITS2_N_SYMBOLS = 112
BERT_VITS2_NUM_TONES = 12
BERT_VITS2_NUM_LANGUAGES = 3
BERT_DIM = 1024

# Model families a config.json can describe (its top-level "family"; absent: Bert-VITS2, as upstream writes it).
BERT_VITS2_FAMILY = "bert-vits2"
VITS_FAMILY = "vits"

# Sanity limits. Upstream's largest published configs use 192-512 channels, 6 layers and 44.1 kHz; the limits sit
# far above that and only stop a typo (hidden_channels=1e6) from allocating gigabytes before anything is checked.
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_CHANNELS = 8192
MAX_LAYERS = 64
MAX_GENERATOR_PARAMETERS = 1_000_000_000  # 4 GB of float32; a default-size generator has ~60 million
_Kernel = Annotated[int, Field(ge=1, le=1024)]
_Dilation = Annotated[int, Field(ge=1, le=1024)]
_Rate = Annotated[int, Field(ge=1, le=64)]

# 2.2 is 2.3's generator plus a CLAP emotion branch in the text encoder (vitsrt.train.models.emotion).
SUPPORTED_VERSIONS = ("2.0", "2.2", "2.3")
_UNSUPPORTED_REASONS = {
    "1": "1.x models have no English BERT input and a different text encoder",
    "2.1": "2.1 models take emotion embeddings (an extra encoder input and quantizer) that vitsrt does not export",
}


class _Section(BaseModel):
    """A config section: known keys typed, unknown keys kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)


class TrainSection(_Section):
    log_interval: int = 200
    eval_interval: int = 1000
    seed: int = 42
    epochs: int = 1000
    learning_rate: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    batch_size: int = Field(16, ge=1, le=65536)
    bf16_run: bool = False
    lr_decay: float = Field(0.99995, gt=0, le=1)
    segment_size: int = Field(16384, ge=1, le=1 << 22)
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
    sampling_rate: int = Field(44100, gt=0, le=384_000)
    filter_length: int = Field(2048, gt=0, le=65536)
    hop_length: int = Field(512, gt=0, le=8192)
    win_length: int = Field(2048, gt=0, le=65536)
    n_mel_channels: int = Field(128, gt=0, le=1024)
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    add_blank: bool = True
    n_speakers: int = Field(256, ge=0, le=100_000)
    cleaned_text: bool = True
    spk2id: dict[str, int] = Field(default_factory=dict)


class ModelSection(_Section):
    use_spk_conditioned_encoder: bool = True
    use_noise_scaled_mas: bool = False
    use_mel_posterior_encoder: bool = False
    use_duration_discriminator: bool = False
    inter_channels: int = Field(192, gt=0, le=MAX_CHANNELS)
    hidden_channels: int = Field(192, gt=0, le=MAX_CHANNELS)
    filter_channels: int = Field(768, gt=0, le=4 * MAX_CHANNELS)
    n_heads: int = Field(2, gt=0, le=64)
    n_layers: int = Field(6, gt=0, le=MAX_LAYERS)
    kernel_size: int = Field(3, gt=0, le=63)
    p_dropout: float = Field(0.1, ge=0, lt=1)
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[_Kernel] = Field(default_factory=lambda: [3, 7, 11], min_length=1, max_length=16)
    resblock_dilation_sizes: list[Annotated[list[_Dilation], Field(min_length=1, max_length=16)]] = Field(
        default_factory=lambda: [[1, 3, 5]] * 3, min_length=1, max_length=16
    )
    upsample_rates: list[_Rate] = Field(default_factory=lambda: [8, 8, 2, 2, 2], min_length=1, max_length=16)
    upsample_initial_channel: int = Field(512, gt=0, le=MAX_CHANNELS)
    upsample_kernel_sizes: list[_Kernel] = Field(default_factory=lambda: [16, 16, 8, 2, 2], min_length=1, max_length=16)
    n_layers_q: int = Field(3, ge=0, le=MAX_LAYERS)
    use_spectral_norm: bool = False
    gin_channels: int = Field(256, ge=0, le=MAX_CHANNELS)
    # Constructor defaults of upstream SynthesizerTrn, applied when the config omits them.
    use_sdp: bool = True
    n_flow_layer: int = Field(4, gt=0, le=MAX_LAYERS)
    n_layers_trans_flow: int = Field(4, gt=0, le=MAX_LAYERS)
    flow_share_parameter: bool = False
    use_transformer_flow: bool = True
    mas_noise_scale_initial: float = 0.01
    noise_scale_delta: float = 2e-6

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelSection:
        _check_common_shapes(self)
        # Upstream asserts this in every speaker-conditioned attention stack (cond_layer_idx = 2).
        if self.use_spk_conditioned_encoder and self.gin_channels > 0 and self.n_layers <= 2:
            raise ValueError(f"n_layers must be > 2 with a speaker-conditioned encoder (got {self.n_layers})")
        if self.use_transformer_flow and self.gin_channels > 0 and self.n_layers_trans_flow <= 2:
            raise ValueError(f"n_layers_trans_flow must be > 2 with gin_channels > 0 (got {self.n_layers_trans_flow})")
        return self


class _ModelConfig(BaseModel):
    """What every model family's whole config.json answers the same way (train, data and model sections)."""

    model_config = ConfigDict(extra="allow")

    train: TrainSection
    data: DataSection

    @property
    def hop_length(self) -> int:
        return self.data.hop_length

    @property
    def sampling_rate(self) -> int:
        return self.data.sampling_rate

    @property
    def spec_channels(self) -> int:
        """Bins of the linear spectrogram the posterior encoder reads (upstream's spec_channels)."""
        return self.data.filter_length // 2 + 1

    @property
    def segment_frames(self) -> int:
        """The decoder's training window in frames (upstream passes segment_size // hop_length)."""
        return self.train.segment_size // self.data.hop_length

    def speakers(self) -> dict[str, int]:
        """Speaker name -> id, ordered by id. Falls back to `speaker_<i>` names when spk2id is empty."""
        if self.data.spk2id:
            return dict(sorted(self.data.spk2id.items(), key=lambda item: item[1]))
        return {f"speaker_{i}": i for i in range(self.data.n_speakers)}

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2, ensure_ascii=False)


class BertVits2Config(_ModelConfig):
    """A whole upstream config.json. Unknown top-level keys are preserved."""

    train: TrainSection = Field(default_factory=TrainSection)
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    version: str | None = None

    @model_validator(mode="after")
    def _check_consistency(self) -> BertVits2Config:
        _check_hop(self.model.upsample_rates, self.data.hop_length)
        _check_spk2id(self.data)
        _check_size(approx_generator_parameters(self))
        return self


# ----- original VITS (as upstream VITS and piper train it) ------------------------------------------------


class VitsTrainSection(TrainSection):
    """Upstream VITS's train section: Bert-VITS2's keys with VITS's defaults where they differ."""

    segment_size: int = Field(8192, ge=1, le=1 << 22)
    lr_decay: float = Field(0.999875, gt=0, le=1)


class VitsDataSection(DataSection):
    """Upstream VITS's data section (LJSpeech defaults); ``n_speakers`` <= 1 is a single-speaker model
    (upstream's ljs config says 0). piper's ``num_speakers`` is read as ``n_speakers``."""

    sampling_rate: int = Field(22050, gt=0, le=384_000)
    filter_length: int = Field(1024, gt=0, le=65536)
    hop_length: int = Field(256, gt=0, le=8192)
    win_length: int = Field(1024, gt=0, le=65536)
    n_mel_channels: int = Field(80, gt=0, le=1024)
    n_speakers: int = Field(1, ge=0, le=100_000, validation_alias=AliasChoices("n_speakers", "num_speakers"))


class VitsModelSection(_Section):
    """The arguments of upstream VITS's ``SynthesizerTrn`` (piper's are the same), upstream ljs defaults.

    ``n_vocab`` (piper: ``num_symbols``) is the size of the phoneme embedding table; upstream VITS takes it
    from its symbol list, so a config without it gets piper's 256 and loaders size the table from the
    checkpoint. ``gin_channels`` is the speaker vector's size (multi-speaker models only need it; piper uses
    0 for single-speaker voices). ``use_sdp``: the stochastic duration predictor (else the deterministic one).
    """

    n_vocab: int = Field(256, ge=1, le=65536, validation_alias=AliasChoices("n_vocab", "num_symbols"))
    inter_channels: int = Field(192, gt=0, le=MAX_CHANNELS)
    hidden_channels: int = Field(192, gt=0, le=MAX_CHANNELS)
    filter_channels: int = Field(768, gt=0, le=4 * MAX_CHANNELS)
    n_heads: int = Field(2, gt=0, le=64)
    n_layers: int = Field(6, gt=0, le=MAX_LAYERS)
    kernel_size: int = Field(3, gt=0, le=63)
    p_dropout: float = Field(0.1, ge=0, lt=1)
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[_Kernel] = Field(default_factory=lambda: [3, 7, 11], min_length=1, max_length=16)
    resblock_dilation_sizes: list[Annotated[list[_Dilation], Field(min_length=1, max_length=16)]] = Field(
        default_factory=lambda: [[1, 3, 5]] * 3, min_length=1, max_length=16
    )
    upsample_rates: list[_Rate] = Field(default_factory=lambda: [8, 8, 2, 2], min_length=1, max_length=16)
    upsample_initial_channel: int = Field(512, gt=0, le=MAX_CHANNELS)
    upsample_kernel_sizes: list[_Kernel] = Field(default_factory=lambda: [16, 16, 4, 4], min_length=1, max_length=16)
    n_layers_q: int = Field(3, ge=0, le=MAX_LAYERS)
    use_spectral_norm: bool = False
    gin_channels: int = Field(0, ge=0, le=MAX_CHANNELS)
    use_sdp: bool = True

    @model_validator(mode="after")
    def _check_shapes(self) -> VitsModelSection:
        _check_common_shapes(self)
        return self


class VitsConfig(_ModelConfig):
    """A whole original-VITS config.json (upstream VITS's layout plus ``"family": "vits"``, which tells it
    from a Bert-VITS2 config). Unknown keys are preserved, as for Bert-VITS2."""

    family: Literal["vits"] = VITS_FAMILY
    train: VitsTrainSection = Field(default_factory=VitsTrainSection)
    data: VitsDataSection = Field(default_factory=VitsDataSection)
    model: VitsModelSection = Field(default_factory=VitsModelSection)

    @model_validator(mode="after")
    def _check_consistency(self) -> VitsConfig:
        _check_hop(self.model.upsample_rates, self.data.hop_length)
        _check_spk2id(self.data)
        if self.multi_speaker and self.model.gin_channels < 1:
            raise ValueError(f"a multi-speaker model (n_speakers = {self.data.n_speakers}) needs gin_channels > 0")
        _check_size(approx_vits_parameters(self))
        return self

    @property
    def n_speakers(self) -> int:
        """Rows of the speaker table; 1 for a single-speaker model (which has none)."""
        return max(self.data.n_speakers, 1)

    @property
    def multi_speaker(self) -> bool:
        return self.n_speakers > 1

    def speakers(self) -> dict[str, int]:
        return super().speakers() if self.data.spk2id else {f"speaker_{i}": i for i in range(self.n_speakers)}


ModelConfig = BertVits2Config | VitsConfig


def _check_common_shapes(m: ModelSection | VitsModelSection) -> None:
    """Shape rules every VITS-family model section shares (attention heads, HiFi-GAN decoder layout)."""
    if m.hidden_channels % m.n_heads:
        raise ValueError(f"hidden_channels ({m.hidden_channels}) must be divisible by n_heads ({m.n_heads})")
    if len(m.upsample_rates) != len(m.upsample_kernel_sizes):
        raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
    if len(m.resblock_kernel_sizes) != len(m.resblock_dilation_sizes):
        raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
    for rate, kernel in zip(m.upsample_rates, m.upsample_kernel_sizes, strict=True):
        if rate <= 0 or kernel < rate or (kernel - rate) % 2:
            raise ValueError(f"upsample kernel {kernel} must be >= rate {rate} and have the same parity")
    # Each upsampling stage halves the channels; the last stage must keep at least one.
    if m.upsample_initial_channel >> len(m.upsample_rates) < 1:
        raise ValueError(
            f"upsample_initial_channel ({m.upsample_initial_channel}) must be >= 2**len(upsample_rates) "
            f"({2 ** len(m.upsample_rates)})"
        )


def _check_hop(upsample_rates: list[int], hop_length: int) -> None:
    hop = 1
    for rate in upsample_rates:
        hop *= rate
    if hop != hop_length:
        raise ValueError(f"product of model.upsample_rates ({hop}) must equal data.hop_length ({hop_length})")


def _check_spk2id(data: DataSection) -> None:
    for name, sid in data.spk2id.items():
        if not 0 <= sid < max(data.n_speakers, 1):
            raise ValueError(f"data.spk2id[{clip(name, 40)}] = {sid} is outside 0..n_speakers-1 ({data.n_speakers})")


def _check_size(parameters: int) -> None:
    if parameters > MAX_GENERATOR_PARAMETERS:
        raise ValueError(
            f"the model section describes a generator of about {parameters / 1e9:.1f} billion parameters "
            f"(limit {MAX_GENERATOR_PARAMETERS / 1e9:.0f} billion): check hidden_channels, filter_channels, "
            "n_layers and upsample_initial_channel"
        )


def _attention_stack_parameters(model: ModelSection | VitsModelSection, layers: int, kernel: int) -> int:
    """Weights of `layers` attention + FFN layers (q, k, v, o projections and two convolutions)."""
    h, f = model.hidden_channels, model.filter_channels
    return layers * (4 * h * h + 2 * h * f * kernel)


def _decoder_parameters(model: ModelSection | VitsModelSection) -> int:
    """Weights of the HiFi-GAN decoder's upsampling convolutions and residual blocks."""
    convs_per_dilation = 2 if model.resblock == "1" else 1
    channels = model.upsample_initial_channel
    total = model.inter_channels * channels * 7
    for kernel in model.upsample_kernel_sizes:
        out = channels // 2
        total += channels * out * kernel
        for size, dilations in zip(model.resblock_kernel_sizes, model.resblock_dilation_sizes, strict=True):
            total += convs_per_dilation * len(dilations) * out * out * size
        channels = out
    return total


def approx_generator_parameters(config: BertVits2Config) -> int:
    """A lower bound on the generator's parameter count (its dominant layers), computed without building it."""
    m = config.model
    h = m.hidden_channels
    wavenet_layer = 2 * h * h * 5 + 2 * h * h  # dilated conv + res/skip conv of one WaveNet layer
    if m.use_transformer_flow:
        flow = m.n_flow_layer * _attention_stack_parameters(m, m.n_layers_trans_flow, 5)
    else:
        flow = m.n_flow_layer * 4 * wavenet_layer
    text = _attention_stack_parameters(m, m.n_layers, m.kernel_size) + 3 * BERT_DIM * h
    posterior = 16 * wavenet_layer + config.spec_channels * m.inter_channels
    return text + flow + posterior + _decoder_parameters(m) + config.data.n_speakers * m.gin_channels


def approx_vits_parameters(config: VitsConfig) -> int:
    """The same lower bound for an original-VITS generator (4 WaveNet couplings of 4 layers, no BERT)."""
    m = config.model
    h = m.hidden_channels
    wavenet_layer = 2 * h * h * 5 + 2 * h * h
    text = _attention_stack_parameters(m, m.n_layers, m.kernel_size) + m.n_vocab * h
    posterior = 16 * wavenet_layer + config.spec_channels * m.inter_channels
    speakers = config.n_speakers * m.gin_channels if config.multi_speaker else 0
    return text + 16 * wavenet_layer + posterior + _decoder_parameters(m) + speakers


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
    reason = _UNSUPPORTED_REASONS.get(
        normalized, f"vitsrt supports Bert-VITS2 {', '.join(SUPPORTED_VERSIONS[:-1])} and {SUPPORTED_VERSIONS[-1]}")
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


def _read_config_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file only (vitsrt.files), at most MAX_CONFIG_BYTES."""
    try:
        with open_regular(path) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except NotRegularFileError as exc:
        if exc.kind == "a directory":
            raise ConfigError(f"{path} is a directory, not a config file") from None
        raise ConfigError(f"{path} is not a regular file (a FIFO, device or socket cannot be a config)") from None
    except FileNotFoundError:
        raise ConfigError(f"config not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    # Read one byte past the cap: a file that grows after the check is still refused.
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB; not a config.json")
    return data


def load_config(path: str | Path, default_family: str = BERT_VITS2_FAMILY) -> ModelConfig:
    """Read and validate a config.json; any problem becomes a one-line ConfigError. A file without a
    top-level "family" describes `default_family` (upstream configs never say; a checkpoint's keys can)."""
    path = Path(path)
    data = _read_config_bytes(path)
    try:
        raw: Any = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a config.json") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's 4300-digit limit
        raise ConfigError(f"{path} is not usable JSON: {_shown(str(exc).split(':')[0])}") from None
    return parse_config(raw, source=str(path), default_family=default_family)


def _shown(text: str, limit: int = 80) -> str:
    """Short printable text as is; anything else (long, newlines) through clip()."""
    return text if len(text) <= limit and text.isprintable() else clip(text, limit)


def config_family(raw: dict[str, Any], source: str = "config", default: str = BERT_VITS2_FAMILY) -> str:
    """The model family a parsed config.json describes: its top-level "family", `default` when absent."""
    family = raw.get("family", default)
    if family not in (BERT_VITS2_FAMILY, VITS_FAMILY):
        raise ConfigError(
            f"{source}: unknown model family {_shown(str(family))!r}; known: {BERT_VITS2_FAMILY}, {VITS_FAMILY}"
        )
    return family


def parse_config(raw: Any, source: str = "config", default_family: str = BERT_VITS2_FAMILY) -> ModelConfig:
    """A Bert-VITS2 or (``"family": "vits"``) original-VITS config; any problem is a one-line ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level")
    family = config_family(raw, source, default_family)
    kind: type[ModelConfig] = VitsConfig if family == VITS_FAMILY else BertVits2Config
    try:
        config = kind.model_validate({**raw, "family": family} if family == VITS_FAMILY else raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        # The location can hold keys from the file (spk2id names): shown clipped.
        where = _shown(".".join(str(p) for p in first["loc"]) or "(top level)")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{source}: invalid {where}: {message}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None
    if isinstance(config, BertVits2Config) and config.version is not None:
        check_supported(config.version)
    return config
