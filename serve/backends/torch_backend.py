"""PyTorch backend: the same stages run by our SynthesizerTrn from the checkpoint (reference, and GPUs
without TensorRT). Imported only when chosen: a production server installs onnxruntime, not torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.errors import VoiceError
from vitsrt.serve.backends.base import backend_options
from vitsrt.stages import family
from vitsrt.voice import Voice


class TorchOptions(BaseModel):
    """``--backend torch[-cuda]``: the training checkpoint and config a voice bundle does not hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: Path | None = None
    config: Path | None = None
    device: str = "cpu"
    threads: int | None = Field(default=None, ge=0)


class TorchBackend:
    """Runs the stage methods of our synthesizer on numpy inputs, with the same masks and contracts as the
    exported graphs (so the engine's host regulation and streaming are shared)."""

    Options: ClassVar[type[TorchOptions]] = TorchOptions

    def __init__(self, voice: Voice, options: TorchOptions | None = None, **fields: Any):
        import torch

        from vitsrt.train.loading import load_generator

        options = backend_options(TorchOptions, options, fields, "the torch backend")
        checkpoint, config, device, threads = options.checkpoint, options.config, options.device, options.threads
        if checkpoint is None or config is None:
            raise VoiceError("the torch backend needs the voice's checkpoint and config (checkpoint=..., config=...)")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise VoiceError("torch backend: CUDA requested but torch sees no GPU")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        self.model = load_generator(checkpoint, config).model.to(self.device).eval()
        if self.model.hop_length != voice.manifest.hop_length:
            raise VoiceError("torch backend: checkpoint and voice bundle disagree on hop_length")
        self._stages = family(voice.manifest.model.family).names

    def has_stage(self, stage: str) -> bool:
        return stage in self._stages

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in inputs.items()}
        m = self.model
        with torch.inference_mode():
            if stage == "encoder":
                enc, m_p, logs_p, x_mask, g = m.encode(
                    t["phone_ids"], t["lengths"], t["tone_ids"], t["language_ids"],
                    t["bert"], t["ja_bert"], t["en_bert"], t["sid"],
                )
                out = {"enc": enc, "m_p": m_p, "logs_p": logs_p, "x_mask": x_mask, "g": g}
            elif stage == "duration":
                out = {"logw": m.predict_logw(t["enc"], t["x_mask"], t["g"], t["sdp_noise"], t["sdp_ratio"])}
            elif stage == "duration_dp_only":
                out = {"logw": m.predict_logw_dp(t["enc"], t["x_mask"], t["g"])}
            elif stage == "flow":
                out = {"z": m.flow_reverse(t["z_p"], t["y_mask"], t["g"])}
            elif stage == "decoder":
                out = {"audio": m.decode(t["z"], t["y_mask"], t["g"])}
            else:
                raise VoiceError(f"unknown stage {stage!r}")
            return {k: v.float().cpu().numpy() for k, v in out.items()}

    def close(self) -> None:
        self.model = None
