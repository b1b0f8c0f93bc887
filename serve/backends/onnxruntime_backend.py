"""ONNX Runtime backend: one InferenceSession per stage graph, on CPU, CUDA or the TensorRT EP."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vitsrt.errors import VoiceError
from vitsrt.voice import STAGES, Voice

log = logging.getLogger(__name__)


def session_options(
    intra_op_threads: int | None, inter_op_threads: int | None = 1, spinning: bool = False
) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    if inter_op_threads:
        options.inter_op_num_threads = inter_op_threads
    if not spinning:
        # Idle intra-op threads sleep instead of spin-waiting for the next call, leaving the cores to the
        # engine worker, the server's event loop and other sessions.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers_for(device: str, device_id: int = 0, trt_cache_dir: Path | None = None) -> list:
    available = set(ort.get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    cuda = (
        "CUDAExecutionProvider",
        # Without HEURISTIC every new utterance length triggers a slow exhaustive cuDNN search.
        {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": True},
    )
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise VoiceError(f"onnxruntime has no CUDA provider here (available: {sorted(available)})")
        return [cuda, "CPUExecutionProvider"]
    if device == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise VoiceError(f"onnxruntime has no TensorRT provider here (available: {sorted(available)})")
        trt = {"device_id": device_id, "trt_fp16_enable": False, "trt_engine_cache_enable": True}
        if trt_cache_dir is not None:
            trt["trt_engine_cache_path"] = str(trt_cache_dir)
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]
    raise VoiceError(f"unknown onnxruntime device {device!r}")


class OnnxRuntimeBackend:
    """Runs the voice's stage graphs with onnxruntime. Outputs are returned by their graph names."""

    def __init__(
        self,
        voice: Voice,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = 1,
        spinning: bool = False,
        device_id: int = 0,
    ):
        self.name = f"onnxruntime-{device}"
        self.device = device
        options = session_options(intra_op_threads, inter_op_threads, spinning)
        providers = providers_for(device, device_id, voice.root / "engines" / "ort-trt-cache")
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._outputs: dict[str, list[str]] = {}
        for stage in STAGES:
            spec = voice.manifest.graphs.get(stage)
            if spec is None:
                continue
            path = voice.root / spec.file
            try:
                session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
                raise VoiceError(f"{path}: onnxruntime cannot load this graph ({str(exc).splitlines()[0]})") from None
            self._sessions[stage] = session
            self._outputs[stage] = [o.name for o in session.get_outputs()]
        log.debug("onnxruntime sessions for %s: %s on %s", voice.name, list(self._sessions), providers)

    def has_stage(self, stage: str) -> bool:
        return stage in self._sessions

    def input_names(self, stage: str) -> list[str]:
        return [i.name for i in self._sessions[stage].get_inputs()]

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions[stage]
        feeds = {i.name: inputs[i.name] for i in session.get_inputs()}
        values = session.run(self._outputs[stage], feeds)
        return dict(zip(self._outputs[stage], values, strict=True))

    def close(self) -> None:
        self._sessions.clear()
