"""The one way vitsrt opens ONNX Runtime sessions: the engine's onnxruntime backend, export verification and
the Triton Python stage model all run stage graphs through :class:`OrtRunner`.

On CPU the decoder runs rewritten (:mod:`vitsrt.serve.backends.decoder_rewrite`): polyphase transposed convs,
and for an unpadded call no mask multiplies; the copy for padded calls is opened when the first one comes.

Graphs come from a voice bundle (:meth:`OrtRunner.from_voice`), from a directory of ``<stage>.onnx`` files
(:meth:`OrtRunner.from_dir`, no manifest needed: export checks graphs before it writes one) or from any
``{stage: path}`` mapping (a Triton model directory holds one graph).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.errors import VitsrtError, VoiceError
from vitsrt.serve.backends.base import parse_options
from vitsrt.serve.backends.decoder_rewrite import MASK_INPUT, rewritten_decoder
from vitsrt.stages import STAGE_NAMES
from vitsrt.voice import Voice, load_voice

__all__ = ["OrtOptions", "OrtRunner", "providers_for", "session_options"]

log = logging.getLogger(__name__)

OrtDevice = Literal["cpu", "cuda", "tensorrt"]


class OrtOptions(BaseModel):
    """How sessions run: the onnxruntime backend's options (``--backend onnxruntime[-cuda|-tensorrt]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: OrtDevice = "cpu"
    device_id: int = Field(default=0, ge=0)
    intra_op_threads: int | None = Field(default=None, ge=0, description="None or 0: onnxruntime's default")
    inter_op_threads: int | None = Field(default=1, ge=0)
    spinning: bool = False
    rewrite_decoder: bool = Field(default=True, description="on CPU, run the decoder graph rewritten by "
                                  "vitsrt.serve.backends.decoder_rewrite (faster, equal within float rounding)")


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
        # engine worker, the server's event loop, other sessions (and, in verification, the torch reference).
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


def _open(path: Path, options: ort.SessionOptions, providers: list, graph: bytes | None = None) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(graph or os.fspath(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise VoiceError(f"{path}: onnxruntime cannot load this graph ({str(exc).splitlines()[0]})") from None


class OrtRunner:
    """One onnxruntime session per stage graph, run by stage name on a dict of numpy arrays.

    ``quiet`` keeps onnxruntime's own warnings out of the log (export and tests run many sessions);
    ``trt_cache_dir`` is where the TensorRT execution provider keeps the engines it builds.
    """

    def __init__(
        self,
        graphs: Mapping[str, str | os.PathLike[str]],
        *,
        voice: Voice | None = None,
        quiet: bool = False,
        trt_cache_dir: Path | None = None,
        **options: object,
    ) -> None:
        self.options = parse_options(OrtOptions, options, "onnxruntime")
        o = self.options
        session_opts = session_options(o.intra_op_threads, o.inter_op_threads, o.spinning)
        if quiet:
            session_opts.log_severity_level = 3
        providers = providers_for(o.device, o.device_id, trt_cache_dir)
        self._open_args = (session_opts, providers)
        self._graphs = {stage: Path(path) for stage, path in graphs.items()}
        unpadded = self._open_rewritten("decoder", unpadded=True) if "decoder" in self._graphs else None
        self._unpadded = {} if unpadded is None else {"decoder": unpadded}
        self._sessions = {s: _open(p, *self._open_args) for s, p in self._graphs.items() if s not in self._unpadded}
        self._lock = threading.Lock()
        interfaces = {**self._unpadded, **self._sessions}
        self._inputs = {s: [i.name for i in session.get_inputs()] for s, session in interfaces.items()}
        self._outputs = {s: [o.name for o in session.get_outputs()] for s, session in interfaces.items()}
        self._ranks = {s: {i.name: len(i.shape) for i in session.get_inputs()} for s, session in interfaces.items()}
        self.voice = voice  # the bundle whose manifest describes these graphs, if any
        log.debug("onnxruntime sessions %s on %s", list(self._graphs), providers)

    def _open_rewritten(self, stage: str, unpadded: bool) -> ort.InferenceSession | None:
        """A session on the stage's graph rewritten for the CPU (None: not on CPU, not asked, not rewritable)."""
        path = self._graphs[stage]
        if self.options.device != "cpu" or not self.options.rewrite_decoder:
            return None
        try:
            graph = rewritten_decoder(path, unpadded)
        except Exception as exc:  # a graph the rewrite does not understand still runs as written
            log.warning("%s: not rewritten (%s); running it as written", path, exc)
            return None
        return None if graph is None else _open(path, *self._open_args, graph=graph)

    def _session(self, stage: str, feeds: Mapping[str, np.ndarray]) -> ort.InferenceSession:
        """The unpadded decoder for a call whose mask is all ones, else the stage's session (the rewritten
        decoder for padded calls is opened by the first one)."""
        unpadded = self._unpadded.get(stage)
        if unpadded is not None and bool(np.all(feeds[MASK_INPUT] == 1)):
            return unpadded
        session = self._sessions.get(stage)
        if session is None:
            with self._lock:
                if stage not in self._sessions:
                    log.info("%s: opening the decoder for padded calls", self._graphs[stage])
                    padded = self._open_rewritten(stage, unpadded=False)
                    self._sessions[stage] = padded or _open(self._graphs[stage], *self._open_args)
                session = self._sessions[stage]
        return session

    @classmethod
    def from_voice(cls, voice: Voice | str | os.PathLike[str], **kwargs: object) -> OrtRunner:
        """Sessions for every graph a voice bundle lists (TensorRT EP engines cached inside the bundle)."""
        voice = voice if isinstance(voice, Voice) else load_voice(voice)
        kwargs.setdefault("trt_cache_dir", voice.root / "engines" / "ort-trt-cache")
        return cls({stage: voice.root / spec.file for stage, spec in voice.manifest.graphs.items()}, voice=voice,
                   **kwargs)

    @classmethod
    def from_dir(cls, graph_dir: str | os.PathLike[str], **kwargs: object) -> OrtRunner:
        """Sessions for every ``<stage>.onnx`` in a directory (no manifest needed)."""
        root = Path(graph_dir)
        return cls({s: root / f"{s}.onnx" for s in STAGE_NAMES if (root / f"{s}.onnx").is_file()}, **kwargs)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self._graphs)

    def has(self, stage: str) -> bool:
        return stage in self._graphs

    def input_names(self, stage: str) -> list[str]:
        return self._inputs[stage]

    def output_names(self, stage: str) -> list[str]:
        return self._outputs[stage]

    def input_ranks(self, stage: str) -> dict[str, int]:
        """Each input's rank as the graph declares it (a Triton stage model reshapes [B, 1] to [B] by it)."""
        return self._ranks[stage]

    def run(self, stage: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs by name, in graph order; extra feeds are ignored, a missing one is an error."""
        missing = [name for name in self._inputs[stage] if name not in feeds]
        if missing:
            raise VitsrtError(f"{stage}: inputs {missing} are missing")
        session = self._session(stage, feeds)
        values = session.run(self._outputs[stage], {n: feeds[n] for n in self._inputs[stage]})
        return dict(zip(self._outputs[stage], values, strict=True))

    def close(self) -> None:
        self._sessions.clear()
        self._unpadded.clear()
