"""The decoder graph rewritten for onnxruntime's CPU provider.

A bundle's decoder graph serves every backend and batch: it multiplies by the frame mask after each conv, so a
padded batch row gives the audio it gives alone. On CPU the engine runs one item per step, so the mask is all
ones and those multiplies are passes over the activations that compute nothing; and onnxruntime's CPU provider
has no blocked (NCHWc) kernel for the upsamplers' ConvTranspose. On CPU
:class:`~vitsrt.serve.backends.ort_runner.OrtRunner` runs two copies of the graph rewritten here: an unpadded
call (every mask value 1) runs a copy with both rewrites, a padded call a copy with the second only (opened when
the first padded call comes). The two differ only by multiplications by 1.0 on a row's own frames, so a batch
row still gets the bits it gets alone. The bundle's file is not changed; GPU backends run it as written.

1. **Mask multiplies dropped** (unpadded calls). Every ``Mul`` of a data tensor by the ``y_mask`` input or by a
   tensor computed from it and constants alone (the upsampled masks) is bypassed. With an all-ones mask each
   was a multiplication by 1.0, so this gives the same bits.
2. **Transposed convs as polyphase convs** (every call). A 2-D (planar, :mod:`vitsrt.export.planar`)
   ConvTranspose with stride s and kernel Q*s is a plain Conv with s x C_out output channels (one per output
   phase r, taps w[(Q-1-q)*s + r]) over the input padded by Q-1 on both sides, whose phases are interleaved
   (Reshape, Transpose, Reshape) and cropped by the transposed conv's padding (Slice). The same sums in another
   order: equal within float rounding (~1e-7).

Measured on joe (piper's voice, 2-D decoder), onnxruntime 1.32, one thread, 256 frames, interleaved in one process
(a probe, not the record): the graph as written 93.3 ms, masks dropped 92.3 ms, polyphase alone 90.7 ms, both
83.7 ms; neither rewrite alone is worth much. The record: benchmarks/results/2026-12-02-decoder-rewrite.md. (Also
tried and not kept: LeakyRelu as depthwise convs plus Relu, which onnxruntime keeps blocked, and an identity conv
after each upsampler to make the residual stream blocked: no faster.)

Graphs that hold subgraphs are left as written; a ConvTranspose this cannot express (groups, dilation, output
padding, a kernel that is not a multiple of the stride, 1-D) stays as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["MASK_INPUT", "rewritten_decoder"]

log = logging.getLogger(__name__)

MASK_INPUT = "y_mask"
_INT64_MAX = np.iinfo(np.int64).max


def rewritten_decoder(path: Path, unpadded: bool) -> bytes | None:
    """The decoder graph at `path` with its transposed convs polyphase and, for `unpadded` calls (every
    ``y_mask`` value 1), no mask multiplies; serialized. None when there is nothing to rewrite (no mask input,
    subgraphs)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    if MASK_INPUT not in {i.name for i in graph.input} or _has_subgraphs(graph.node):
        return None
    dropped = _drop_mask_multiplies(graph) if unpadded else 0
    converted = _polyphase_transposed_convs(graph)
    _prune(graph)
    log.debug("%s: %d mask multiplies dropped, %d transposed convs made polyphase", path, dropped, converted)
    return model.SerializeToString()


def _has_subgraphs(nodes: Iterable) -> bool:
    return any(a.g.node or a.graphs for n in nodes for a in n.attribute)


# ----- 1. mask multiplies ---------------------------------------------------------------------------------------


def _mask_and_constants(graph) -> tuple[set[str], set[str]]:
    """The names computed from the mask and constants alone (the mask and its upsampled copies), and those
    computed from constants alone."""
    constant = {i.name for i in graph.initializer}
    masked = {MASK_INPUT}
    for node in graph.node:  # an ONNX graph lists its nodes in topological order
        inputs = [name for name in node.input if name]
        if all(name in masked or name in constant for name in inputs):
            (masked if any(name in masked for name in inputs) else constant).update(node.output)
    return masked, constant


def _bypassed(node, masked: set[str], constant: set[str]) -> str | None:
    """The data operand of a data x mask product (what the product equals under an all-ones mask), else None."""
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    a, b = node.input
    if a in masked and b not in masked and b not in constant:
        return b
    if b in masked and a not in masked and a not in constant:
        return a
    return None


