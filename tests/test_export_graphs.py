"""The exported fixture bundle: TensorRT-friendly graphs, a complete manifest, parity figures recorded,
and a verification step that notices a wrong graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import helper, numpy_helper  # noqa: E402

from export_helpers import fixture_files  # noqa: E402
from vitsrt.export.onnx_checks import find_forbidden_ops, find_value_dependent_shapes, format_findings  # noqa: E402
from vitsrt.export.onnx_export import ExportError, check_graph, check_opset, export_stages  # noqa: E402
from vitsrt.export.verify import ParityError, VerifyCase, check_parity, verify_graphs  # noqa: E402
from vitsrt.train.loading import load_generator  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402

STAGES = ("encoder", "duration", "duration_dp_only", "flow", "decoder")


@pytest.fixture(scope="module")
def loaded():
    checkpoint, config = fixture_files()
    torch.set_num_threads(1)  # the machine is shared; oversubscribed OpenMP threads crawl
    return load_generator(checkpoint, config)


@pytest.mark.parametrize("stage", STAGES)
def test_graph_has_no_trt_blockers(fixture_voice, stage):
    model = onnx.load(str(fixture_voice / f"{stage}.onnx"))
    forbidden = find_forbidden_ops(model)
    dependent = find_value_dependent_shapes(model)
    assert not forbidden, format_findings(forbidden)
    assert not dependent, format_findings(dependent)
    assert model.ir_version == 10
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 17


def test_check_graph_rejects_a_nonzero_node(fixture_voice, tmp_path):
    """Negative control for the check the exporter applies: a NonZero slipped into a graph fails it."""
    model = onnx.load(str(fixture_voice / "flow.onnx"))
    model.graph.node.append(helper.make_node("NonZero", ["y_mask"], ["nz"], name="sneaky"))
    model.graph.output.append(helper.make_tensor_value_info("nz", onnx.TensorProto.INT64, None))
    path = tmp_path / "flow.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match="NonZero"):
        check_graph(path, "flow")


def test_manifest_describes_the_bundle(fixture_voice, loaded):
    voice = load_voice(fixture_voice)  # also checks every sha256
    m = voice.manifest
    assert m.name == "tiny"
    assert (m.model.family, m.model.version) == ("bert-vits2", "2.3")
    assert (m.sample_rate, m.hop_length, m.latent_channels) == (44100, 512, 32)
    assert m.speakers == {"alice": 0, "bob": 1} and m.num_speakers == 2
    assert m.decoder_context_frames == loaded.model.decoder_context_frames() > 0
    fe = m.front_end
    assert (fe.kind, fe.num_symbols, fe.num_tones, fe.num_languages) == ("ids", 112, 12, 3)
    assert fe.languages == {"ZH": 0, "JP": 1, "EN": 2}
    assert fe.bert_inputs == ["bert", "ja_bert", "en_bert"] and fe.add_blank
    assert fe.symbols[0] == "_" and fe.symbols[-2:] == ["SP", "UNK"]
    assert m.sdp_skippable
    assert [stage for stage, _ in m.graphs.items()] == list(STAGES)
    decoder_out = m.graphs.decoder.output("audio")
    assert decoder_out is not None and decoder_out.shape == ["B", 1, "F*512"]


@pytest.mark.parametrize("stage", STAGES)
def test_manifest_io_matches_the_graph(fixture_voice, stage):
    spec = load_voice(fixture_voice).manifest.graphs.get(stage)
    session = ort.InferenceSession(str(fixture_voice / spec.file), providers=["CPUExecutionProvider"])
    dtype = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    for declared, actual in ((spec.inputs, session.get_inputs()), (spec.outputs, session.get_outputs())):
        assert [s.name for s in declared] == [a.name for a in actual]
        for s, a in zip(declared, actual, strict=True):
            assert s.dtype == dtype[a.type]
            assert len(s.shape) == len(a.shape)
            for want, got in zip(s.shape, a.shape, strict=True):
                # Symbolic axes must be dynamic in the graph, fixed ones fixed.
                assert isinstance(got, str) if isinstance(want, str) else got == want, (s.name, s.shape, a.shape)


def test_parity_figures_recorded(fixture_voice):
    raw = json.loads((fixture_voice / "voice.json").read_text())
    parity = load_voice(fixture_voice).manifest.parity
    assert parity is not None and raw["parity"]["runtime"].startswith("onnxruntime")
    assert set(parity.stages) == set(STAGES)
    for stage, figures in parity.stages.items():
        assert figures.passed, stage
        assert figures.max_abs_diff < 1e-4, (stage, figures.max_abs_diff)
        assert figures.cases >= 5 and figures.worst_case


def test_verify_catches_a_perturbed_graph(fixture_voice, loaded, tmp_path):
    """Negative control for --verify: nudge one decoder weight, the decoder row must fail."""
    model = onnx.load(str(fixture_voice / "decoder.onnx"))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(biggest).copy()
    values.flat[: values.size // 4] *= 1.05
    biggest.CopyFrom(numpy_helper.from_array(values, biggest.name))
    path = tmp_path / "decoder.onnx"
    onnx.save(model, str(path))
    cases = (VerifyCase((3,), (3,)), VerifyCase((5, 2), (12, 4)))
    bad = verify_graphs(loaded.model, {"decoder": path}, cases=cases)
    assert not bad["decoder"].passed, bad["decoder"]
    with pytest.raises(ParityError, match="decoder"):
        check_parity(bad)
    good = verify_graphs(loaded.model, {"decoder": fixture_voice / "decoder.onnx"}, cases=cases)
    assert good["decoder"].passed and good["decoder"].max_abs_diff < 1e-5


def test_opset_range(loaded, tmp_path):
    with pytest.raises(ExportError, match="opset 16"):
        check_opset(16)
    with pytest.raises(ExportError, match="opset 23"):
        check_opset(23)
    paths = export_stages(loaded.model, tmp_path, opset=18, stages=("decoder",))
    model = onnx.load(str(paths["decoder"]))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 18
    assert model.ir_version == 10
