"""Build our synthesizer from an upstream `config.json` + `G_*.pth` pair, checking every step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vitsrt.config import BertVits2Config, check_supported, load_config, version_from_state_dict_keys
from vitsrt.errors import CheckpointError, ConfigError
from vitsrt.train.checkpoint import extract_state_dict, load_state_dict_checked, read_checkpoint
from vitsrt.train.models.synthesizer import SymbolSizes, SynthesizerTrn


@dataclass
class LoadedGenerator:
    model: SynthesizerTrn
    config: BertVits2Config
    version: str
    version_source: str  # "config", "checkpoint keys" or "config and checkpoint keys"
    iteration: int | None
    learning_rate: float | None
    state_dict: dict[str, torch.Tensor]


def resolve_version(config: BertVits2Config, keys: set[str]) -> tuple[str, str]:
    """The model version from the config's `version` and the checkpoint's keys; unsupported -> ConfigError."""
    from_keys = version_from_state_dict_keys(keys)
    if from_keys is not None and from_keys in ("1", "2.1", "2.2"):
        check_supported(from_keys)  # raises with the reason, whatever the config claims
    if config.version is not None:
        version = check_supported(config.version)
        return version, "config and checkpoint keys" if from_keys else "config"
    if from_keys is None:
        raise CheckpointError("cannot tell the model version: no `version` in the config and no text-encoder keys")
    return from_keys, "checkpoint keys"


def load_generator(checkpoint: str | Path, config: str | Path | BertVits2Config) -> LoadedGenerator:
    config = config if isinstance(config, BertVits2Config) else load_config(config)
    raw = read_checkpoint(checkpoint)
    state = extract_state_dict(raw, source=str(checkpoint))
    version, source = resolve_version(config, set(state))
    try:
        model = SynthesizerTrn(config, SymbolSizes.from_state_dict(state))
    except ValueError as exc:
        raise ConfigError(f"cannot build the model from the config: {exc}") from None
    load_state_dict_checked(model, state, source=str(checkpoint))
    model.eval()
    iteration = raw.get("iteration") if isinstance(raw, dict) else None
    learning_rate = raw.get("learning_rate") if isinstance(raw, dict) else None
    return LoadedGenerator(
        model=model,
        config=config,
        version=version,
        version_source=source,
        iteration=int(iteration) if isinstance(iteration, int) else None,
        learning_rate=float(learning_rate) if isinstance(learning_rate, int | float) else None,
        state_dict=state,
    )
