"""Static checks that keep exported graphs deployable on TensorRT, plus IR-version finalisation.

Two failure modes are caught before a graph ships:

* ops TensorRT cannot build or that break determinism: random generators (all randomness must come
  from host inputs so ORT, TensorRT and torch are comparable), control flow, and ops whose output size
  is data-dependent by nature (NonZero, Unique, Compress, ...);
* ops whose output SHAPE is computed from a tensor's VALUES (a ``Reshape`` whose target shape depends
  on a data input, ``Range`` up to ``lengths.max()``...). TensorRT needs every shape to be derivable
  from input shapes; a value-dependent shape forces data-dependent-shape machinery or fails to build.

The second check is a taint analysis: a tensor is *static* if it is an initializer or Constant, the
output of Shape/Size (shape-derived), or computed only from static tensors. Every shape-defining input
(``Reshape.shape``, ``Slice.starts``, ``Range.limit``, ...) must be static.

Needs ``onnx`` only (no torch).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import GraphProto, ModelProto, NodeProto, helper

__all__ = [
    "DEFAULT_IR_VERSION",
    "FORBIDDEN_OPS",
    "OpFinding",
    "finalize_onnx",
    "find_forbidden_ops",
    "find_trt_blockers",
    "find_value_dependent_shapes",
    "format_findings",
    "set_ir_version",
]

# onnxruntime >= 1.20 accepts IR <= 10; onnx >= 1.23 writes IR 14 by default, which current onnxruntime
# releases refuse to load.
DEFAULT_IR_VERSION = 10

_DEFAULT_DOMAINS = ("", "ai.onnx")

_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
# Output size depends on the input values by definition.
_INHERENTLY_DYNAMIC_OPS = frozenset({"NonZero", "Unique", "Compress", "NonMaxSuppression", "StringSplit"})
_CONTROL_FLOW_OPS = frozenset({"Loop", "If", "Scan"})
# Scatter/gather by computed N-d index tuples: poorly supported by TensorRT and never needed here.
_INDEXED_UPDATE_OPS = frozenset({"ScatterND", "GatherND"})

FORBIDDEN_OPS: frozenset[str] = _RANDOM_OPS | _INHERENTLY_DYNAMIC_OPS | _CONTROL_FLOW_OPS | _INDEXED_UPDATE_OPS

# Ops whose outputs depend only on their inputs' shapes, never on their values.
_SHAPE_SOURCES = frozenset({"Shape", "Size", "EyeLike"})

_REDUCE_OPS = frozenset(
    {
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSumSquare",
    }
)


@dataclass(frozen=True)
class OpFinding:
    """One problem: which op, where, and why."""

    op_type: str
    node: str
    graph: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} node {self.node!r} in graph {self.graph!r}: {self.reason}"


def _load(model: ModelProto | GraphProto | str | os.PathLike[str]) -> ModelProto | GraphProto:
    if isinstance(model, (ModelProto, GraphProto)):
        return model
    return onnx.load(os.fspath(model), load_external_data=False)


def _default_opset(model: ModelProto | GraphProto) -> int:
    if isinstance(model, GraphProto):
        return onnx.defs.onnx_opset_version()
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return entry.version
    return 1  # no default-domain import: nothing below is a default-domain op anyway


def _node_label(node: NodeProto, index: int) -> str:
    return node.name or f"#{index}"


def _subgraphs(node: NodeProto) -> Iterator[tuple[str, GraphProto]]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for k, graph in enumerate(attr.graphs):
                yield f"{attr.name}[{k}]", graph


def _walk(graph: GraphProto, path: str) -> Iterator[tuple[NodeProto, int, str]]:
    """Every node of `graph` and of all its nested subgraphs, with a readable graph path."""
    for index, node in enumerate(graph.node):
        yield node, index, path
        for attr_name, sub in _subgraphs(node):
            yield from _walk(sub, f"{path}/{_node_label(node, index)}.{attr_name}")


def _top_graphs(model: ModelProto | GraphProto) -> Iterator[tuple[str, GraphProto | onnx.FunctionProto]]:
    if isinstance(model, GraphProto):
        yield model.name or "main", model
        return
    yield model.graph.name or "main", model.graph
    for function in model.functions:
        yield f"function {function.domain}.{function.name}", function


def find_forbidden_ops(model: ModelProto | GraphProto | str | os.PathLike[str]) -> list[OpFinding]:
    """Default-domain nodes in FORBIDDEN_OPS anywhere in the model: main graph, every nested subgraph
    (If/Loop/Scan bodies) and model-local functions."""
    loaded = _load(model)
    findings = []
    for path, graph in _top_graphs(loaded):
        for node, index, where in _walk(graph, path):  # type: ignore[arg-type]
            if node.domain in _DEFAULT_DOMAINS and node.op_type in FORBIDDEN_OPS:
                findings.append(OpFinding(node.op_type, _node_label(node, index), where, _forbidden_reason(node)))
    return findings


def _forbidden_reason(node: NodeProto) -> str:
    if node.op_type in _RANDOM_OPS:
        return "random generator inside a graph; pass host-generated noise as an input instead"
    if node.op_type in _INHERENTLY_DYNAMIC_OPS:
        return "output size depends on tensor values"
    if node.op_type in _CONTROL_FLOW_OPS:
        return "control flow; rewrite without branches/loops (e.g. with Where)"
    return "N-d indexed gather/scatter; use Gather/GatherElements/Where instead"


def _shape_inputs(op_type: str, opset: int) -> tuple[int, ...]:
    """Input positions whose VALUES determine the node's output SHAPE (for this opset version)."""
    table: dict[str, tuple[tuple[int, tuple[int, ...]], ...]] = {
        # op: ((first opset with this input layout, positions), ...) newest last
        "Reshape": ((5, (1,)),),
        "Expand": ((8, (1,)),),
        "Tile": ((1, (1, 2)), (6, (1,))),
        "Slice": ((10, (1, 2, 3, 4)),),
        "Pad": ((11, (1,)), (18, (1, 3))),
        "Range": ((11, (0, 1, 2)),),
        "ConstantOfShape": ((9, (0,)),),
        "Upsample": ((9, (1,)),),
        "Resize": ((10, (1,)), (11, (2, 3))),
        "TopK": ((10, (1,)),),
        "OneHot": ((9, (1,)),),
        "Squeeze": ((13, (1,)),),
        "Unsqueeze": ((13, (1,)),),
        "Split": ((13, (1,)),),
        "SplitToSequence": ((11, (1,)),),
        "ReduceSum": ((13, (1,)),),
        "CenterCropPad": ((18, (1,)),),
        "Col2Im": ((18, (1, 2)),),
        "MaxUnpool": ((9, (2,)),),
        "DFT": ((17, (1,)), (20, (1, 2))),
        "STFT": ((17, (1, 3)),),
        "MelWeightMatrix": ((17, (0, 1)),),
        "HannWindow": ((17, (0,)),),
        "HammingWindow": ((17, (0,)),),
        "BlackmanWindow": ((17, (0,)),),
        "AffineGrid": ((20, (1,)),),
    }
    if op_type in _REDUCE_OPS:
        return (1,) if opset >= 18 else ()
    positions: tuple[int, ...] = ()
    for since, layout in table.get(op_type, ()):
        if opset >= since:
            positions = layout
    return positions


