"""Piper's voice format, read side: one ONNX graph running VITS end to end plus ``VOICE.onnx.json``.

A piper graph takes ``input`` [1, T] int64 phoneme ids, ``input_lengths`` [1], ``scales`` [3] (noise_scale,
length_scale, noise_w) and, for multi-speaker voices, ``sid`` [1]; it returns audio [1, 1, N]. Its noise
comes from ``RandomNormalLike`` nodes inside the graph, so it is deterministic only with both noise scales 0.

Piper's exporter traces upstream VITS after removing weight norm from the decoder only, so what the graph
keeps of the parameters is uneven, and :func:`recover_weights` gets each one back in this order:

1. **By name.** Most initializers keep their state-dict names (``enc_p.encoder.attn_layers.0.conv_q.weight``).
   ``X.weight_g``/``X.weight_v`` pairs, if a graph kept weight norm unfolded, are folded into ``X.weight``.
2. **By graph structure.** The embeddings are found by what reads them, not by name: the table a ``Gather``
   indexes with the graph input ``input`` is ``enc_p.emb.weight`` (single-speaker piper graphs store it under
   the name ``sid``: the exporter's fourth input name landed on the first parameter), the one indexed by the
   input ``sid`` is ``emb_g.weight``. A convolution whose weight was constant-folded (the flow's weight-normed
   WaveNet layers: ``onnx::Conv_8168``) is named after its bias (``flow.flows.0.enc.in_layers.0.bias``) or,
   failing that, after the node's module scope (``/flow/flows.0/enc/in_layers.0/Conv``).
3. **Folded constants.** The stochastic duration predictor's first flow computes ``(z - m) * exp(-logs)``;
   with ``logs`` a parameter the exporter folded ``exp(-logs)`` into one constant, so ``logs = -log(c)``.

:func:`infer_hyperparameters` then reads the architecture (upstream VITS config field names) from tensor
shapes and from the convolution nodes' attributes (upsample rates are the transposed convs' strides,
resblock dilations the convs' dilations). Every failure is a :class:`PiperFormatError` naming the tensor.
This module needs numpy, onnx and pydantic only.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vitsrt.errors import VitsrtError, clip
from vitsrt.files import NotRegularFileError, open_regular

__all__ = [
    "PIPER_INPUTS",
    "VITS_PREFIXES",
    "PiperAudio",
    "PiperEspeak",
    "PiperFormatError",
    "PiperInference",
    "PiperVoiceConfig",
    "RecoveredWeights",
    "infer_hyperparameters",
    "read_piper_config",
    "recover_weights",
]

log = logging.getLogger(__name__)

# The inputs every piper voice graph takes; multi-speaker voices add "sid".
PIPER_INPUTS = ("input", "input_lengths", "scales")
SPEAKER_INPUT = "sid"
# Top-level module names of upstream VITS's SynthesizerTrn (the state-dict namespace).
VITS_PREFIXES = ("enc_p.", "dp.", "flow.", "dec.", "emb_g.", "enc_q.")
MAX_CONFIG_BYTES = 16 << 20  # a piper .onnx.json is a few KB; multi-speaker maps reach ~100 KB
_CONV_OPS = ("Conv", "ConvTranspose")


class PiperFormatError(VitsrtError):
    """A file that is not a usable piper voice (one line: which tensor or field, and why)."""


# ----- VOICE.onnx.json ---------------------------------------------------------------------------------------


class _Loose(BaseModel):
    """Piper configs carry more keys than we read (quality, language details); they are kept."""

    model_config = ConfigDict(extra="allow")


class PiperAudio(_Loose):
    sample_rate: int = Field(gt=0, le=192_000)
    quality: str | None = None


class PiperEspeak(_Loose):
    voice: str = Field(min_length=1, max_length=64)


class PiperInference(_Loose):
    noise_scale: float = Field(default=0.667, ge=0)
    length_scale: float = Field(default=1.0, gt=0)
    noise_w: float = Field(default=0.8, ge=0)


class PiperVoiceConfig(_Loose):
    """The fields of a piper ``VOICE.onnx.json`` that piper-tts reads (names as piper writes them)."""

    audio: PiperAudio
    espeak: PiperEspeak
    inference: PiperInference = Field(default_factory=PiperInference)
    phoneme_type: str = "espeak"
    phoneme_map: dict[str, list[str]] = Field(default_factory=dict)
    phoneme_id_map: dict[str, list[int]] = Field(min_length=1)
    num_symbols: int = Field(ge=1, le=1 << 16)
    num_speakers: int = Field(default=1, ge=1, le=1 << 16)
    speaker_id_map: dict[str, int] = Field(default_factory=dict)
    hop_length: int | None = Field(default=None, gt=0, le=4096)
    language: dict[str, Any] | None = None
    dataset: str | None = None
    piper_version: str | None = None


def read_piper_config(path: str | os.PathLike[str]) -> PiperVoiceConfig:
    """Parse a piper ``VOICE.onnx.json``; PiperFormatError naming the file and field on any problem."""
    path = Path(path)
    try:
        with open_regular(path) as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except NotRegularFileError as exc:
        raise PiperFormatError(f"{clip(path, 200)}: is {exc.kind}, not a regular file") from None
    except OSError as exc:
        raise PiperFormatError(f"{clip(path, 200)}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise PiperFormatError(f"{clip(path, 200)}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a piper voice config")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise PiperFormatError(f"{clip(path, 200)}: not valid JSON ({type(exc).__name__})") from None
    try:
        return PiperVoiceConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "top level"
        raise PiperFormatError(f"{clip(path, 200)}: {where}: {first['msg']}") from None


# ----- the graph -----------------------------------------------------------------------------------------------


@dataclass
class RecoveredWeights:
    """VITS parameters got back from a piper graph, by state-dict name, and how each was found."""

    tensors: dict[str, np.ndarray]
    origins: dict[str, str]  # name -> "name" | "structure: ..." | "folded constant: ..."
    conv_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # "<module>.weight" -> Conv attrs
    speaker_input: bool = False  # whether the graph takes "sid"

    def get(self, name: str, why: str) -> np.ndarray:
        """The tensor `name`; PiperFormatError saying what needed it when the graph did not give it back."""
        if name not in self.tensors:
            raise PiperFormatError(f"tensor {name!r} was not found in the graph (by name or structure); "
                                   f"needed for {why}")
        return self.tensors[name]

    def indices(self, pattern: str) -> list[int]:
        """The sorted distinct N of tensor names matching `pattern` (a regex with one group)."""
        regex = re.compile(pattern)
        return sorted({int(m.group(1)) for name in self.tensors if (m := regex.match(name))})

    def count_by_origin(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for origin in self.origins.values():
            kind = origin.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def _is_vits_name(name: str) -> bool:
    return name.startswith(VITS_PREFIXES)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and the outputs of Constant nodes (some exporters store weights as the latter)."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _check_interface(graph: onnx.GraphProto, constants: Mapping[str, np.ndarray]) -> bool:
    """Whether the graph has piper's inputs; returns True when it takes a speaker id."""
    inputs = {i.name: i for i in graph.input if i.name not in constants}
    for name in PIPER_INPUTS:
        if name not in inputs:
            found = ", ".join(repr(n) for n in inputs) or "none"
            raise PiperFormatError(f"not a piper voice: graph input {name!r} is missing (it has {found}; piper voices "
                                   f"take {', '.join(PIPER_INPUTS)} and, multi-speaker, {SPEAKER_INPUT})")
    elem = inputs["input"].type.tensor_type.elem_type
    if elem != onnx.TensorProto.INT64:
        raise PiperFormatError(f"not a piper voice: graph input 'input' is {onnx.TensorProto.DataType.Name(elem)}, "
                               "not INT64 phoneme ids")
    if len(graph.output) > 1:
        log.warning("piper graph has %d outputs; the first is taken as the audio", len(graph.output))
    return SPEAKER_INPUT in inputs


