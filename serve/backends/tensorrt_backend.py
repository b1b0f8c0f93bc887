"""Native TensorRT backend: the voice's plans for this GPU, run with the CUDA runtime of cuda-python.

Per stage one deserialized engine and one execution context per optimization profile (the decoder has a
tight "windows" profile and a "one-shot" one; see :mod:`vitsrt.export.tensorrt_build`). A call picks the
tightest profile that holds its shapes, sets every input shape (``set_input_shape``), binds grow-only
device buffers (``set_tensor_address``), copies inputs in, runs ``execute_async_v3`` on the backend's
stream and copies outputs out; all asynchronous on one stream with a single synchronisation at the end.

CUDA graphs: streaming decodes the same few window shapes over and over (first window + context,
window + 2*context, at the batch sizes the scheduler forms). For the decoder's window profile, a shape
seen twice is captured once (``cudaStreamBeginCapture`` around ``execute_async_v3``) and replayed with
``cudaGraphLaunch`` afterwards, which removes the per-layer launch overhead that dominates small windows.
Buffers of that profile are allocated at its maximum shape up front, so captured addresses never move.

Why cuda-python rather than torch or cupy: it is the thinnest dependency (no second CUDA runtime or
allocator in the process) and is what TensorRT's own Python samples use. Imported lazily: the engine's
other backends never load CUDA.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.errors import VitsrtError, VoiceError
from vitsrt.serve.backends.base import backend_options
from vitsrt.stages import family
from vitsrt.voice import EngineKey, Precision, Voice

log = logging.getLogger(__name__)

MAX_CUDA_GRAPHS = 64  # per stage: window shapes x batch sizes seen in practice stay well below this


@dataclass
class _Buffer:
    pointer: int = 0
    nbytes: int = 0


@dataclass
class _ProfileContext:
    index: int
    context: Any
    ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    buffers: dict[str, _Buffer] = field(default_factory=dict)
    graphs: dict[tuple, Any] = field(default_factory=dict)  # shape signature -> cudaGraphExec_t
    seen: dict[tuple, int] = field(default_factory=dict)
    capture: bool = False

    def holds(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        for name, shape in shapes.items():
            lo, _, hi = self.ranges[name]
            if len(shape) != len(lo) or any(not (a <= d <= b) for a, d, b in zip(lo, shape, hi, strict=True)):
                return False
        return True

    def volume(self) -> int:
        return sum(int(np.prod(hi)) for _, _, hi in self.ranges.values())


class _Stage:
    def __init__(self, name: str, engine: Any, trt: Any, stream: Any, cuda_graphs: bool):
        self.name = name
        self.engine = engine
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(i)
            self.dtypes[tensor] = np.dtype(trt.nptype(engine.get_tensor_dtype(tensor)))
            (self.inputs if engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT else self.outputs).append(tensor)
        self.profiles: list[_ProfileContext] = []
        for index in range(engine.num_optimization_profiles):
            context = engine.create_execution_context()
            context.set_optimization_profile_async(index, int(stream))
            ranges = {}
            for tensor in self.inputs:
                lo, opt, hi = engine.get_tensor_profile_shape(tensor, index)
                ranges[tensor] = (tuple(lo), tuple(opt), tuple(hi))
            self.profiles.append(_ProfileContext(index, context, ranges))
        # Tightest first: a window-sized call uses the window profile even if the one-shot one holds it.
        self.profiles.sort(key=_ProfileContext.volume)
        if cuda_graphs and name == "decoder":
            self.profiles[0].capture = True  # the window profile (or the only one)

    def pick(self, shapes: dict[str, tuple[int, ...]]) -> _ProfileContext:
        for profile in self.profiles:
            if profile.holds(shapes):
                return profile
        ranges = {n: (r[0], r[2]) for n, r in self.profiles[-1].ranges.items()}
        raise VitsrtError(f"{self.name}: shapes {shapes} are outside every TensorRT profile {ranges}; "
                          "rebuild the plans with larger --max-batch/--max-text-len/--max-frames")


class TensorRTOptions(BaseModel):
    """``--backend tensorrt``: which plans (precision, or an exact key) on which GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precision: Precision = "fp32"
    device_id: int = Field(default=0, ge=0)
    engine_key: EngineKey | None = None  # None: this GPU and TensorRT version at `precision`
    cuda_graphs: bool = True


