"""PyTorch backend: the same stages run by our generator, from the voice bundle alone (``--backend torch`` on
the CPU, ``--backend torch-cuda`` on a GPU without TensorRT; also the reference the graphs are checked against).

The bundle's ``weights.safetensors`` (written by `vitsrt export` next to the graphs) rebuilds the generator of
the voice's family with no checkpoint or config; ``checkpoint=``/``config=`` still load a training checkpoint
instead (bundles exported before the weights were written). Execution (buckets, CUDA graphs for the decoder's
window shapes, autocast, pinned buffers, a stream per backend) is `vitsrt.train.stage_runner.StageRunner`.
Imported only when chosen: a production server installs onnxruntime, not torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.errors import VoiceError
from vitsrt.serve.backends.base import backend_options
from vitsrt.serve.engine.windows import DEFAULT_POLICY, WindowPolicy
from vitsrt.voice import Voice

WEIGHTS_NAME = "weights.safetensors"  # in the voice directory, beside voice.json


class TorchOptions(BaseModel):
    """``--backend torch[-cuda]``: where the weights come from and how the stages run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: Path | None = Field(None, description="a training checkpoint instead of the bundle's weights")
    config: Path | None = Field(None, description="the checkpoint's config.json (with checkpoint)")
    device: str = "cpu"
    threads: int | None = Field(default=None, ge=0)
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16/fp16: autocast flow and decoder (encoder and durations stay float32)")
    cuda_graphs: bool | None = Field(None, description="replay decoder windows as CUDA graphs (None: on CUDA)")
    buckets: bool | None = Field(None, description="pad lengths and batches to fixed buckets (None: on CUDA)")


def window_input_frames(context: int, policy: WindowPolicy = DEFAULT_POLICY) -> tuple[int, ...]:
    """The decoder input lengths streaming produces (each window size plus context on both sides, and the
    one-shot limit): the fixed shapes the decoder is captured at. Edge windows, with less context, pad up."""
    sizes, size = [policy.first_frames], policy.frames
    while size not in sizes:
        sizes.append(size)
        size = min(size * 2, policy.max_frames)
    shapes = {s + 2 * context for s in sizes}
    if policy.one_shot_frames:
        shapes.add(policy.one_shot_frames)
    return tuple(sorted(shapes))


def weights_metadata(path: Path) -> dict[str, str]:
    """The metadata of a ``weights.safetensors`` (read from its JSON header; no torch needed)."""
    import json
    import struct

    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 * 1024 * 1024:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise VoiceError(f"{path}: not a safetensors file ({exc})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else {}


def _load_model(voice: Voice, options: TorchOptions) -> tuple[Any, str]:
    """(generator, family): from the checkpoint when given, else from the bundle's weights."""
    if options.checkpoint is not None or options.config is not None:
        if options.checkpoint is None or options.config is None:
            raise VoiceError("the torch backend takes checkpoint and config together (or neither: the bundle's "
                             f"{WEIGHTS_NAME})")
        from vitsrt.train.loading import load_generator

        return load_generator(options.checkpoint, options.config).model, voice.manifest.model.family
    from vitsrt.train.stage_runner import generator_from_bundle

    path = voice.root / WEIGHTS_NAME
    if not path.is_file():
        raise VoiceError(f"voice {voice.name!r} has no {WEIGHTS_NAME} (exported before bundles carried weights): "
                         "re-export it with `vitsrt export`, or pass checkpoint=... and config=...")
    model, family_name = generator_from_bundle(path, {s: spec.sha256 for s, spec in voice.manifest.graphs.items()})
    if family_name != voice.manifest.model.family:
        raise VoiceError(f"{path}: weights of a {family_name} model, but the voice is {voice.manifest.model.family}")
    return model, family_name


class TorchBackend:
    """Runs the stage methods of our generator on numpy inputs, with the same masks and contracts as the
    exported graphs (so the engine's host regulation and streaming are shared)."""

    Options: ClassVar[type[TorchOptions]] = TorchOptions

    def __init__(self, voice: Voice, options: TorchOptions | None = None, **fields: Any):
        import torch

        from vitsrt.train.stage_runner import RunnerOptions, StageRunner

        options = backend_options(TorchOptions, options, fields, "the torch backend")
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise VoiceError("torch backend: CUDA requested but torch sees no GPU")
        if options.threads:
            torch.set_num_threads(options.threads)
        self.device = torch.device(options.device)
        self.name = f"torch-{self.device.type}"
        model, family_name = _load_model(voice, options)
        if model.hop_length != voice.manifest.hop_length:
            raise VoiceError("torch backend: the weights and the voice bundle disagree on hop_length")
        runner_options = RunnerOptions(
            device=options.device, precision=options.precision, cuda_graphs=options.cuda_graphs,
            buckets=options.buckets, decode_frames=window_input_frames(voice.manifest.decoder_context_frames))
        self._runner: Any = StageRunner(model, family_name, runner_options, hop=voice.manifest.hop_length)

    @property
    def model(self) -> Any:
        return None if self._runner is None else self._runner.model

    def has_stage(self, stage: str) -> bool:
        return self._runner.has_stage(stage)

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._runner.run(stage, inputs)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner = None