def _fold_weight_norm_pairs(named: dict[str, np.ndarray], origins: dict[str, str]) -> None:
    """``X.weight_g``/``X.weight_v`` -> ``X.weight = g * v / ||v||`` (norm over all but dim 0)."""
    for g_name in [n for n in named if n.endswith(".weight_g")]:
        base = g_name[: -len("_g")]
        v_name = base + "_v"
        if v_name not in named:
            raise PiperFormatError(f"tensor {g_name!r} has no {v_name!r} beside it; cannot fold its weight norm")
        g, v = named.pop(g_name).astype(np.float64), named.pop(v_name).astype(np.float64)
        norm = np.sqrt((v**2).reshape(v.shape[0], -1).sum(axis=1)).reshape((-1,) + (1,) * (v.ndim - 1))
        named[base] = (g * v / norm).astype(np.float32)
        origins[base] = f"folded weight norm: {g_name} * {v_name} / ||{v_name}||"


def _embedding(nodes: list[onnx.NodeProto], constants: Mapping[str, np.ndarray], index_input: str) -> str | None:
    """The name of the constant table a Gather indexes with graph input `index_input`, if any."""
    for node in nodes:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] == index_input \
                and node.input[0] in constants:
            return node.input[0]
    return None


def _module_of_conv(node: onnx.NodeProto) -> str | None:
    """The module path of a Conv node: from its bias name, else from its scope name (None if neither says)."""
    if len(node.input) > 2 and _is_vits_name(node.input[2]) and node.input[2].endswith(".bias"):
        return node.input[2][: -len(".bias")]
    if _is_vits_name(node.input[1]) and node.input[1].endswith(".weight"):
        return node.input[1][: -len(".weight")]
    parts = [p for p in node.name.split("/") if p]
    if len(parts) >= 2 and f"{parts[0]}." in VITS_PREFIXES:
        return ".".join(parts[:-1])
    return None


