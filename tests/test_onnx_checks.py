"""TensorRT-friendliness checks (vitsrt.export.onnx_checks) on small hand-built ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vitsrt.export.onnx_checks import (  # noqa: E402
    DEFAULT_IR_VERSION,
    finalize_onnx,
    find_forbidden_ops,
    find_trt_blockers,
    find_value_dependent_shapes,
    format_findings,
    set_ir_version,
)

OPSET = 17


def make_model(nodes, inputs, outputs, initializers=(), opset=OPSET, functions=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))
    model.ir_version = DEFAULT_IR_VERSION
    onnx.checker.check_model(model)
    return model


def run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def const(name, values, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, dtype), name))


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def clean_model():
    """x [B,T] -> reshape to [B,T,1] through Shape->Gather->Concat, plus Range/ConstantOfShape/Slice
    driven only by shapes and constants."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape_x"]),
        const("i0", 0),
        const("i1", 1),
        const("axes0", [0]),
        const("one", [1]),
        helper.make_node("Gather", ["shape_x", "i0"], ["b"], axis=0),
        helper.make_node("Gather", ["shape_x", "i1"], ["t"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axes0"], ["b1"]),
        helper.make_node("Unsqueeze", ["t", "axes0"], ["t1"]),
        helper.make_node("Concat", ["b1", "t1", "one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
        # positions 0..T-1 (the static way to build a length mask)
        const("start", 0),
        const("step", 1),
        helper.make_node("Range", ["start", "t", "step"], ["positions"]),
        helper.make_node(
            "ConstantOfShape", ["t1"], ["zeros"], value=numpy_helper.from_array(np.array([0.0], np.float32))
        ),
        # crop the last step via a shape-derived Slice end
        helper.make_node("Sub", ["t1", "one"], ["t_minus_1"]),
        const("slice_start", [0]),
        const("slice_axis", [1]),
        helper.make_node("Slice", ["x", "slice_start", "t_minus_1", "slice_axis"], ["cropped"]),
    ]
    outputs = [
        float_input("y", ["B", "T", 1]),
        helper.make_tensor_value_info("positions", TensorProto.INT64, ["T"]),
        float_input("zeros", ["T"]),
        float_input("cropped", ["B", "T1"]),
    ]
    return make_model(nodes, [float_input("x", ["B", "T"])], outputs)


def test_clean_graph_passes_and_runs():
    model = clean_model()
    assert find_forbidden_ops(model) == []
    assert find_value_dependent_shapes(model) == [], format_findings(find_value_dependent_shapes(model))
    for shape in [(1, 1), (3, 5), (2, 9)]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        y, positions, zeros, cropped = run(model, {"x": x})
        np.testing.assert_array_equal(y, x[:, :, None])
        np.testing.assert_array_equal(positions, np.arange(shape[1]))
        assert zeros.shape == (shape[1],)
        np.testing.assert_array_equal(cropped, x[:, :-1])


def test_nonzero_is_flagged():
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="nz")]
    model = make_model(
        nodes, [float_input("x", ["N"])], [helper.make_tensor_value_info("idx", TensorProto.INT64, [1, "K"])]
    )
    forbidden = find_forbidden_ops(model)
    assert [(f.op_type, f.node) for f in forbidden] == [("NonZero", "nz")]
    assert [f.op_type for f in find_value_dependent_shapes(model)] == ["NonZero"]
    # ORT runs it fine; the point is TensorRT and static shapes
    (idx,) = run(model, {"x": np.array([0, 1, 0, 2], np.float32)})
    np.testing.assert_array_equal(idx, [[1, 3]])


def if_with_random_model():
    then_graph = helper.make_graph(
        [helper.make_node("RandomNormal", [], ["r"], name="noise", shape=[3], dtype=TensorProto.FLOAT)],
        "then",
        [],
        [float_input("r", [3])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.zeros(3, np.float32), "c"))],
        "else",
        [],
        [float_input("c", [3])],
    )
    nodes = [helper.make_node("If", ["cond"], ["out"], name="branch", then_branch=then_graph, else_branch=else_graph)]
    return make_model(nodes, [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])], [float_input("out", [3])])


def test_if_with_random_subgraph_is_flagged():
    model = if_with_random_model()
    found = {(f.op_type, f.node, f.graph) for f in find_forbidden_ops(model)}
    assert ("If", "branch", "g") in found
    assert ("RandomNormal", "noise", "g/branch.then_branch") in found
    reasons = format_findings(find_value_dependent_shapes(model))
    assert "graph input 'cond'" in reasons
    (out,) = run(model, {"cond": np.array(False)})
    np.testing.assert_array_equal(out, np.zeros(3, np.float32))


