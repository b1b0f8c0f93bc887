"""The one small interface every backend implements, and the registry that opens one by name.

Each backend class declares its options as a pydantic model (``Options``, unknown keys refused) and is
constructed as ``Backend(voice, options)``. The registry maps a backend name to its class and to the
options the name itself implies (``onnxruntime-cuda`` is the onnxruntime backend with ``device="cuda"``).
Classes are imported only when chosen: torch and CUDA stay unloaded for the other backends.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from vitsrt.errors import VitsrtError, VoiceError
from vitsrt.voice import Voice

__all__ = [
    "BACKENDS",
    "BackendEntry",
    "StageBackend",
    "backend_entry",
    "backend_options",
    "open_backend",
    "parse_options",
]

Options = TypeVar("Options", bound=BaseModel)


class StageBackend(Protocol):
    """Runs the stages of one voice. Implementations must be safe to call from one worker thread."""

    name: str
    Options: ClassVar[type[BaseModel]]

    def has_stage(self, stage: str) -> bool: ...

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend class lives ("module:Class") and the options its registered name fixes."""

    target: str
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> type[StageBackend]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


_ORT = "vitsrt.serve.backends.onnxruntime_backend:OnnxRuntimeBackend"
_TORCH = "vitsrt.serve.backends.torch_backend:TorchBackend"
BACKENDS: Mapping[str, BackendEntry] = {
    "onnxruntime": BackendEntry(_ORT, {"device": "cpu"}),
    "onnxruntime-cuda": BackendEntry(_ORT, {"device": "cuda"}),
    "onnxruntime-tensorrt": BackendEntry(_ORT, {"device": "tensorrt"}),
    "tensorrt": BackendEntry("vitsrt.serve.backends.tensorrt_backend:TensorRTBackend"),
    "triton": BackendEntry("vitsrt.serve.backends.triton_backend:TritonBackend"),
    "torch": BackendEntry(_TORCH),
    "torch-cuda": BackendEntry(_TORCH, {"device": "cuda"}),
}
_ALIASES = {
    "ort": "onnxruntime",
    "onnxruntime-cpu": "onnxruntime",
    "ort-cuda": "onnxruntime-cuda",
    "ort-trt": "onnxruntime-tensorrt",
    "trt": "tensorrt",
}


def backend_entry(name: str) -> BackendEntry:
    entry = BACKENDS.get(_ALIASES.get(name, name))
    if entry is None:
        raise VoiceError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return entry


def parse_options(model: type[Options], options: Mapping[str, Any], what: str) -> Options:
    """`options` validated by a backend's options model; the first problem as a one-line VitsrtError."""
    try:
        return model(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise VitsrtError(f"{what} has no option {where!r}; its options: {known}") from None
        raise VitsrtError(f"{what} option {where!r}: {first['msg']}") from None


def backend_options(model: type[Options], options: Options | None, fields: Mapping[str, Any], what: str) -> Options:
    """A backend constructor's options: the parsed model `open_backend` passes, or keyword fields."""
    if options is not None and fields:
        raise VitsrtError(f"{what}: pass an options model or keyword options, not both")
    return options if options is not None else parse_options(model, fields, what)


def open_backend(
    name: str, voice: Voice, *, engine_defaults: Mapping[str, Any] | None = None, **options: Any
) -> StageBackend:
    """Instantiate a backend for a voice.

    ``engine_defaults`` are engine-wide settings (e.g. ``intra_op_threads``, ``spinning``): each applies
    only to backends whose options model declares it, and an explicit option wins over it.
    """
    entry = backend_entry(name)
    clash = sorted(set(options) & set(entry.fixed))
    if clash:
        raise VitsrtError(f"backend {name!r} sets {clash} itself; choose the backend name instead")
    cls = entry.load()
    declared = cls.Options.model_fields
    merged = {k: v for k, v in (engine_defaults or {}).items() if k in declared}
    merged.update(options)
    merged.update(entry.fixed)
    return cls(voice, parse_options(cls.Options, merged, f"backend {name!r}"))
