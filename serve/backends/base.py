"""The one small interface every backend implements, and the factory that picks one by name."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from vitsrt.errors import VoiceError
from vitsrt.voice import Voice

# The graph contract (ARCHITECTURE.md): stage -> (input names, output names).
STAGE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "encoder": (
        ("phone_ids", "tone_ids", "language_ids", "lengths", "bert", "ja_bert", "en_bert", "sid"),
        ("enc", "m_p", "logs_p", "x_mask", "g"),
    ),
    "duration": (("enc", "x_mask", "g", "sdp_noise", "sdp_ratio"), ("logw",)),
    "duration_dp_only": (("enc", "x_mask", "g"), ("logw",)),
    "flow": (("z_p", "y_mask", "g"), ("z",)),
    "decoder": (("z", "y_mask", "g"), ("audio",)),
}


class StageBackend(Protocol):
    """Runs the stages of one voice. Implementations must be safe to call from one worker thread."""

    name: str

    def has_stage(self, stage: str) -> bool: ...

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt", "triton", "torch", "torch-cuda")


def open_backend(name: str, voice: Voice, **options: Any) -> StageBackend:
    """Instantiate a backend for a voice. Heavy imports (torch, CUDA) happen only for the chosen one."""
    if name in ("onnxruntime", "ort", "onnxruntime-cpu"):
        from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(voice, device="cpu", **options)
    if name in ("onnxruntime-cuda", "ort-cuda"):
        from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(voice, device="cuda", **options)
    if name in ("onnxruntime-tensorrt", "ort-trt"):
        from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(voice, device="tensorrt", **options)
    if name in ("torch", "torch-cuda"):
        from vitsrt.serve.backends.torch_backend import TorchBackend

        return TorchBackend(voice, device="cuda" if name == "torch-cuda" else options.pop("device", "cpu"), **options)
    if name in ("tensorrt", "trt"):
        from vitsrt.serve.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(voice, **options)
    if name == "triton":
        from vitsrt.serve.backends.triton_backend import TritonBackend

        return TritonBackend(voice, **options)
    raise VoiceError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
