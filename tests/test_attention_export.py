"""The attention-based modules export to ONNX once and stay exact at every batch size and length.

Upstream's relative attention slices its embedding table with Python ints taken from the sequence
length, which a tracer freezes into the graph; ours must not. Each module is exported at one shape
and run with onnxruntime at others, including lengths shorter than the attention window (T = 1, 2, 3).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from vitsrt.train.models.attentions import RelativeSelfAttention  # noqa: E402
from vitsrt.train.models.text_encoder import TextEncoder  # noqa: E402
from vitsrt.train.models.transformer_flow import TransformerCouplingBlock  # noqa: E402

FORBIDDEN_OPS = {"NonZero", "Loop", "If", "ScatterND", "GatherND", "RandomNormal", "RandomNormalLike"}
# (batch, length) pairs the exported graphs are run at; the export itself uses (2, 9).
SHAPES = [(1, 1), (1, 2), (2, 3), (2, 7), (3, 50)]
TOLERANCE = 2e-5
GIN = 6
BERT = 1024


def _randomise(module: nn.Module, seed: int) -> None:
    """Fill every parameter with noise: zero-initialised flow outputs and unit LayerNorms would
    otherwise make parts of the graph an identity and hide mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def _export(
    module: nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dynamic: dict[str, dict[int, str]],
) -> onnx.ModelProto:
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation; it still works and is preferred here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    return onnx.load(str(path))