def _conv_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _attribute_convs(nodes: list[onnx.NodeProto], constants: Mapping[str, np.ndarray], found: RecoveredWeights) -> None:
    """Name every convolution's weight (anonymous ones after their module) and keep each conv's attributes."""
    for node in nodes:
        if node.op_type not in _CONV_OPS or len(node.input) < 2:
            continue
        module = _module_of_conv(node)
        weight = node.input[1]
        if module is None:
            if weight in constants and not _is_vits_name(weight):
                raise PiperFormatError(f"{node.op_type} node {node.name!r}: weight {weight!r} cannot be attributed "
                                       "(its bias is unnamed and the node has no module scope)")
            continue
        target = f"{module}.weight"
        found.conv_attributes[target] = {"op": node.op_type, **_conv_attributes(node)}
        if target in found.tensors:
            continue
        if weight not in constants:
            raise PiperFormatError(f"{node.op_type} node {node.name!r}: weight {weight!r} of {module} is computed "
                                   "in the graph, not stored; cannot recover it")
        found.tensors[target] = constants[weight]
        found.origins[target] = f"structure: weight {weight!r} of {node.op_type} node {node.name!r}"


_UNARY = {"Exp": np.exp, "Neg": np.negative, "Identity": lambda v: v}


def _constant_value(name: str, producers: Mapping[str, onnx.NodeProto], constants: Mapping[str, np.ndarray],
                    depth: int = 4) -> np.ndarray | None:
    """`name`'s value if it is a constant or a short chain of Exp/Neg/Identity over one (else None)."""
    if name in constants:
        return constants[name].astype(np.float64)
    node = producers.get(name)
    if node is None or depth == 0 or node.op_type not in _UNARY or len(node.input) != 1:
        return None
    inner = _constant_value(node.input[0], producers, constants, depth - 1)
    return None if inner is None else _UNARY[node.op_type](inner)