def data_reshape_model():
    """Reshape whose target shape is computed from a data input's VALUES (through a Cast)."""
    nodes = [
        helper.make_node("Cast", ["s"], ["s_int"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["x", "s_int"], ["y"], name="bad_reshape"),
    ]
    return make_model(nodes, [float_input("x", ["N"]), float_input("s", [2])], [float_input("y", ["A", "B"])])


def test_reshape_from_data_is_flagged():
    model = data_reshape_model()
    assert find_forbidden_ops(model) == []
    found = find_value_dependent_shapes(model)
    assert len(found) == 1
    assert found[0].op_type == "Reshape" and found[0].node == "bad_reshape"
    assert "input 1 (shape)" in found[0].reason and "graph input 's'" in found[0].reason
    (y,) = run(model, {"x": np.arange(6, dtype=np.float32), "s": np.array([2, 3], np.float32)})
    assert y.shape == (2, 3)


def test_range_up_to_max_length_is_flagged_but_shape_bound_is_not():
    # upstream's sequence_mask(lengths) without max_length: arange(lengths.max())
    def model_with_limit(limit_nodes):
        nodes = [
            const("zero", 0),
            const("one", 1),
            *limit_nodes,
            helper.make_node("Range", ["zero", "limit", "one"], ["pos"], name="arange"),
        ]
        inputs = [helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]), float_input("x", ["B", "T"])]
        return make_model(nodes, inputs, [helper.make_tensor_value_info("pos", TensorProto.INT64, ["T"])])

    from_values = model_with_limit([helper.make_node("ReduceMax", ["lengths"], ["limit"], keepdims=0)])
    from_shape = model_with_limit(
        [
            helper.make_node("Shape", ["x"], ["sx"]),
            helper.make_node("Gather", ["sx", "one"], ["limit"], axis=0),
        ]
    )
    bad = find_value_dependent_shapes(from_values)
    assert [(f.op_type, f.node) for f in bad] == [("Range", "arange")]
    assert "graph input 'lengths'" in bad[0].reason
    assert find_value_dependent_shapes(from_shape) == []
    feeds = {"lengths": np.array([2, 4]), "x": np.zeros((2, 4), np.float32)}
    np.testing.assert_array_equal(run(from_values, feeds)[0], run(from_shape, feeds)[0])


def test_value_taint_reaches_into_subgraphs_and_outer_static_stays_static():
    # Reshape inside a Loop body: target shape from outer Shape (static) vs from a body input (data)
    def model(shape_source):
        body = helper.make_graph(
            [
                helper.make_node("Identity", ["cond_in"], ["cond_out"]),
                helper.make_node("Reshape", ["x", shape_source], ["r"], name="inner_reshape"),
            ],
            "body",
            [
                helper.make_tensor_value_info("iter", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_value_info("carried", TensorProto.INT64, [2]),
            ],
            [
                helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("carried_out", TensorProto.INT64, [2]),
                float_input("r", [2, 3]),
            ],
        )
        body.node.append(helper.make_node("Identity", ["carried"], ["carried_out"]))
        nodes = [
            helper.make_node("Shape", ["x"], ["sx"]),
            const("trip", 2),
            helper.make_node("Loop", ["trip", "", "sx"], ["final", "scan_out"], name="loop", body=body),
        ]
        return helper.make_model(
            helper.make_graph(nodes, "g", [float_input("x", [2, 3])], [float_input("scan_out", [2, 2, 3])]),
            opset_imports=[helper.make_opsetid("", OPSET)],
        )

    outer = find_value_dependent_shapes(model("sx"))
    assert outer == [], format_findings(outer)
    inner = find_value_dependent_shapes(model("carried"))
    assert [(f.op_type, f.graph) for f in inner] == [("Reshape", "g/loop.body")]
    assert "graph input 'carried'" in inner[0].reason
    # the Loop itself is forbidden either way
    assert [f.op_type for f in find_forbidden_ops(model("sx"))] == ["Loop"]


def test_initializer_overridable_as_input_counts_as_data():
    shape_init = numpy_helper.from_array(np.array([2, 3], np.int64), "target")
    nodes = [helper.make_node("Reshape", ["x", "target"], ["y"])]
    static = make_model(nodes, [float_input("x", [6])], [float_input("y", [2, 3])], [shape_init])
    assert find_value_dependent_shapes(static) == []
    overridable = make_model(
        nodes,
        [float_input("x", [6]), helper.make_tensor_value_info("target", TensorProto.INT64, [2])],
        [float_input("y", [2, 3])],
        [shape_init],
    )
    assert [f.op_type for f in find_value_dependent_shapes(overridable)] == ["Reshape"]


@pytest.mark.parametrize(
    ("op", "inputs"),
    [
        ("Expand", ["x", "data_shape"]),
        ("Tile", ["x", "data_shape"]),
        ("ConstantOfShape", ["data_shape"]),
        ("Unsqueeze", ["x", "data_axes"]),
        ("Pad", ["x", "data_pads"]),
    ],
)
def test_other_shape_inputs_from_data_are_flagged(op, inputs):
    int_input = lambda name, n: helper.make_tensor_value_info(name, TensorProto.INT64, [n])  # noqa: E731
    node = helper.make_node(op, inputs, ["y"], name="target_op")
    model = helper.make_model(
        helper.make_graph(
            [node],
            "g",
            [
                float_input("x", [2, 3]),
                int_input("data_shape", 2),
                int_input("data_axes", 1),
                int_input("data_pads", 4),
            ],
            [float_input("y", None)],
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    found = find_value_dependent_shapes(model)
    assert [(f.op_type, f.node) for f in found] == [(op, "target_op")]


def test_resize_sizes_from_data_flagged_constant_scales_not():
    scales = numpy_helper.from_array(np.array([1, 1, 2], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")]
    ok = make_model(nodes, [float_input("x", [1, 1, "T"])], [float_input("y", [1, 1, "T2"])], [scales])
    assert find_value_dependent_shapes(ok) == []
    (y,) = run(ok, {"x": np.arange(3, dtype=np.float32).reshape(1, 1, 3)})
    np.testing.assert_array_equal(y[0, 0], [0, 0, 1, 1, 2, 2])
    bad_nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest")]
    bad = make_model(
        bad_nodes,
        [float_input("x", [1, 1, "T"]), helper.make_tensor_value_info("sizes", TensorProto.INT64, [3])],
        [float_input("y", [1, 1, "T2"])],
    )
    assert [f.op_type for f in find_value_dependent_shapes(bad)] == ["Resize"]


def test_forbidden_op_inside_local_function_is_found():
    function = helper.make_function(
        "custom", "Gatherer", ["d", "i"], ["o"], [helper.make_node("GatherND", ["d", "i"], ["o"])],
        [helper.make_opsetid("", OPSET)],
    )
    nodes = [helper.make_node("Gatherer", ["x", "idx"], ["y"], domain="custom")]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [float_input("x", [2, 2]), helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 2])],
            [float_input("y", [1])],
        ),
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("custom", 1)],
        functions=[function],
    )
    assert [(f.op_type, f.graph) for f in find_forbidden_ops(model)] == [("GatherND", "function custom.Gatherer")]


