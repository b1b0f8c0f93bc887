"""Mixed-precision conversion of a stage graph with the plain ``onnx`` API (for strongly typed TensorRT).

TensorRT 11 dropped the ``FP16``/``BF16`` builder flags: a reduced-precision plan now comes from a graph
whose tensors already carry the reduced types. This module produces that graph:

* every node that computes on floats runs in fp16 (or bf16), EXCEPT the numerically sensitive ones,
  which stay fp32 between Cast nodes: exponentials and logarithms (``Exp``, ``Log``, ``Softplus``),
  ``Softmax``/``LogSoftmax``, powers and roots (``Pow``, ``Sqrt``, ``Reciprocal``), ``Div`` (divisors
  near zero overflow fp16), ``Erf``, ``CumSum``, every reduction (the ``ReduceMean``-based norms
  accumulate), ``LayerNormalization`` and the other normalisations, and float comparisons/rounding;
* the **log-scale paths**: the few element-wise ops that feed an ``Exp`` (``exp(logs) * noise`` in
  the flows and the duration predictor's spline) are kept fp32 as well, so a log-scale is never
  rounded to fp16 right before it is exponentiated;
* a node with a constant outside the fp16 range (e.g. a float32-min mask fill) stays fp32;
* graph inputs and outputs keep their fp32 types (Cast nodes at the boundary), so the voice.json I/O
  contract and every backend's feeding code stay the same.

Weights used only by reduced-precision nodes are stored reduced (half the plan size); a weight shared
with an fp32 node stays fp32 and is cast where needed. Needs ``onnx`` (and ``ml_dtypes`` for bf16).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vitsrt.export.onnx_checks import finalize_onnx

__all__ = [
    "AGNOSTIC_OPS",
    "FP16_MAX",
    "LOG_SCALE_PATH_OPS",
    "SENSITIVE_OPS",
    "MixedPrecisionReport",
    "convert_mixed_precision",
    "mixed_precision_model",
]

log = logging.getLogger(__name__)

FP16_MAX = 65504.0

SENSITIVE_OPS = frozenset({
    "Exp", "Log", "Softplus", "Softmax", "LogSoftmax", "Pow", "Sqrt", "Reciprocal", "Div", "Erf", "CumSum",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceProd", "ReduceMax", "ReduceMin",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "BatchNormalization",
    "LpNormalization", "MeanVarianceNormalization", "SimplifiedLayerNormalization",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Floor", "Ceil", "Round", "Range",
})
# Element-wise / data-movement ops that may sit on a log-scale path right before an Exp.
LOG_SCALE_PATH_OPS = frozenset({
    "Add", "Sub", "Mul", "Neg", "Clip", "Slice", "Split", "Squeeze", "Unsqueeze", "Reshape", "Transpose",
    "Where", "Identity", "Concat", "Gather", "Expand",
})
LOG_SCALE_DEPTH = 3
# Ops whose inputs may be of any type (their float inputs are never cast).
AGNOSTIC_OPS = frozenset({"Shape", "Size", "Cast", "CastLike"})
# Float inputs that the ONNX spec pins to float32 whatever the data type (Resize roi/scales).
_PINNED_FLOAT_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}

_FLOAT = TensorProto.FLOAT


@dataclass
class MixedPrecisionReport:
    dtype: str
    low_nodes: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # (node name, op type) kept in fp32
    casts: int = 0
    converted_initializers: int = 0

    def kept_ops(self) -> set[str]:
        return {op for _, op in self.kept}


def _low_type(dtype: str) -> int:
    if dtype == "float16":
        return TensorProto.FLOAT16
    if dtype == "bfloat16":
        return TensorProto.BFLOAT16
    raise ValueError(f"unsupported reduced precision {dtype!r}: float16 or bfloat16")


def _to_low(array: np.ndarray, low: int) -> np.ndarray:
    if low == TensorProto.FLOAT16:
        return array.astype(np.float16)
    import ml_dtypes

    return array.astype(ml_dtypes.bfloat16)


def _fits(array: np.ndarray, low: int) -> bool:
    if low != TensorProto.FLOAT16 or array.size == 0:
        return True
    finite = array[np.isfinite(array)]
    return finite.size == 0 or float(np.abs(finite).max()) <= FP16_MAX


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types: dict[str, int] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer if init.data_type == _FLOAT}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == _FLOAT:
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _cast_target(node: onnx.NodeProto) -> int | None:
    for attr in node.attribute:
        if attr.name == "to":
            return int(attr.i)
    return None


def _choose_kept(graph: onnx.GraphProto, types: dict[str, int], constants: dict[str, np.ndarray],
                 low: int) -> tuple[set[int], dict[int, str]]:
    """Indices of float nodes that run reduced, and why each other float node stays fp32."""
    reasons: dict[int, str] = {}
    floaty: set[int] = set()
    for i, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue  # follows its consumers
        tensors = [t for t in (*node.input, *node.output) if t]
        if not any(types.get(t) == _FLOAT for t in tensors):
            continue
        floaty.add(i)
        if node.op_type in SENSITIVE_OPS:
            reasons[i] = "sensitive op"
        elif node.op_type == "Cast" and _cast_target(node) != _FLOAT:
            reasons[i] = "cast to a non-float type"
        elif any(name in constants and not _fits(constants[name], low) for name in node.input):
            reasons[i] = "constant outside the reduced range"
    _keep_log_scale_paths(graph, types, floaty, reasons)
    return floaty - set(reasons), reasons


def _keep_log_scale_paths(graph: onnx.GraphProto, types: dict[str, int], floaty: set[int],
                          reasons: dict[int, str]) -> None:
    """Log-scale paths: walk back from every Exp through cheap element-wise ops, keeping them fp32."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    for node in graph.node:
        if node.op_type != "Exp":
            continue
        frontier, depth = [node.input[0]], 0
        while frontier and depth < LOG_SCALE_DEPTH:
            following = []
            for tensor in frontier:
                j = producer.get(tensor)
                if j is None or j not in floaty or graph.node[j].op_type not in LOG_SCALE_PATH_OPS:
                    continue
                reasons.setdefault(j, "log-scale path into Exp")
                following.extend(t for t in graph.node[j].input if types.get(t) == _FLOAT)
            frontier, depth = following, depth + 1