def _input_label(op_type: str, opset: int, position: int) -> str:
    try:
        schema = onnx.defs.get_schema(op_type, opset)
    except onnx.defs.SchemaError:
        return f"input {position}"
    if position < len(schema.inputs):
        return f"input {position} ({schema.inputs[position].name})"
    return f"input {position}"


class _ShapeTaint:
    """Forward pass marking tensors static (initializer/Constant/shape-derived) or value-derived."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.findings: list[OpFinding] = []

    def run(self, graph: GraphProto | onnx.FunctionProto, path: str, outer: dict[str, str | None]) -> None:
        # scope: tensor name -> None if static, else a description of the runtime value it came from.
        scope = dict(outer)
        if isinstance(graph, GraphProto):
            for init in graph.initializer:
                scope[init.name] = None
            for sparse in graph.sparse_initializer:
                scope[sparse.values.name] = None
            # A graph input with an initializer of the same name is an overridable default: runtime data.
            for inp in graph.input:
                scope[inp.name] = f"graph input {inp.name!r}"
        else:
            for name in graph.input:
                scope[name] = f"function input {name!r}"
        for index, node in enumerate(graph.node):
            self._visit(node, index, path, scope)

    def _visit(self, node: NodeProto, index: int, path: str, scope: dict[str, str | None]) -> None:
        label = _node_label(node, index)
        default_domain = node.domain in _DEFAULT_DOMAINS

        def origin(name: str) -> str | None:
            if not name:
                return None
            return scope.get(name, f"tensor {name!r} (produced nowhere before this node)")

        if default_domain:
            for position in _shape_inputs(node.op_type, self.opset):
                if position < len(node.input) and (source := origin(node.input[position])) is not None:
                    what = _input_label(node.op_type, self.opset, position)
                    self._report(node, label, path, f"{what} {node.input[position]!r} depends on {source}")
            if node.op_type in _INHERENTLY_DYNAMIC_OPS:
                self._report(node, label, path, "output size depends on tensor values by definition")
            if node.op_type == "If" and (source := origin(node.input[0])) is not None:
                self._report(node, label, path, f"branch (and its output shapes) chosen at runtime from {source}")
            if node.op_type == "Loop":
                for position in (0, 1):
                    if position < len(node.input) and (source := origin(node.input[position])) is not None:
                        what = ("trip count", "condition")[position]
                        self._report(node, label, path, f"{what} {node.input[position]!r} depends on {source}")

        for attr_name, sub in _subgraphs(node):
            self.run(sub, f"{path}/{label}.{attr_name}", scope)

        result = self._output_origin(node, label, default_domain, origin)
        for name in node.output:
            if name:
                scope[name] = result

    def _output_origin(self, node: NodeProto, label: str, default_domain: bool, origin) -> str | None:
        if default_domain and node.op_type == "Constant":
            return None
        if default_domain and node.op_type in _SHAPE_SOURCES:
            return None
        if default_domain and node.op_type in _RANDOM_OPS | _INHERENTLY_DYNAMIC_OPS:
            return f"{node.op_type} {label!r}"
        if any(True for _ in _subgraphs(node)):
            return f"the outputs of {node.op_type} {label!r}"
        for name in node.input:
            if (source := origin(name)) is not None:
                return source
        return None

    def _report(self, node: NodeProto, label: str, path: str, reason: str) -> None:
        self.findings.append(OpFinding(node.op_type, label, path, reason))


def find_value_dependent_shapes(model: ModelProto | GraphProto | str | os.PathLike[str]) -> list[OpFinding]:
    """Every op whose output shape depends on the values (not just the shapes) of runtime inputs."""
    loaded = _load(model)
    taint = _ShapeTaint(_default_opset(loaded))
    for path, graph in _top_graphs(loaded):
        taint.run(graph, path, {})
    return taint.findings


def find_trt_blockers(model: ModelProto | GraphProto | str | os.PathLike[str]) -> list[OpFinding]:
    """Both checks together: forbidden ops, then value-dependent shapes (an op may appear in both)."""
    loaded = _load(model)
    return find_forbidden_ops(loaded) + find_value_dependent_shapes(loaded)


def set_ir_version(model: ModelProto, ir_version: int = DEFAULT_IR_VERSION) -> ModelProto:
    """Set ``model.ir_version`` (in place, also returned) after checking the opsets it imports exist in
    that IR version; e.g. IR 10 covers default-domain opsets up to 22."""
    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if needed > ir_version:
        opsets = ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
        raise ValueError(
            f"opsets {opsets} need IR version >= {needed}; export with a lower opset to target IR {ir_version}"
        )
    model.ir_version = ir_version
    return model


def finalize_onnx(
    path: str | os.PathLike[str], ir_version: int = DEFAULT_IR_VERSION, *, full_check: bool = False
) -> ModelProto:
    """Rewrite an exported ``.onnx`` file in place with an onnxruntime-compatible IR version, after
    ``onnx.checker`` accepts it. The file is replaced atomically. Single-file models (< 2 GB) only."""
    target = Path(path)
    model = onnx.load(os.fspath(target))
    set_ir_version(model, ir_version)
    onnx.checker.check_model(model, full_check=full_check)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return model


def format_findings(findings: Iterable[OpFinding]) -> str:
    """One finding per line, for assertion messages and CLI output."""
    return "\n".join(str(f) for f in findings)