class TensorRTBackend:
    """StageBackend over TensorRT plans recorded in voice.json for this GPU, TensorRT version and precision."""

    Options: ClassVar[type[TensorRTOptions]] = TensorRTOptions

    def __init__(self, voice: Voice, options: TensorRTOptions | None = None, **fields: Any):
        options = backend_options(TensorRTOptions, options, fields, "the tensorrt backend")
        precision, device_id, engine_key, cuda_graphs = (
            options.precision, options.device_id, options.engine_key, options.cuda_graphs
        )
        from vitsrt.serve.backends.tensorrt_runtime import (
            TensorRTLogger,
            cuda_check,
            detect_engine_key,
            import_cudart,
            import_tensorrt,
        )

        try:
            trt = import_tensorrt()
            self._cudart = import_cudart()
        except VitsrtError as exc:
            raise VoiceError(str(exc)) from None
        self._trt, self._check = trt, cuda_check
        cuda_check(self._cudart.cudaSetDevice(device_id))
        key = engine_key or detect_engine_key(precision, trt, device_id)
        plans = voice.engine_paths(key)
        if not plans:
            raise VoiceError(
                f"voice {voice.name!r} has no TensorRT plans for {key.gpu_name} (sm{key.compute_capability}, "
                f"TensorRT {key.trt_version}, {key.precision}): run `vitsrt build-engines {voice.root} "
                f"--precision {key.precision}` on this machine"
            )
        self.name = f"tensorrt-{key.precision}"
        self.key = key
        self._lock = threading.Lock()
        self._stream = cuda_check(self._cudart.cudaStreamCreate())
        self._logger = TensorRTLogger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._stages: dict[str, _Stage] = {}
        for stage, path in plans.items():
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise VoiceError(f"{path}: TensorRT cannot deserialize this plan (built for another version?)")
            self._stages[stage] = _Stage(stage, engine, trt, self._stream, cuda_graphs)
            for profile in self._stages[stage].profiles:
                if profile.capture:
                    self._preallocate(self._stages[stage], profile)
        missing = [s for s in family(voice.manifest.model.family).required if s not in self._stages]
        if missing:
            raise VoiceError(f"TensorRT plans for {missing} are missing for {key.gpu_name}; rebuild them")
        log.info("tensorrt backend for %s on %s: %s", voice.name, key.gpu_name, sorted(self._stages))

    # ----- memory ------------------------------------------------------------------------------------

    def _ensure(self, profile: _ProfileContext, tensor: str, nbytes: int) -> int:
        buffer = profile.buffers.setdefault(tensor, _Buffer())
        if buffer.nbytes < nbytes:
            if profile.graphs:  # captured graphs hold the old address: drop them
                self._drop_graphs(profile)
            if buffer.pointer:
                self._check(self._cudart.cudaFree(buffer.pointer))
            size = max(nbytes, 256)
            buffer.pointer = int(self._check(self._cudart.cudaMalloc(size)))
            buffer.nbytes = size
        return buffer.pointer

    def _preallocate(self, stage: _Stage, profile: _ProfileContext) -> None:
        """Size a capturing profile's buffers for its largest shapes, so graph addresses stay valid."""
        context = profile.context
        for tensor in stage.inputs:
            shape = profile.ranges[tensor][2]
            context.set_input_shape(tensor, shape)
            self._ensure(profile, tensor, int(np.prod(shape)) * stage.dtypes[tensor].itemsize)
        for tensor in stage.outputs:
            shape = tuple(context.get_tensor_shape(tensor))
            self._ensure(profile, tensor, int(np.prod(shape)) * stage.dtypes[tensor].itemsize)

    def _drop_graphs(self, profile: _ProfileContext) -> None:
        for graph_exec in profile.graphs.values():
            self._cudart.cudaGraphExecDestroy(graph_exec)
        profile.graphs.clear()

    # ----- running -----------------------------------------------------------------------------------

    def has_stage(self, stage: str) -> bool:
        return stage in self._stages

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:  # one stream, one set of buffers: calls are serialised (the engine has one worker)
            return self._run(self._stages[stage], inputs)

    def _run(self, stage: _Stage, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, check, stream = self._cudart, self._check, self._stream
        arrays = {n: np.ascontiguousarray(inputs[n], dtype=stage.dtypes[n]) for n in stage.inputs}
        shapes = {n: tuple(a.shape) for n, a in arrays.items()}
        profile = stage.pick(shapes)
        context = profile.context
        for name, array in arrays.items():
            if not context.set_input_shape(name, array.shape):
                raise VitsrtError(f"{stage.name}: TensorRT refused shape {array.shape} for {name!r}")
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name, array in arrays.items():
            pointer = self._ensure(profile, name, array.nbytes)
            context.set_tensor_address(name, pointer)
            check(cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, to_device, stream))
        results = {}
        for name in stage.outputs:
            shape = tuple(context.get_tensor_shape(name))
            results[name] = np.empty(shape, dtype=stage.dtypes[name])
            context.set_tensor_address(name, self._ensure(profile, name, results[name].nbytes))
        self._execute(profile, shapes)
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in results.items():
            check(cudart.cudaMemcpyAsync(array.ctypes.data, profile.buffers[name].pointer, array.nbytes, to_host,
                                         stream))
        check(cudart.cudaStreamSynchronize(stream))
        return results

    def _execute(self, profile: _ProfileContext, shapes: dict[str, tuple[int, ...]]) -> None:
        cudart, check, stream = self._cudart, self._check, self._stream
        signature = tuple(sorted(shapes.items()))
        graph_exec = profile.graphs.get(signature)
        if graph_exec is not None:
            check(cudart.cudaGraphLaunch(graph_exec, stream))
            return
        seen = profile.seen.get(signature, 0) + 1
        profile.seen[signature] = seen
        # Capture on the second sighting: the first run after a shape change does TensorRT's own setup,
        # which must not be recorded; one-off shapes (utterance tails) are never captured.
        if profile.capture and seen == 2 and len(profile.graphs) < MAX_CUDA_GRAPHS:
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            check(cudart.cudaStreamBeginCapture(stream, mode))
            ok = profile.context.execute_async_v3(int(stream))
            graph = check(cudart.cudaStreamEndCapture(stream))
            if ok:
                graph_exec = check(cudart.cudaGraphInstantiate(graph, 0))
                check(cudart.cudaGraphDestroy(graph))
                profile.graphs[signature] = graph_exec
                check(cudart.cudaGraphLaunch(graph_exec, stream))
                return
            check(cudart.cudaGraphDestroy(graph))
            log.warning("decoder: CUDA graph capture failed for %s; running uncaptured", signature)
            profile.capture = False
        if not profile.context.execute_async_v3(int(stream)):
            raise VitsrtError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def close(self) -> None:
        with self._lock:
            for stage in self._stages.values():
                for profile in stage.profiles:
                    self._drop_graphs(profile)
                    for buffer in profile.buffers.values():
                        if buffer.pointer:
                            self._cudart.cudaFree(buffer.pointer)
                    profile.buffers.clear()
            self._stages.clear()
            if getattr(self, "_stream", None) is not None:
                self._cudart.cudaStreamDestroy(self._stream)
                self._stream = None