def _drop_mask_multiplies(graph) -> int:
    from onnx import helper

    masked, constant = _mask_and_constants(graph)
    renamed: dict[str, str] = {}
    kept = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        data = _bypassed(node, masked, constant)
        if data is None:
            kept.append(node)
        else:
            renamed[node.output[0]] = data
    for output in graph.output:
        if output.name in renamed:  # the graph's output itself was a masked product
            kept.append(helper.make_node("Identity", [renamed[output.name]], [output.name]))
    del graph.node[:]
    graph.node.extend(kept)
    return len(renamed)


# ----- 2. polyphase transposed convs ----------------------------------------------------------------------------


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _polyphase_shape(node, weights: dict[str, np.ndarray]) -> tuple[int, int, int] | None:
    """(stride, taps per phase, padding) of a planar ConvTranspose the rewrite can express, else None."""
    a = _attributes(node)
    w = weights.get(node.input[1])
    if w is None or w.ndim != 4 or w.shape[2] != 1 or (len(node.input) > 2 and node.input[2] not in weights):
        return None
    k = w.shape[3]
    stride = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    plain = (
        a.get("group", 1) == 1
        and list(a.get("dilations", [1, 1])) == [1, 1]
        and not any(a.get("output_padding", []))
        and "output_shape" not in a
        and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and stride[0] == 1
        and pads[0] == pads[2] == 0
        and pads[1] == pads[3]
    )
    s = stride[1]
    return (s, k // s, pads[1]) if plain and k % s == 0 else None


def _polyphase_nodes(node, weights: dict[str, np.ndarray], shape: tuple[int, int, int]) -> tuple[list, list]:
    """The nodes and initializers that compute `node` (a ConvTranspose) as a Conv plus an interleave."""
    from onnx import helper, numpy_helper

    s, q, pad = shape
    w = weights[node.input[1]]  # [C_in, C_out, 1, Q * s]; tap j = q * s + r feeds output phase r
    c_in, c_out = w.shape[0], w.shape[1]
    taps = w[:, :, 0, :].reshape(c_in, c_out, q, s)[:, :, ::-1, :]  # flipped: Conv correlates
    phase_w = np.ascontiguousarray(taps.transpose(1, 3, 0, 2).reshape(c_out * s, c_in, 1, q))
    out = node.output[0]
    name = f"{out}/polyphase"
    inits = [numpy_helper.from_array(phase_w.astype(w.dtype), f"{name}/weight")]
    conv_inputs = [node.input[0], f"{name}/weight"]
    if len(node.input) > 2 and node.input[2]:
        bias = np.repeat(weights[node.input[2]], s).astype(w.dtype)
        inits.append(numpy_helper.from_array(bias, f"{name}/bias"))
        conv_inputs.append(f"{name}/bias")
    constants = {
        "phases": [0, c_out, s, -1], "interleaved": [0, c_out, 1, -1],
        "start": [pad], "end": [-pad if pad else _INT64_MAX], "axis": [3],
    }
    inits += [numpy_helper.from_array(np.array(v, np.int64), f"{name}/{k}") for k, v in constants.items()]
    nodes = [
        helper.make_node("Conv", conv_inputs, [f"{name}/conv"], kernel_shape=[1, q], pads=[0, q - 1, 0, q - 1]),
        helper.make_node("Reshape", [f"{name}/conv", f"{name}/phases"], [f"{name}/phases_out"]),
        helper.make_node("Transpose", [f"{name}/phases_out"], [f"{name}/transposed"], perm=[0, 1, 3, 2]),
        helper.make_node("Reshape", [f"{name}/transposed", f"{name}/interleaved"], [f"{name}/full"]),
        helper.make_node("Slice", [f"{name}/full", f"{name}/start", f"{name}/end", f"{name}/axis"], [out]),
    ]
    return nodes, inits


def _polyphase_transposed_convs(graph) -> int:
    from onnx import numpy_helper

    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes, converted = [], 0
    for node in graph.node:
        shape = _polyphase_shape(node, weights) if node.op_type == "ConvTranspose" else None
        if shape is None:
            nodes.append(node)
            continue
        new_nodes, inits = _polyphase_nodes(node, weights, shape)
        nodes += new_nodes
        graph.initializer.extend(inits)
        converted += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return converted


# ----- clean-up -------------------------------------------------------------------------------------------------


def _prune(graph) -> None:
    """Drop the nodes and initializers no output needs any more (the mask's upsampling, replaced weights)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
