"""Build our synthesizer from an upstream `config.json` + `G_*.pth` pair, checking every step.

Bert-VITS2 (upstream Bert-VITS2 2.0/2.2/2.3; 2.2 adds the CLAP emotion branch) and original VITS (upstream
VITS, piper, configs with ``"family": "vits"``) both load here. A config without a family is Bert-VITS2's
unless the checkpoint has VITS's layout (a phone table and no tone table), which upstream VITS checkpoints have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from vitsrt.config import (
    BERT_VITS2_FAMILY,
    VITS_FAMILY,
    BertVits2Config,
    ModelConfig,
    VitsConfig,
    check_supported,
    load_config,
    version_from_state_dict_keys,
)
from vitsrt.errors import CheckpointError, ConfigError
from vitsrt.train.checkpoint import extract_state_dict, load_state_dict_checked, read_checkpoint
from vitsrt.train.models.emotion import normalize_emotion_state
from vitsrt.train.models.synthesizer import SymbolSizes, SynthesizerTrn, emotion_version
from vitsrt.train.models.vits import FLOW_COUPLINGS, VitsSynthesizer

# ModelInfo.version of an original-VITS voice: upstream VITS has one generation (piper trains the same model).
VITS_VERSION = "1"
# The Bert-VITS2 version whose text encoder has the CLAP emotion branch (and takes `emo`).
EMOTION_VERSION = "2.2"


@dataclass
class LoadedGenerator:
    model: SynthesizerTrn | VitsSynthesizer
    config: ModelConfig
    version: str
    version_source: str  # "config", "checkpoint keys" or "config and checkpoint keys" ("family" for VITS)
    iteration: int | None
    learning_rate: float | None
    state_dict: dict[str, torch.Tensor]

    @property
    def family(self) -> str:
        """The stage contract's family name (``ModelInfo.family``)."""
        return VITS_FAMILY if isinstance(self.config, VitsConfig) else BERT_VITS2_FAMILY


def family_from_state_dict_keys(keys: set[str]) -> str:
    """"vits" for a generator with a phone table and no tone table (upstream VITS / piper), else "bert-vits2"."""
    if "enc_p.emb.weight" in keys and "enc_p.tone_emb.weight" not in keys and "enc_p.bert_proj.weight" not in keys:
        return VITS_FAMILY
    return BERT_VITS2_FAMILY


def resolve_version(config: BertVits2Config, keys: set[str]) -> tuple[str, str]:
    """The model version from the config's `version` and the checkpoint's keys; unsupported -> ConfigError.
    The emotion branch tells 2.2 apart: a config and a checkpoint that disagree about it -> CheckpointError."""
    from_keys = version_from_state_dict_keys(keys)
    if from_keys is not None and from_keys in ("1", "2.1", "2.2"):
        check_supported(from_keys)  # raises with the reason, whatever the config claims
    if config.version is not None:
        version = check_supported(config.version)
        if from_keys is not None and (from_keys == EMOTION_VERSION) != (version == EMOTION_VERSION):
            has = "has" if from_keys == EMOTION_VERSION else "lacks"
            raise CheckpointError(
                f"the config says version {config.version} but the checkpoint {has} 2.2's emotion branch "
                "(enc_p.in_feature_net, enc_p.emo_vq); the config does not describe this checkpoint"
            )
        return version, "config and checkpoint keys" if from_keys else "config"
    if from_keys is None:
        raise CheckpointError("cannot tell the model version: no `version` in the config and no text-encoder keys")
    return from_keys, "checkpoint keys"


# Weight-normed convolutions store `weight_v` (upstream), `weight` (norm removed) or a parametrization.
_WEIGHT_NAMES = ("weight_v", "weight", "parametrizations.weight.original1")


