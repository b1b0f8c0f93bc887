"""In-process stand-ins for `tensorrt` and cuda-python's runtime, for testing the TensorRT backend's
orchestration on CPU: profile choice, shape setting, device buffers, copies, CUDA-graph capture/replay.

They implement only the calls the backend makes, with the documented TensorRT 10 / cuda-python shapes
(`(error, value)` tuples, name-based tensor API). A "plan" is JSON naming an ONNX graph and its
profiles; "executing" it runs onnxruntime on the bytes found at the bound device addresses, so a wrong
address, shape or copy shows up as wrong audio. Real-TensorRT tests live in test_tensorrt_engine.py.
"""

from __future__ import annotations

import ctypes
import json
import types
from enum import IntEnum

import numpy as np
import onnxruntime as ort

# ----- cuda-python runtime ---------------------------------------------------------------------------


class _Kind(IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class _Capture(IntEnum):
    cudaStreamCaptureModeThreadLocal = 1


class FakeCuda:
    """Device memory is a dict of bytearrays keyed by fake addresses; one implicit stream."""

    cudaMemcpyKind = _Kind
    cudaStreamCaptureMode = _Capture

    def __init__(self) -> None:
        self.memory: dict[int, bytearray] = {}
        self.next_address = 0x1000
        self.recording: list | None = None
        self.launches = 0
        self.freed = 0

    def _address(self, pointer: int) -> tuple[bytearray, int]:
        for base, block in self.memory.items():
            if base <= pointer < base + len(block):
                return block, pointer - base
        raise AssertionError(f"invalid device address {pointer:#x}")

    def cudaSetDevice(self, device: int):
        return (0,)

    def cudaGetDeviceProperties(self, device: int):
        return 0, types.SimpleNamespace(name=b"Fake GPU 9000\x00\x00", major=8, minor=9)

    def cudaStreamCreate(self):
        return 0, 7

    def cudaStreamDestroy(self, stream):
        return (0,)

    def cudaMalloc(self, size: int):
        address = self.next_address
        self.memory[address] = bytearray(size)
        self.next_address += size + 0x1000
        return 0, address

    def cudaFree(self, pointer: int):
        del self.memory[pointer]
        self.freed += 1
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind, stream):
        if kind == _Kind.cudaMemcpyHostToDevice:
            block, offset = self._address(dst)
            assert offset + count <= len(block), "copy past the end of a device buffer"
            block[offset : offset + count] = ctypes.string_at(src, count)
        else:
            block, offset = self._address(src)
            assert offset + count <= len(block), "copy past the end of a device buffer"
            ctypes.memmove(dst, bytes(block[offset : offset + count]), count)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.recording = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        graph, self.recording = self.recording, None
        return 0, graph

    def cudaGraphInstantiate(self, graph, flags):
        return 0, list(graph)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.launches += 1
        for work in graph_exec:
            work()
        return (0,)

    def cudaGraphDestroy(self, graph):
        return (0,)

    def cudaGraphExecDestroy(self, graph_exec):
        return (0,)


# ----- tensorrt -------------------------------------------------------------------------------------


def make_plan(onnx_path: str, profiles: list[dict[str, list[list[int]]]], hop: int) -> bytes:
    return json.dumps({"onnx": onnx_path, "profiles": profiles, "hop": hop}).encode()


class _Engine:
    def __init__(self, plan: dict, cuda: FakeCuda, trt: types.SimpleNamespace):
        self.session = ort.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        self.profiles = plan["profiles"]
        self.hop = plan["hop"]
        self.cuda, self.trt = cuda, trt
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.outputs = {o.name: o for o in self.session.get_outputs()}
        self.names = [*self.inputs, *self.outputs]

    num_io_tensors = property(lambda self: len(self.names))
    num_optimization_profiles = property(lambda self: len(self.profiles))

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str):
        return self.trt.TensorIOMode.INPUT if name in self.inputs else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        info = self.inputs.get(name) or self.outputs[name]
        return "int64" if "int64" in info.type else "float32"

    def get_tensor_profile_shape(self, name: str, index: int):
        return [tuple(s) for s in self.profiles[index][name]]

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine):
        self.engine = engine
        self.profile: int | None = None
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.executions = 0

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self.profile = index
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        lo, _, hi = self.engine.profiles[self.profile][name]
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(lo) or any(not (a <= d <= b) for a, d, b in zip(lo, shape, hi, strict=True)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str):
        if name in self.shapes:
            return self.shapes[name]
        batch = next(iter(self.shapes.values()))[0]
        symbols = {"B": batch}
        for input_name, info in self.engine.inputs.items():
            for dim, size in zip(info.shape, self.shapes[input_name], strict=True):
                if isinstance(dim, str):
                    symbols.setdefault(dim, size)
        dims = []
        for dim in self.engine.outputs[name].shape:
            if isinstance(dim, int):
                dims.append(dim)
            elif dim in symbols:
                dims.append(symbols[dim])
            else:  # the decoder's audio axis, exported as F_x_<hop>
                dims.append(symbols["F"] * self.engine.hop)
        return tuple(dims)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def _work(self) -> None:
        cuda = self.engine.cuda
        feeds = {}
        for name in self.engine.inputs:
            block, offset = cuda._address(self.addresses[name])
            dtype = np.dtype(self.engine.get_tensor_dtype(name))
            count = int(np.prod(self.shapes[name]))
            feeds[name] = np.frombuffer(bytes(block[offset : offset + count * dtype.itemsize]), dtype).reshape(
                self.shapes[name])
        outputs = self.engine.session.run(list(self.engine.outputs), feeds)
        for name, value in zip(self.engine.outputs, outputs, strict=True):
            value = np.ascontiguousarray(value, dtype=np.float32)
            assert value.shape == self.get_tensor_shape(name), (name, value.shape, self.get_tensor_shape(name))
            block, offset = cuda._address(self.addresses[name])
            assert offset + value.nbytes <= len(block), "output buffer too small"
            block[offset : offset + value.nbytes] = value.tobytes()
        self.executions += 1

    def execute_async_v3(self, stream_handle: int) -> bool:
        # The work reads the addresses/shapes bound now: a captured graph replays exactly this binding.
        snapshot = dict(self.addresses), dict(self.shapes)

        def work() -> None:
            saved = self.addresses, self.shapes
            self.addresses, self.shapes = dict(snapshot[0]), dict(snapshot[1])
            try:
                self._work()
            finally:
                self.addresses, self.shapes = saved

        if self.engine.cuda.recording is not None:
            self.engine.cuda.recording.append(work)
        else:
            work()
        return True


def make_tensorrt(cuda: FakeCuda, version: str = "10.99.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = IntEnum("TensorIOMode", "INPUT OUTPUT")

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            return _Engine(json.loads(data), cuda, trt)

    trt.ILogger = ILogger
    trt.Runtime = Runtime
    trt.Builder = object  # present, so the stub check passes
    trt.nptype = lambda dtype: np.dtype(dtype).type
    return trt