def _sdp_log_scale(nodes: list[onnx.NodeProto], constants: Mapping[str, np.ndarray], found: RecoveredWeights) -> None:
    """``dp.flows.0.logs`` from the factor ``exp(-logs)`` that multiplies ``z - dp.flows.0.m`` (piper's exporter
    folds it into one constant; others keep a Neg/Exp chain over an unnamed one)."""
    target, mean = "dp.flows.0.logs", "dp.flows.0.m"
    if target in found.tensors or mean not in found.tensors:
        return
    producers = {out: node for node in nodes for out in node.output}
    subs = {n.output[0] for n in nodes if n.op_type == "Sub" and len(n.input) == 2 and n.input[1] == mean}
    for node in nodes:
        if node.op_type != "Mul" or len(node.input) != 2 or not subs & set(node.input):
            continue
        other = node.input[1] if node.input[0] in subs else node.input[0]
        scale = _constant_value(other, producers, constants)
        if scale is None or scale.shape != found.tensors[mean].shape or not np.all(scale > 0):
            raise PiperFormatError(f"tensor {target!r}: the factor {other!r} multiplying z - {mean} is not a positive "
                                   f"constant of shape {found.tensors[mean].shape}; cannot recover it")
        found.tensors[target] = (-np.log(scale)).astype(np.float32)
        found.origins[target] = f"folded constant: -log({other})"
        return
    raise PiperFormatError(f"tensor {target!r}: no Mul node scales z - {mean}; cannot recover the duration "
                           "predictor's first flow")


def recover_weights(model: onnx.ModelProto) -> RecoveredWeights:
    """Every VITS parameter the piper graph holds, under its state-dict name (see the module docstring)."""
    graph = model.graph
    constants = _constants(graph)
    speaker_input = _check_interface(graph, constants)
    nodes = list(graph.node)
    named = {name: value for name, value in constants.items() if _is_vits_name(name)}
    origins = dict.fromkeys(named, "name")
    _fold_weight_norm_pairs(named, origins)
    found = RecoveredWeights(named, origins, speaker_input=speaker_input)
    for index_input, target in (("input", "enc_p.emb.weight"), (SPEAKER_INPUT, "emb_g.weight")):
        table = _embedding(nodes, constants, index_input)
        if table is None:
            continue
        found.tensors.pop(table, None)
        found.origins.pop(table, None)
        found.tensors[target] = constants[table]
        found.origins[target] = "name" if table == target else f"structure: table {table!r} gathered by {index_input!r}"
    if "enc_p.emb.weight" not in found.tensors:
        raise PiperFormatError("not a piper voice: no Gather reads graph input 'input' from a stored table, so the "
                               "text embedding 'enc_p.emb.weight' cannot be found")
    if speaker_input and "emb_g.weight" not in found.tensors:
        raise PiperFormatError("tensor 'emb_g.weight': the graph takes 'sid' but no Gather reads it from a stored "
                               "speaker table")
    _attribute_convs(nodes, constants, found)
    _sdp_log_scale(nodes, constants, found)
    return found


# ----- hyperparameters -----------------------------------------------------------------------------------------


def _conv_attr(weights: RecoveredWeights, weight: str, attr: str, default: Any) -> Any:
    value = weights.conv_attributes.get(weight, {}).get(attr, default)
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _text_encoder(weights: RecoveredWeights) -> dict[str, Any]:
    emb = weights.get("enc_p.emb.weight", "the symbol count and hidden width")
    n_vocab, hidden = (int(d) for d in emb.shape)
    layers = weights.indices(r"^enc_p\.encoder\.attn_layers\.(\d+)\.")
    if not layers:
        raise PiperFormatError("tensor 'enc_p.encoder.attn_layers.0.conv_q.weight' was not found; the graph has no "
                               "VITS text encoder")
    rel_k = weights.get("enc_p.encoder.attn_layers.0.emb_rel_k", "the number of attention heads")
    ffn = weights.get("enc_p.encoder.ffn_layers.0.conv_1.weight", "filter_channels and kernel_size")
    proj = weights.get("enc_p.proj.weight", "inter_channels")
    return {
        "n_vocab": n_vocab,
        "hidden_channels": hidden,
        "inter_channels": int(proj.shape[0]) // 2,
        "filter_channels": int(ffn.shape[0]),
        "n_heads": hidden // int(rel_k.shape[-1]),
        "n_layers": len(layers),
        "kernel_size": int(ffn.shape[-1]),
    }


