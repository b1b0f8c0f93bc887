"""ONNX Runtime backend: the voice's stage graphs in an :class:`OrtRunner`, on CPU, CUDA or the TensorRT EP."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vitsrt.serve.backends.base import backend_options
from vitsrt.serve.backends.ort_runner import OrtOptions, OrtRunner
from vitsrt.voice import Voice


class OnnxRuntimeBackend:
    """Runs the voice's stage graphs with onnxruntime. Outputs are returned by their graph names."""

    Options: ClassVar[type[OrtOptions]] = OrtOptions

    def __init__(self, voice: Voice, options: OrtOptions | None = None, **fields: Any):
        options = backend_options(OrtOptions, options, fields, "the onnxruntime backend")
        self.name = f"onnxruntime-{options.device}"
        self.device = options.device
        self._runner = OrtRunner.from_voice(voice, **options.model_dump())

    def has_stage(self, stage: str) -> bool:
        return self._runner.has(stage)

    def input_names(self, stage: str) -> list[str]:
        return self._runner.input_names(stage)

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._runner.run(stage, inputs)

    def close(self) -> None:
        self._runner.close()