def _set_value_attribute(node: onnx.NodeProto, tensor: onnx.TensorProto) -> None:
    for attr in node.attribute:
        if attr.name == "value":
            attr.t.CopyFrom(tensor)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[int, int]]]:
    """Every (node index, input slot) that reads each tensor."""
    consumers: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, node in enumerate(graph.node):
        for k, name in enumerate(node.input):
            if name:
                consumers[name].append((i, k))
    return consumers


def _wants_low(graph: onnx.GraphProto, reduced: set[int], i: int, k: int) -> bool | None:
    """Which type node i needs at input k: True reduced, False fp32, None any (agnostic)."""
    node = graph.node[i]
    if node.op_type in AGNOSTIC_OPS:
        return None
    if k in _PINNED_FLOAT_INPUTS.get(node.op_type, ()):
        return False
    return i in reduced


def _output_types(graph: onnx.GraphProto, types: dict[str, int], reduced: set[int], low: int) -> dict[str, int]:
    """The type of the graph inputs and of every float tensor a (non-Constant) node writes."""
    current: dict[str, int] = {}
    for value in graph.input:
        current[value.name] = types.get(value.name, 0)
    for i, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue  # typed with the initializers, by their consumers
        for out in node.output:
            if types.get(out) == _FLOAT:
                current[out] = low if i in reduced else _FLOAT
    return current


def _reduce_constants(graph: onnx.GraphProto, constants: dict[str, np.ndarray],
                      needs_low: Callable[[str], list[bool | None]], current: dict[str, int], low: int) -> int:
    """Store a constant reduced when every type-sensitive consumer runs reduced; how many were converted.

    `needs_low(name)` lists what each consumer of `name` needs (see `_wants_low`); `current` gets every
    constant's final type.
    """
    init_by_name = {init.name: init for init in graph.initializer}
    const_nodes = {node.output[0]: node for node in graph.node if node.op_type == "Constant"}
    converted = 0
    for name, value in constants.items():
        needs = [n for n in needs_low(name) if n is not None]
        if needs and all(needs) and _fits(value, low):
            reduced = numpy_helper.from_array(_to_low(value, low), name)
            if name in init_by_name:
                init_by_name[name].CopyFrom(reduced)
            else:
                _set_value_attribute(const_nodes[name], reduced)
            current[name] = low
            converted += 1
        else:
            current[name] = _FLOAT
    return converted


def _retype_attributes(graph: onnx.GraphProto, reduced: set[int], low: int) -> None:
    """Attributes that fix output types: Cast(to=float) and ConstantOfShape(value) in reduced nodes."""
    for i in reduced:
        node = graph.node[i]
        if node.op_type == "Cast" and _cast_target(node) == _FLOAT:
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = low
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == _FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(_to_low(numpy_helper.to_array(attr.t), low), attr.t.name))