def _resblock_layout(weights: RecoveredWeights, n_blocks: int) -> tuple[str, list[int], list[list[int]]]:
    """Resblock type, kernel sizes and dilations of the first upsampling stage's blocks."""
    kind = "1" if "dec.resblocks.0.convs1.0.weight" in weights.tensors else "2"
    dilated = "convs1" if kind == "1" else "convs"
    kernels, dilations = [], []
    for block in range(n_blocks):
        convs = weights.indices(rf"^dec\.resblocks\.{block}\.{dilated}\.(\d+)\.weight$")
        if not convs:
            raise PiperFormatError(f"tensor 'dec.resblocks.{block}.{dilated}.0.weight' was not found; cannot read "
                                   "the decoder's resblocks")
        first = weights.tensors[f"dec.resblocks.{block}.{dilated}.0.weight"]
        kernels.append(int(first.shape[-1]))
        dilations.append([int(_conv_attr(weights, f"dec.resblocks.{block}.{dilated}.{i}.weight", "dilations", 1))
                          for i in convs])
    return kind, kernels, dilations


def _decoder(weights: RecoveredWeights) -> dict[str, Any]:
    ups = weights.indices(r"^dec\.ups\.(\d+)\.weight$")
    if not ups:
        raise PiperFormatError("tensor 'dec.ups.0.weight' was not found; the graph has no HiFi-GAN decoder")
    rates, kernels = [], []
    for i in ups:
        name = f"dec.ups.{i}.weight"
        if name not in weights.conv_attributes:
            raise PiperFormatError(f"tensor {name!r} is not read by a ConvTranspose node; cannot read its stride")
        rates.append(int(_conv_attr(weights, name, "strides", 1)))
        kernels.append(int(weights.tensors[name].shape[-1]))
    blocks = weights.indices(r"^dec\.resblocks\.(\d+)\.")
    if not blocks or len(blocks) % len(ups):
        raise PiperFormatError(f"the decoder has {len(blocks)} resblocks for {len(ups)} upsampling layers; expected a "
                               "multiple")
    kind, block_kernels, block_dilations = _resblock_layout(weights, len(blocks) // len(ups))
    pre = weights.get("dec.conv_pre.weight", "upsample_initial_channel")
    return {
        "resblock": kind,
        "resblock_kernel_sizes": block_kernels,
        "resblock_dilation_sizes": block_dilations,
        "upsample_rates": rates,
        "upsample_initial_channel": int(pre.shape[0]),
        "upsample_kernel_sizes": kernels,
    }


def infer_hyperparameters(weights: RecoveredWeights) -> dict[str, Any]:
    """The VITS architecture of the graph, as upstream VITS / piper config fields.

    ``n_speakers``/``gin_channels`` come from ``emb_g`` (1 / 0 without it); ``use_sdp`` from whether the
    duration predictor has flows. Fields the graph cannot show (the training-only posterior encoder's
    ``spec_channels``, dropout) are left to the model config's defaults.
    """
    params = {**_text_encoder(weights), **_decoder(weights)}
    emb_g = weights.tensors.get("emb_g.weight")
    params["n_speakers"] = 1 if emb_g is None else int(emb_g.shape[0])
    params["gin_channels"] = 0 if emb_g is None else int(emb_g.shape[1])
    params["use_sdp"] = bool(weights.indices(r"^dp\.flows\.(\d+)\."))
    if not params["use_sdp"] and "dp.conv_1.weight" not in weights.tensors:
        raise PiperFormatError("tensor 'dp.conv_1.weight' was not found and the duration predictor has no flows; "
                               "the graph has no VITS duration predictor")
    return params
