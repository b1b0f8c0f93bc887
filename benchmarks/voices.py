"""Voices to benchmark without shipping weights: a random default-size Bert-VITS2 2.3 voice, and the fixture.

Speed depends on the architecture, not on what the weights learned, so a randomly initialised generator at
upstream's default sizes (hidden 192, decoder 512 channels, 44.1 kHz, six transformer-flow layers) costs
exactly what a trained voice of that shape costs. It is built once per seed and cached: the checkpoint
(for the torch eager baseline) and its exported voice bundle (for the engine) sit side by side, so every
target runs the very same weights.

Needs torch (it builds and exports a model); the benchmark CLI imports this only when asked for one.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitsrt.errors import VitsrtError

log = logging.getLogger(__name__)

# Upstream Bert-VITS2 2.3 default sizes come from the config schema's defaults; only the speaker table and
# the transformer-flow depth are spelled out (the default config.json ships 6 flow layers).
DEFAULT_SIZE_SPEAKERS = {"s0": 0, "s1": 1, "s2": 2, "s3": 3}


def default_size_config() -> dict[str, Any]:
    """The raw config.json of a default-size Bert-VITS2 2.3 generator with four speakers."""
    return {
        "version": "2.3",
        "data": {"n_speakers": len(DEFAULT_SIZE_SPEAKERS), "spk2id": dict(DEFAULT_SIZE_SPEAKERS)},
        "model": {"n_layers_trans_flow": 6},
    }


def default_cache_dir() -> Path:
    """Where built voices are kept between runs ($VITSRT_BENCH_CACHE, else the user's cache directory)."""
    explicit = os.environ.get("VITSRT_BENCH_CACHE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vitsrt" / "bench"


@dataclass(frozen=True)
class BenchVoice:
    """A voice bundle plus the checkpoint/config it was exported from (for the torch target)."""

    name: str
    voice_dir: Path
    checkpoint: Path
    config: Path


def _scale_decoder_gains(model: Any) -> None:
    """Give the untrained decoder unit-variance weights (std 1/sqrt(fan-in)).

    With PyTorch's default init the random decoder shrinks its input to a near-constant offset; scaling the
    weight-norm gains keeps the signal alive through every layer, so the audio (and any clipping or
    denormal slow paths a backend might hit) looks like a trained decoder's rather than silence.
    """
    import torch

    with torch.no_grad():
        for module in model.dec.modules():
            gain = getattr(module, "weight_g", None)
            if gain is None:
                continue
            if isinstance(module, torch.nn.ConvTranspose1d):
                gain.mul_(math.sqrt(3 * module.stride[0] * module.out_channels / module.in_channels))
            else:
                gain.mul_(math.sqrt(3))


def build_random_checkpoint(directory: Path, raw_config: dict[str, Any], seed: int = 0) -> tuple[Path, Path]:
    """Save a randomly initialised generator (upstream checkpoint format) and its config.json."""
    import torch

    from vitsrt.config import parse_config
    from vitsrt.train.checkpoint import save_checkpoint
    from vitsrt.train.models.synthesizer import SynthesizerTrn

    config = parse_config(raw_config)
    torch.manual_seed(seed)
    model = SynthesizerTrn(config).eval()
    _scale_decoder_gains(model)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint, config_path = directory / "G_0.pth", directory / "config.json"
    save_checkpoint(checkpoint, model)
    config_path.write_text(config.to_json())
    return checkpoint, config_path


def random_default_voice(cache_dir: Path | None = None, seed: int = 0) -> BenchVoice:
    """The random default-size 2.3 voice for `seed`, built and exported on first use, then reused."""
    from vitsrt.export.bundle import export_voice
    from vitsrt.voice import MANIFEST_NAME

    name = f"default23-seed{seed}"
    root = (cache_dir or default_cache_dir()) / name
    checkpoint, config = root / "checkpoint" / "G_0.pth", root / "checkpoint" / "config.json"
    voice_dir = root / "voice"
    if not (checkpoint.is_file() and config.is_file()):
        log.info("building a random default-size Bert-VITS2 2.3 generator (seed %d) in %s", seed, root)
        build_random_checkpoint(checkpoint.parent, default_size_config(), seed=seed)
    # A bundle from before bundles carried the generator's weights is exported again (the torch backends read them).
    if not (voice_dir / MANIFEST_NAME).is_file() or not (voice_dir / "weights.safetensors").is_file():
        log.info("exporting it to a voice bundle (takes a minute on a small CPU)")
        export_voice(checkpoint, config, voice_dir, name=name, verify=False, force=True)
    return BenchVoice(name, voice_dir, checkpoint, config)


def exported_voice(checkpoint: Path, config: Path, cache_dir: Path | None = None, name: str = "fixture") -> BenchVoice:
    """Export `checkpoint` once into the cache (keyed by name and file size/mtime) and return the bundle."""
    from vitsrt.export.bundle import export_voice
    from vitsrt.voice import MANIFEST_NAME

    if not checkpoint.is_file() or not config.is_file():
        raise VitsrtError(f"checkpoint {checkpoint} or config {config} not found")
    stat = checkpoint.stat()
    voice_dir = (cache_dir or default_cache_dir()) / f"{name}-{stat.st_size}-{int(stat.st_mtime)}" / "voice"
    if not (voice_dir / MANIFEST_NAME).is_file():
        log.info("exporting %s to %s", checkpoint, voice_dir)
        export_voice(checkpoint, config, voice_dir, name=name, verify=False, force=True)
    return BenchVoice(name, voice_dir, checkpoint, config)
