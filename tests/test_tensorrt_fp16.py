"""The mixed-precision ONNX conversion used for reduced-precision TensorRT plans (TensorRT 11 route).

On the fixture's exported graphs: the numerically sensitive ops are the ones kept in fp32, the heavy
ops (Conv, MatMul) run in fp16, graph I/O stays fp32, and the converted graph still runs in
onnxruntime (CPU) close to the fp32 graph. Measured max |fp16 - fp32| / max |fp32| per output on these
inputs: encoder ~1.0e-3, duration ~3.3e-3, duration_dp_only ~0.8e-3, flow ~0.6e-3, decoder ~1.0e-3;
the test allows 1e-2 relative.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vitsrt.export.fp16 import SENSITIVE_OPS, convert_mixed_precision, mixed_precision_model
from vitsrt.voice import load_voice

RELATIVE_TOLERANCE = 1e-2
B, T, F = 2, 23, 57


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def graphs(fixture_voice) -> dict[str, onnx.ModelProto]:
    voice = load_voice(fixture_voice)
    return {stage: onnx.load(str(voice.graph_path(stage))) for stage, _ in voice.manifest.graphs.items()}


@pytest.fixture(scope="module")
def feeds(graphs) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    weights = next(i for i in graphs["encoder"].graph.input if i.name == "speaker_weights")
    speakers = weights.type.tensor_type.shape.dim[1].dim_value  # the encoder's speaker input: one-hot rows
    encoder_in = {
        "phone_ids": rng.integers(1, 100, (B, T)), "tone_ids": rng.integers(0, 5, (B, T)),
        "language_ids": np.zeros((B, T), np.int64), "lengths": np.array([T, 15]),
        "bert": np.zeros((B, 1024, T), np.float32), "ja_bert": np.zeros((B, 1024, T), np.float32),
        "en_bert": np.zeros((B, 1024, T), np.float32),
        "speaker_weights": np.eye(speakers, dtype=np.float32)[[0, 1]],
    }
    session = _session(graphs["encoder"])
    enc = dict(zip([o.name for o in session.get_outputs()], session.run(None, encoder_in), strict=True))
    y_mask = (np.arange(F)[None, None, :] < np.array([F, 40])[:, None, None]).astype(np.float32)
    latent = graphs["flow"].graph.input[0].type.tensor_type.shape.dim[1].dim_value
    side = {"enc": enc["enc"], "x_mask": enc["x_mask"], "g": enc["g"]}
    return {
        "encoder": encoder_in,
        "duration": {**side, "sdp_noise": rng.standard_normal((B, 2, T)).astype(np.float32) * 0.8,
                     "sdp_ratio": np.array([0.5, 1.0], np.float32)},
        "duration_dp_only": side,
        "flow": {"z_p": rng.standard_normal((B, latent, F)).astype(np.float32) * y_mask, "y_mask": y_mask,
                 "g": enc["g"]},
        "decoder": {"z": rng.standard_normal((B, latent, F)).astype(np.float32) * y_mask, "y_mask": y_mask,
                    "g": enc["g"]},
    }


def _types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    types.update({i.name: i.data_type for i in graph.initializer})
    return types


def _relative_error(reference: list[np.ndarray], mixed: list[np.ndarray]) -> float:
    pairs = zip(reference, mixed, strict=True)
    return max(float(np.abs(r - m).max()) / max(float(np.abs(r).max()), 1e-6) for r, m in pairs)


def test_sensitive_ops_are_kept_in_fp32_and_heavy_ops_reduced(graphs):
    expected_kept = {
        "encoder": {"LayerNormalization", "Softmax"},
        "duration": {"Exp", "Softplus", "Softmax", "CumSum", "Erf", "Sqrt", "Pow", "LayerNormalization", "Div"},
        "duration_dp_only": {"LayerNormalization"},
        "flow": {"LayerNormalization", "Softmax"},
    }
    for stage, model in graphs.items():
        mixed, report = mixed_precision_model(model, "float16")
        kept = report.kept_ops()
        assert expected_kept.get(stage, set()) <= kept, (stage, kept)
        assert not kept & {"Conv", "ConvTranspose", "MatMul", "Gemm", "LeakyRelu"}, (stage, kept)
        types = _types(mixed)
        for node in mixed.graph.node:
            floats = [types[t] for t in node.input if t and types.get(t) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
            if node.op_type in ("Conv", "ConvTranspose", "MatMul"):
                assert floats and all(t == TensorProto.FLOAT16 for t in floats), (stage, node.name)
            if node.op_type in SENSITIVE_OPS and node.op_type != "Cast":
                assert all(t == TensorProto.FLOAT for t in floats), (stage, node.name, node.op_type)
        # the serving contract does not change: graph inputs and outputs keep their types
        assert [i.type.tensor_type.elem_type for i in mixed.graph.input] == [
            i.type.tensor_type.elem_type for i in model.graph.input]
        assert all(o.type.tensor_type.elem_type == TensorProto.FLOAT for o in mixed.graph.output)
        assert report.converted_initializers > 0 and report.casts > 0


def test_mixed_graphs_run_in_onnxruntime_close_to_fp32(graphs, feeds):
    worst = {}
    for stage, model in graphs.items():
        mixed, _ = mixed_precision_model(model, "float16")
        reference = _session(model).run(None, feeds[stage])
        converted = _session(mixed).run(None, feeds[stage])
        worst[stage] = _relative_error(reference, converted)
        assert worst[stage] > 0  # really computed in reduced precision
    assert max(worst.values()) <= RELATIVE_TOLERANCE, worst


def test_negative_control_a_perturbed_weight_exceeds_the_tolerance(graphs, feeds):
    mixed, _ = mixed_precision_model(graphs["decoder"], "float16")
    conv = next(n for n in mixed.graph.node if n.op_type == "Conv")
    weight = next(i for i in mixed.graph.initializer if i.name == conv.input[1])
    weight.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(weight) * 1.1).astype(np.float16), weight.name))
    reference = _session(graphs["decoder"]).run(None, feeds["decoder"])
    assert _relative_error(reference, _session(mixed).run(None, feeds["decoder"])) > RELATIVE_TOLERANCE


def _log_scale_graph() -> onnx.ModelProto:
    """x -> Conv -> Slice (the log-scale half) -> Mul 0.5 -> Exp -> Mul noise -> y; plus a big-constant Add."""
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.standard_normal((4, 2, 1)).astype(np.float32), "w")
    starts, ends, axes = (numpy_helper.from_array(np.array([v]), n) for v, n in ((2, "s"), (4, "e"), (1, "a")))
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    huge = numpy_helper.from_array(np.array(-1e9, np.float32), "huge")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
        helper.make_node("Slice", ["h", "s", "e", "a"], ["logs"], name="slice"),
        helper.make_node("Mul", ["logs", "half"], ["scaled"], name="scale"),
        helper.make_node("Exp", ["scaled"], ["std"], name="exp"),
        helper.make_node("Mul", ["std", "noise"], ["y"], name="sample"),
        helper.make_node("Add", ["h", "huge"], ["masked"], name="mask_fill"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "logscale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5]),
         helper.make_tensor_value_info("noise", TensorProto.FLOAT, [1, 2, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
         for n, shape in (("y", [1, 2, 5]), ("masked", [1, 4, 5]), ("r", [1, 4, 5]))],
        [weight, starts, ends, axes, half, huge],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def test_log_scale_paths_and_out_of_range_constants_stay_fp32():
    model = _log_scale_graph()
    mixed, report = mixed_precision_model(model, "float16")
    kept = {name for name, _ in report.kept}
    assert {"exp", "scale", "slice", "mask_fill"} <= kept
    assert "conv" not in kept and "relu" not in kept and "sample" not in kept
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 2, 5)).astype(np.float32),
             "noise": np.ones((1, 2, 5), np.float32)}
    reference = _session(model).run(None, feeds)
    converted = _session(mixed).run(None, feeds)
    assert np.isfinite(converted[1]).all()  # -1e9 stayed representable
    assert _relative_error(reference, converted) <= RELATIVE_TOLERANCE


def test_bfloat16_conversion_is_well_typed_and_file_round_trip(graphs, tmp_path, fixture_voice):
    pytest.importorskip("ml_dtypes")
    _, report = mixed_precision_model(graphs["decoder"], "bfloat16")
    assert report.kept_ops() <= SENSITIVE_OPS | {"Add", "Sub", "Mul", "Slice", "Where", "Concat"}
    target = tmp_path / "decoder.fp16.onnx"
    file_report = convert_mixed_precision(load_voice(fixture_voice).graph_path("decoder"), target)
    assert file_report.low_nodes > 0 and target.stat().st_size < load_voice(fixture_voice).graph_path(
        "decoder").stat().st_size
    with pytest.raises(ValueError):
        mixed_precision_model(graphs["decoder"], "int8")
