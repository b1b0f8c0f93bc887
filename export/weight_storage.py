"""Half-size voice bundles: weights stored as float16 in the graph files, computed in float32.

Each large float32 initializer ``W`` is replaced by a float16 initializer ``W::fp16`` and a
``Cast(to=FLOAT)`` node at the top of the graph that produces ``W`` again, so every consumer, every
input and output and all arithmetic stay float32. ONNX Runtime folds those casts into float32
constants when it creates the session (constant folding, its default optimisation level), so a
stored-fp16 graph runs exactly as fast as the float32 one; only the weights were rounded once.

This is storage, not fp16 inference (that is :mod:`vitsrt.export.fp16`, for GPUs). Small tensors
(biases of a few channels, scalars the exporter folded, shape-like constants) stay float32: they
cost nothing and some are exact values. Tensors whose values overflow float16 stay float32 too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["FP16_SUFFIX", "MIN_ELEMENTS", "StoredWeights", "store_weights_fp16"]

FP16_SUFFIX = "::fp16"
MIN_ELEMENTS = 256  # smaller float32 initializers are kept as they are
_FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class StoredWeights:
    """What :func:`store_weights_fp16` did to one graph file."""

    converted: int  # initializers now stored as float16
    kept: int  # float32 initializers left as they were (small, overflowing, or graph inputs)
    bytes_before: int
    bytes_after: int


def store_weights_fp16(path: str | os.PathLike[str], *, min_elements: int = MIN_ELEMENTS,
                       keep_scopes: tuple[str, ...] = ()) -> StoredWeights:
    """Rewrite the ONNX file at `path` in place with float16-stored weights (see the module docstring).
    Weights read by a node whose name starts with one of `keep_scopes` (exporter module scopes such as
    ``/enc_p/emo_vq/``) stay float32."""
    path = Path(path)
    before = path.stat().st_size
    model = onnx.load(os.fspath(path))
    graph = model.graph
    graph_inputs = {value.name for value in graph.input}
    taken = {init.name for init in graph.initializer} | {out for node in graph.node for out in node.output}
    exact = {name for node in graph.node if node.name.startswith(keep_scopes) for name in node.input}
    initializers, casts = [], []
    converted = kept = 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            initializers.append(init)
            continue
        array = numpy_helper.to_array(init)
        stored_name = init.name + FP16_SUFFIX
        if (
            array.size < min_elements
            or init.name in graph_inputs  # an overridable input: its type must stay float32
            or init.name in exact
            or stored_name in taken
            or (array.size and float(np.max(np.abs(array))) > _FP16_MAX)
        ):
            initializers.append(init)
            kept += 1
            continue
        initializers.append(numpy_helper.from_array(array.astype(np.float16), name=stored_name))
        casts.append(helper.make_node("Cast", [stored_name], [init.name], name=f"{init.name}::cast",
                                      to=TensorProto.FLOAT))
        converted += 1
    nodes = list(graph.node)
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    graph.ClearField("node")
    graph.node.extend([*casts, *nodes])
    onnx.checker.check_model(model)
    staged = path.with_name(f".{path.name}.fp16-tmp")
    onnx.save(model, os.fspath(staged))
    os.replace(staged, path)
    return StoredWeights(converted=converted, kept=kept, bytes_before=before, bytes_after=path.stat().st_size)