def test_find_trt_blockers_combines_both(tmp_path: Path):
    path = tmp_path / "bad.onnx"
    onnx.save(data_reshape_model(), path)
    assert [f.op_type for f in find_trt_blockers(path)] == ["Reshape"]
    assert find_trt_blockers(clean_model()) == []


# ---------------------------------------------------------------- IR version


def ort_max_ir_version() -> int:
    """The highest IR version the installed onnxruntime loads, probed with a one-node model."""
    for ir_version in range(onnx.IR_VERSION, DEFAULT_IR_VERSION - 1, -1):
        model = clean_model()
        model.ir_version = ir_version
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:
            continue
        return ir_version
    raise AssertionError(f"onnxruntime {ort.__version__} loads no IR version >= {DEFAULT_IR_VERSION}")


def test_ort_ir_probe_finds_a_loadable_version_and_refuses_a_future_one():
    accepted = ort_max_ir_version()
    assert DEFAULT_IR_VERSION <= accepted <= onnx.IR_VERSION
    model = clean_model()
    model.ir_version = onnx.IR_VERSION + 50  # no onnxruntime loads an IR version from the future
    with pytest.raises(Exception, match=r"(?i)ir.?version|unsupported model"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_finalize_makes_default_onnx_output_loadable(tmp_path: Path):
    model = clean_model()
    model.ir_version = onnx.IR_VERSION  # what onnx writes by default (14 with onnx 1.23)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    if ort_max_ir_version() < onnx.IR_VERSION:  # ask the installed onnxruntime, never assume its limit
        with pytest.raises(Exception, match=r"(?i)ir.?version|unsupported model"):
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    finalize_onnx(path)
    reloaded = onnx.load(path)
    assert reloaded.ir_version == DEFAULT_IR_VERSION
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(session.run(["y"], {"x": x})[0], x[:, :, None])
    assert not list(tmp_path.glob(".*tmp"))


def test_set_ir_version_refuses_opsets_newer_than_the_ir():
    model = clean_model()
    model.opset_import[0].version = 23  # needs IR 11
    with pytest.raises(ValueError, match="IR version >= 11"):
        set_ir_version(model, 10)
    assert set_ir_version(model, 11).ir_version == 11


def test_finalize_rejects_invalid_model_and_leaves_file(tmp_path: Path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["missing"], ["y"])], "g", [float_input("x", [1])], [float_input("y", [1])]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    path = tmp_path / "broken.onnx"
    onnx.save(model, path)
    before = path.read_bytes()
    with pytest.raises(onnx.checker.ValidationError):
        finalize_onnx(path)
    assert path.read_bytes() == before