def _dimension_checks(config: ModelConfig) -> list[tuple[str, int, str, int, int]]:
    """(config field, its value, tensor key, axis, size the config implies on that axis), key tensors first."""
    m, d = config.model, config.data
    ffn = "enc_p.encoder.ffn_layers.0.conv_1.weight"
    checks = [
        ("model.hidden_channels", m.hidden_channels, "enc_p.emb.weight", 1, m.hidden_channels),
        ("model.inter_channels", m.inter_channels, "dec.conv_pre.weight", 1, m.inter_channels),
        ("model.upsample_initial_channel", m.upsample_initial_channel, "dec.conv_pre.weight", 0,
         m.upsample_initial_channel),
        ("model.filter_channels", m.filter_channels, ffn, 0, m.filter_channels),
        ("model.kernel_size", m.kernel_size, ffn, 2, m.kernel_size),
        ("model.n_heads", m.n_heads, "enc_p.encoder.attn_layers.0.emb_rel_k", 2, m.hidden_channels // m.n_heads),
        ("model.gin_channels", m.gin_channels, "emb_g.weight", 1, m.gin_channels),
        ("data.n_speakers", d.n_speakers, "emb_g.weight", 0, d.n_speakers),
        ("data.filter_length", d.filter_length, "enc_q.pre.weight", 1, config.spec_channels),
    ]
    for i, kernel in enumerate(m.upsample_kernel_sizes):
        checks.append((f"model.upsample_kernel_sizes[{i}]", kernel, f"dec.ups.{i}", 2, kernel))
    return checks


def _count_checks(config: ModelConfig) -> list[tuple[str, int, str]]:
    """(config field, its value, key prefix whose numbered children the config implies)."""
    m = config.model
    if isinstance(config, VitsConfig) or not config.model.use_transformer_flow:
        # WaveNet-coupling flows have 4 couplings; Bert-VITS2's n_flow_layer is then each coupling's WN depth
        flow = ("the coupling count", FLOW_COUPLINGS, "flow.flows.")
    else:
        flow = ("model.n_flow_layer", config.model.n_flow_layer, "flow.flows.")
    checks = [
        ("model.n_layers", m.n_layers, "enc_p.encoder.attn_layers."),
        flow,
        ("len(model.upsample_rates)", len(m.upsample_rates), "dec.ups."),
        ("len(model.upsample_rates) x len(model.resblock_kernel_sizes)",
         len(m.upsample_rates) * len(m.resblock_kernel_sizes), "dec.resblocks."),
    ]
    if isinstance(config, BertVits2Config) and config.model.use_transformer_flow:
        checks.append(("model.n_layers_trans_flow", m.n_layers_trans_flow, "flow.flows.0.enc.attn_layers."))
    return checks


def _tensor(state: dict[str, torch.Tensor], key: str) -> tuple[str, torch.Tensor] | None:
    if key in state:
        return key, state[key]
    for name in _WEIGHT_NAMES:
        if f"{key}.{name}" in state:
            return f"{key}.{name}", state[f"{key}.{name}"]
    return None


def _indices(state: dict[str, torch.Tensor], prefix: str) -> set[int]:
    """The numbers N of the `prefix` + `N.` keys (layers of a ModuleList holding weights)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return {int(found.group(1)) for key in state if (found := pattern.match(key))}


def check_config_fits(config: ModelConfig, state: dict[str, torch.Tensor], checkpoint: str, source: str) -> None:
    """Compare the config's sizes with the checkpoint's tensors before any module is built.

    A config that disagrees (a typo, another model's config, hidden_channels=1e6) is reported by field and
    tensor instead of first allocating a model of the wrong size. Tensors the checkpoint lacks are left to
    the strict load, which names them.
    """
    _check_dimensions(config, state, checkpoint, source)
    _check_counts(config, state, checkpoint, source)
    _check_kinds(config, state, checkpoint, source)


def _check_dimensions(config: ModelConfig, state: dict[str, torch.Tensor], checkpoint: str, source: str) -> None:
    for field, value, key, axis, size in _dimension_checks(config):
        found = _tensor(state, key)
        if found is None:
            continue
        name, tensor = found
        shape = list(tensor.shape)
        if len(shape) > axis and shape[axis] == size:
            continue
        expected = [*shape[:axis], size, *shape[axis + 1 :]] if len(shape) > axis else f"{axis + 1}+ dimensions"
        raise CheckpointError(
            f"{checkpoint}: shape mismatch for {name}: expected {expected} (from {field} = {value} in {source}), "
            f"found {shape}; the config does not describe this checkpoint"
        )


def _check_counts(config: ModelConfig, state: dict[str, torch.Tensor], checkpoint: str, source: str) -> None:
    for field, value, prefix in _count_checks(config):
        layers = _indices(state, prefix)
        if layers and len(layers) != value:
            raise CheckpointError(
                f"{checkpoint}: {source} has {field} = {value} but the checkpoint has {len(layers)} {prefix}N; "
                "the config does not describe this checkpoint"
            )


def _check_kinds(config: ModelConfig, state: dict[str, torch.Tensor], checkpoint: str, source: str) -> None:
    """The flow, duration-predictor and residual-block types, told apart by the keys only one kind has."""
    m = config.model
    resblock_1, resblock_2 = "dec.resblocks.0.convs1.", "dec.resblocks.0.convs."
    kinds = [
        ("model.resblock", f'"{m.resblock}"',
         *((resblock_1, resblock_2) if m.resblock == "1" else (resblock_2, resblock_1))),
    ]
    if isinstance(config, BertVits2Config):
        transformer, residual = "flow.flows.0.enc.attn_layers.", "flow.flows.0.enc.in_layers."
        use = config.model.use_transformer_flow
        kinds.append(("model.use_transformer_flow", str(use).lower(),
                      *((transformer, residual) if use else (residual, transformer))))
    else:
        sdp, dp = "dp.flows.", "dp.conv_1."
        use = config.model.use_sdp
        kinds.append(("model.use_sdp", str(use).lower(), *((sdp, dp) if use else (dp, sdp))))
    for field, shown, implied, other in kinds:
        if any(k.startswith(other) for k in state) and not any(k.startswith(implied) for k in state):
            raise CheckpointError(
                f"{checkpoint}: {source} has {field} = {shown} but the checkpoint has {other}* keys, not {implied}*; "
                "the config does not describe this checkpoint"
            )


def load_generator(checkpoint: str | Path, config: str | Path | ModelConfig) -> LoadedGenerator:
    """The generator of `checkpoint`, built from `config` (a path or a parsed config) and loaded strictly."""
    given = isinstance(config, BertVits2Config | VitsConfig)
    source = "the config" if given else str(config)
    raw = read_checkpoint(checkpoint)
    state = normalize_emotion_state(extract_state_dict(raw, source=str(checkpoint)))
    if not isinstance(config, BertVits2Config | VitsConfig):
        config = load_config(config, default_family=family_from_state_dict_keys(set(state)))
    if isinstance(config, VitsConfig):
        version, version_source = VITS_VERSION, "family"
    else:
        version, version_source = resolve_version(config, set(state))
        if version == EMOTION_VERSION and config.version is None:  # told by the keys: the config says it from now on
            config = config.model_copy(update={"version": version})
    check_config_fits(config, state, str(checkpoint), source)
    try:
        model = _build(config, state)
    except ValueError as exc:
        raise ConfigError(f"cannot build the model from the config: {exc}") from None
    load_state_dict_checked(model, state, source=str(checkpoint), config_source=source)
    model.eval()
    iteration = raw.get("iteration") if isinstance(raw, dict) else None
    learning_rate = raw.get("learning_rate") if isinstance(raw, dict) else None
    return LoadedGenerator(
        model=model,
        config=config,
        version=version,
        version_source=version_source,
        iteration=int(iteration) if isinstance(iteration, int) else None,
        learning_rate=float(learning_rate) if isinstance(learning_rate, int | float) else None,
        state_dict=state,
    )


def _build(config: ModelConfig, state: dict[str, torch.Tensor]) -> SynthesizerTrn | VitsSynthesizer:
    """The model `config` describes, its embedding tables sized as `state`'s."""
    if isinstance(config, VitsConfig):
        table = state.get("enc_p.emb.weight")
        return VitsSynthesizer(config, n_vocab=int(table.shape[0]) if table is not None else None)
    return SynthesizerTrn(config, SymbolSizes.from_state_dict(state), emotion=emotion_version(config))
