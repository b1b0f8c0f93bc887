"""How a stage graph's tensors look to Triton: model names, dims without the batch axis, reshapes.

One module decides this so the repository generator, the BLS model and the remote `triton` backend can
never disagree. Rules:

* Stage models batch (``max_batch_size > 0``): Triton's ``dims`` leave out the leading ``B`` axis and
  every symbolic axis (``T``, ``F``, ``F*512``) becomes ``-1``.
* A per-item scalar input (graph shape ``[B]``: ``lengths``, ``sid``, ``sdp_ratio``) cannot be written
  with empty dims in a batching model, so it is declared ``dims: [1]`` with ``reshape: { shape: [] }``:
  callers send ``[B, 1]`` and the model sees ``[B]``. :func:`to_wire` / :func:`from_wire` do that
  conversion for callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vitsrt.sampling import Sampling
from vitsrt.stages import StageName
from vitsrt.voice import GraphSpec, TensorSpec, VoiceManifest

__all__ = [
    "BLS_MODEL",
    "DEFAULT_PREFIX",
    "ONESHOT_MODEL",
    "SAMPLING_TENSORS",
    "TRITON_DTYPES",
    "TritonTensor",
    "bls_model_names",
    "from_wire",
    "stage_model_name",
    "stage_tensors",
    "to_wire",
]

DEFAULT_PREFIX = "vitsrt"
BLS_MODEL = "tts"  # the decoupled, streaming BLS model is "<prefix>_tts"
ONESHOT_MODEL = "tts_oneshot"  # the request/response variant is "<prefix>_tts_oneshot"
# The BLS models' sampling inputs (FP32 [1] each): tensor name -> SynthesisRequest field, NOISE_SCALE -> noise_scale.
SAMPLING_TENSORS: Mapping[str, str] = {field.upper(): field for field in Sampling.model_fields}

# voice.json dtype -> (Triton config data_type, tritonclient datatype string)
TRITON_DTYPES: dict[str, tuple[str, str]] = {
    "float32": ("TYPE_FP32", "FP32"),
    "float16": ("TYPE_FP16", "FP16"),
    "bfloat16": ("TYPE_BF16", "BF16"),
    "int64": ("TYPE_INT64", "INT64"),
    "int32": ("TYPE_INT32", "INT32"),
    "bool": ("TYPE_BOOL", "BOOL"),
}


@dataclass(frozen=True)
class TritonTensor:
    """One input or output of a batching stage model, as its config.pbtxt declares it."""

    name: str
    dtype: str  # voice.json dtype, e.g. "float32"
    dims: tuple[int, ...]  # without the batch axis; -1 where dynamic
    reshape: tuple[int, ...] | None = None  # what the model sees (without batch), if different

    @property
    def config_type(self) -> str:
        return TRITON_DTYPES[self.dtype][0]

    @property
    def wire_type(self) -> str:
        return TRITON_DTYPES[self.dtype][1]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype) if self.dtype != "bfloat16" else np.dtype(np.float32)


def stage_model_name(prefix: str, stage: StageName | str) -> str:
    return f"{prefix}_{stage}"


def bls_model_names(prefix: str) -> tuple[str, str]:
    """(streaming decoupled model, one-shot model) names."""
    return f"{prefix}_{BLS_MODEL}", f"{prefix}_{ONESHOT_MODEL}"


def _tensor(spec: TensorSpec) -> TritonTensor:
    shape = list(spec.shape)
    if not shape or shape[0] != "B":
        raise ValueError(f"tensor {spec.name!r} has shape {shape}: stage tensors must start with the batch axis 'B'")
    rest = tuple(-1 if isinstance(d, str) else int(d) for d in shape[1:])
    if not rest:
        return TritonTensor(spec.name, spec.dtype, (1,), reshape=())
    return TritonTensor(spec.name, spec.dtype, rest)


def stage_tensors(graph: GraphSpec) -> tuple[list[TritonTensor], list[TritonTensor]]:
    """(inputs, outputs) of a stage graph in Triton's batching layout."""
    return [_tensor(s) for s in graph.inputs], [_tensor(s) for s in graph.outputs]


def stage_layouts(manifest: VoiceManifest) -> dict[str, tuple[list[TritonTensor], list[TritonTensor]]]:
    """Every stage of a voice, by stage name."""
    return {stage: stage_tensors(graph) for stage, graph in manifest.graphs.items()}


def to_wire(tensors: list[TritonTensor], arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays as a caller sends them: per-item scalars [B] become [B, 1]; dtypes as declared."""
    out = {}
    for tensor in tensors:
        value = np.asarray(arrays[tensor.name])
        if tensor.reshape == ():
            value = value.reshape(-1, 1)
        out[tensor.name] = np.ascontiguousarray(value, dtype=tensor.numpy_dtype)
    return out


def from_wire(tensor: TritonTensor, value: np.ndarray) -> np.ndarray:
    """An array as the graph wants it: [B, 1] (or [B]) per-item scalars become [B]."""
    return value.reshape(-1) if tensor.reshape == () else value