def _fp32_outputs(graph: onnx.GraphProto, current: dict[str, int], dtype: str, low: int) -> list[onnx.NodeProto]:
    """Graph outputs keep fp32: a reduced producer writes to a renamed tensor, a Cast restores the name.

    Returns the Casts, to append after every other node.
    """
    tail: list[onnx.NodeProto] = []
    for value in graph.output:
        if current.get(value.name) != low:
            continue
        inner = f"{value.name}__{dtype}"
        for node in graph.node:
            node.output[:] = [inner if o == value.name else o for o in node.output]
            node.input[:] = [inner if t == value.name else t for t in node.input]
        current[inner] = low
        tail.append(helper.make_node("Cast", [inner], [value.name], to=_FLOAT, name=f"{value.name}__to_fp32"))
    return tail


def _input_casts(graph: onnx.GraphProto, current: dict[str, int], wants_low: Callable[[int, int], bool | None],
                 low: int) -> dict[int, list[onnx.NodeProto]]:
    """Casts wherever a consumer needs the other float type, keyed by the node they must precede.

    Each (tensor, type) is cast once; the consumers' inputs are rewired to the cast tensor.
    """
    casts: dict[tuple[str, int], str] = {}
    pending: dict[int, list[onnx.NodeProto]] = defaultdict(list)
    for i, node in enumerate(graph.node):
        for k, name in enumerate(node.input):
            have = current.get(name)
            need = wants_low(i, k) if have in (_FLOAT, low) else None
            if need is None or have == (low if need else _FLOAT):
                continue
            target = low if need else _FLOAT
            key = (name, target)
            if key not in casts:
                casts[key] = f"{name}__to_{'low' if need else 'fp32'}"
                pending[i].append(helper.make_node("Cast", [name], [casts[key]], to=target, name=casts[key]))
            node.input[k] = casts[key]
    return pending


def _splice(graph: onnx.GraphProto, pending: dict[int, list[onnx.NodeProto]], tail: list[onnx.NodeProto]) -> None:
    """Rebuild the node list with each pending Cast right before its consumer and `tail` at the end."""
    new_nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(graph.node):
        new_nodes.extend(pending.get(i, ()))
        new_nodes.append(node)
    new_nodes.extend(tail)
    del graph.node[:]
    graph.node.extend(new_nodes)


def mixed_precision_model(
    model: onnx.ModelProto, dtype: str = "float16"
) -> tuple[onnx.ModelProto, MixedPrecisionReport]:
    """A converted copy of `model` and what was kept in fp32 (see the module docstring)."""
    low = _low_type(dtype)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    types = _elem_types(model)
    constants = _constant_values(graph)
    reduced, reasons = _choose_kept(graph, types, constants, low)
    kept = [(graph.node[i].name or f"#{i}", graph.node[i].op_type) for i in sorted(reasons)]
    report = MixedPrecisionReport(dtype=dtype, low_nodes=len(reduced), kept=kept)

    consumers = _consumers(graph)

    def wants_low(i: int, k: int) -> bool | None:
        return _wants_low(graph, reduced, i, k)

    def needs_low(name: str) -> list[bool | None]:
        return [wants_low(i, k) for i, k in consumers.get(name, [])]

    # 1. The type every float tensor will have (constants converted where all their consumers run reduced).
    current = _output_types(graph, types, reduced, low)
    report.converted_initializers = _reduce_constants(graph, constants, needs_low, current, low)
    # 2. Attributes that fix output types.
    _retype_attributes(graph, reduced, low)
    # 3. Graph outputs keep fp32.
    tail = _fp32_outputs(graph, current, dtype, low)
    # 4. Casts wherever a consumer needs the other float type.
    pending = _input_casts(graph, current, wants_low, low)
    report.casts = len(tail) + sum(len(nodes) for nodes in pending.values())
    _splice(graph, pending, tail)
    del graph.value_info[:]  # stale float types; consumers re-infer
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # every edge type-consistent
    return model, report


def convert_mixed_precision(
    source: str | os.PathLike[str], target: str | os.PathLike[str], dtype: str = "float16"
) -> MixedPrecisionReport:
    """Convert the graph file `source` and write it to `target` (IR version as the exporter writes)."""
    model, report = mixed_precision_model(onnx.load(str(source)), dtype)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    finalize_onnx(target)
    log.info("%s -> %s: %d reduced nodes, %d kept fp32, %d casts", Path(source).name, Path(target).name,
             report.low_nodes, len(report.kept), report.casts)
    return report
