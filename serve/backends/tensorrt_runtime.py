"""TensorRT and CUDA runtime helpers shared by the TensorRT backend and ``vitsrt build-engines``.

Everything is imported lazily: importing this module loads neither TensorRT nor CUDA. The GPU identity
(name, compute capability) comes from cuda-python's runtime API, so a plan's :class:`EngineKey` names
exactly what the plan is valid for.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from vitsrt.errors import VitsrtError
from vitsrt.voice import EngineKey

__all__ = [
    "TensorRTLogger",
    "TensorRTUnavailable",
    "cuda_check",
    "detect_engine_key",
    "import_cudart",
    "import_tensorrt",
    "trt_major",
]

log = logging.getLogger(__name__)


class TensorRTUnavailable(VitsrtError):
    """TensorRT or the CUDA runtime cannot be used here (one-line reason)."""


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            f"TensorRT is not importable here ({exc}): install it on a machine with an NVIDIA GPU "
            "(pip install tensorrt-cu12 or tensorrt-cu13)"
        ) from None
    if not hasattr(trt, "Builder"):
        raise TensorRTUnavailable("the installed tensorrt package is a stub without the runtime libraries")
    return trt


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def import_cudart() -> Any:
    """The CUDA runtime bindings of cuda-python (new and old module layouts)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError:
            raise TensorRTUnavailable("cuda-python is not installed: pip install cuda-python") from None
    return cudart


def cuda_check(result: Any) -> Any:
    """cuda-python calls return (error, *values): raise on an error, return the value(s)."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise TensorRTUnavailable(f"CUDA error {error}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def detect_engine_key(precision: str, trt: Any, device_id: int = 0) -> EngineKey:
    cudart = import_cudart()
    prop = cuda_check(cudart.cudaGetDeviceProperties(device_id))
    raw = prop.name
    name = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).split("\x00", 1)[0].strip()
    version = re.match(r"^\d+(\.\d+)*", str(trt.__version__))
    return EngineKey(
        gpu_name=name or f"cuda:{device_id}",
        compute_capability=f"{prop.major}.{prop.minor}",
        trt_version=version.group(0) if version else "0",
        precision=precision,  # type: ignore[arg-type]
    )


class TensorRTLogger:
    """A tensorrt.ILogger forwarding to `logging` (TensorRT warnings become log warnings)."""

    def __new__(cls, trt: Any) -> Any:
        class Forward(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.WARNING:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        return Forward()