def _lengths(batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """Item 0 is full length, the others random in [1, length] so padding is exercised."""
    rest = torch.randint(1, length + 1, (batch - 1,), generator=gen)
    return torch.cat([torch.tensor([length]), rest])


class _FlowReverse(nn.Module):
    """Export wrapper: the inference direction of the flow with the speaker vector as an input."""

    def __init__(self, flow: TransformerCouplingBlock):
        super().__init__()
        self.flow = flow

    def forward(self, z_p: torch.Tensor, y_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.flow(z_p, y_mask, g=g, reverse=True)


def _encoder_inputs(batch: int, length: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "x": torch.randint(0, 20, (batch, length), generator=gen),
        "x_lengths": _lengths(batch, length, gen),
        "tone": torch.randint(0, 5, (batch, length), generator=gen),
        "language": torch.randint(0, 3, (batch, length), generator=gen),
        "bert": torch.randn(batch, BERT, length, generator=gen),
        "ja_bert": torch.randn(batch, BERT, length, generator=gen),
        "en_bert": torch.randn(batch, BERT, length, generator=gen),
        "g": torch.randn(batch, GIN, 1, generator=gen),
    }


def _flow_inputs(batch: int, length: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    lengths = _lengths(batch, length, gen)
    y_mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).float()
    return {
        "z_p": torch.randn(batch, 8, length, generator=gen) * y_mask,
        "y_mask": y_mask,
        "g": torch.randn(batch, GIN, 1, generator=gen),
    }


@pytest.fixture(scope="module")
def text_encoder_export(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = TextEncoder(20, 8, 16, 24, 2, 3, 3, 0.1, gin_channels=GIN, num_tones=5, num_languages=3).eval()
    _randomise(model, seed=1)
    example = _encoder_inputs(2, 9, torch.Generator().manual_seed(2))
    names = list(example)
    dynamic = {name: {0: "batch", (1 if example[name].dim() == 2 else 2): "time"} for name in names}
    dynamic["x_lengths"] = {0: "batch"}
    dynamic["g"] = {0: "batch"}
    outputs = ["enc", "m_p", "logs_p", "x_mask"]
    dynamic.update({name: {0: "batch", 2: "time"} for name in outputs})
    path = tmp_path_factory.mktemp("onnx") / "text_encoder.onnx"
    proto = _export(model, tuple(example.values()), path, names, outputs, dynamic)
    return model, proto, path


@pytest.fixture(scope="module")
def flow_export(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = TransformerCouplingBlock(8, 16, 24, 2, 3, 5, 0.1, n_flows=4, gin_channels=GIN).eval()
    _randomise(model, seed=3)
    wrapper = _FlowReverse(model).eval()
    example = _flow_inputs(2, 11, torch.Generator().manual_seed(4))
    dynamic = {
        "z_p": {0: "batch", 2: "time"},
        "y_mask": {0: "batch", 2: "time"},
        "g": {0: "batch"},
        "z": {0: "batch", 2: "time"},
    }
    path = tmp_path_factory.mktemp("onnx") / "flow.onnx"
    proto = _export(wrapper, tuple(example.values()), path, list(example), ["z"], dynamic)
    return wrapper, proto, path


def _max_diff_over_shapes(model: nn.Module, path: Path, make_inputs, seed: int) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch, length in SHAPES:
        inputs = make_inputs(batch, length, gen)
        with torch.no_grad():
            expected = model(*inputs.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        assert len(got) == len(expected)
        for ref, out in zip(expected, got, strict=True):
            assert out.shape == tuple(ref.shape), (batch, length)
            worst = max(worst, float(np.abs(out - ref.numpy()).max()))
    return worst


@pytest.mark.parametrize("which", ["text_encoder", "flow"])
def test_graph_has_no_data_dependent_or_random_ops(which, text_encoder_export, flow_export):
    _, proto, _ = text_encoder_export if which == "text_encoder" else flow_export
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & FORBIDDEN_OPS, ops & FORBIDDEN_OPS


def test_text_encoder_onnx_matches_torch_at_all_shapes(text_encoder_export):
    model, _, path = text_encoder_export
    worst = _max_diff_over_shapes(model, path, _encoder_inputs, seed=10)
    assert worst < TOLERANCE, worst


def test_flow_reverse_onnx_matches_torch_at_all_shapes(flow_export):
    model, _, path = flow_export
    worst = _max_diff_over_shapes(model, path, _flow_inputs, seed=11)
    assert worst < TOLERANCE, worst


def test_negative_control_changed_relative_embedding_is_detected(text_encoder_export):
    """Same comparison after nudging one relative-key embedding in torch only: must exceed tolerance,
    so the checks above are sensitive to the relative-position path that the export rewrites."""
    model, _, path = text_encoder_export
    table = model.encoder.attn_layers[1].emb_rel_k
    saved = table.detach().clone()
    try:
        with torch.no_grad():
            table[0, 5, :] += 0.05
        worst = _max_diff_over_shapes(model, path, _encoder_inputs, seed=10)
    finally:
        with torch.no_grad():
            table.copy_(saved)
    assert worst > 10 * TOLERANCE, worst


def _naive_relative_attention(attn: RelativeSelfAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Textbook loop form: logit(i, j) = q_i.(k_j + a_k[j-i]) and out_i = sum_j p_ij (v_j + a_v[j-i]),
    with a_k / a_v zero beyond the window - the definition upstream's pad/slice code implements."""
    batch, channels, length = x.shape
    heads, d, w = attn.n_heads, attn.head_channels, attn.window_size
    q = attn.conv_q(x).reshape(batch, heads, d, length) / math.sqrt(d)
    k = attn.conv_k(x).reshape(batch, heads, d, length)
    v = attn.conv_v(x).reshape(batch, heads, d, length)
    rel_k, rel_v = attn.emb_rel_k[0], attn.emb_rel_v[0]
    out = torch.zeros(batch, heads, d, length)
    for i in range(length):
        logits = torch.zeros(batch, heads, length)
        for j in range(length):
            logits[:, :, j] = (q[:, :, :, i] * k[:, :, :, j]).sum(-1)
            if abs(j - i) <= w:
                logits[:, :, j] += (q[:, :, :, i] * rel_k[j - i + w]).sum(-1)
        logits = logits.masked_fill(mask[:, :, i, :] == 0, -1e4)
        probs = torch.softmax(logits, dim=-1)
        for j in range(length):
            value = v[:, :, :, j] + (rel_v[j - i + w] if abs(j - i) <= w else 0.0)
            out[:, :, :, i] += probs[:, :, j, None] * value
    return attn.conv_o(out.reshape(batch, channels, length))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 6, 11])
def test_relative_attention_matches_naive_definition(length):
    torch.manual_seed(length)
    attn = RelativeSelfAttention(8, 8, 2, window_size=4).eval()
    x = torch.randn(2, 8, length)
    x_mask = torch.ones(2, 1, length)
    x_mask[1, :, max(1, length - 2) :] = 0
    mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
    with torch.no_grad():
        diff = (attn(x, mask) - _naive_relative_attention(attn, x, mask)).abs().max().item()
    assert diff < 1e-5, diff
