"""fp16-stored weights (`vitsrt export --weights fp16`): half the bytes, float32 compute, verified parity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SMALL_22K_CONFIG
from vitsrt.export.onnx_checks import DEFAULT_IR_VERSION
from vitsrt.export.weight_storage import FP16_SUFFIX, MIN_ELEMENTS, store_weights_fp16

torch = pytest.importorskip("torch")


def _hand_built(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """y = x @ W + b + x @ P and h = x @ H: W large (converted), b small, P a graph input, H overflows fp16."""
    weights = {
        "W": rng.standard_normal((32, 16)).astype(np.float32),
        "b": rng.standard_normal((16,)).astype(np.float32),
        "H": np.full((32, 16), 1e6, dtype=np.float32),
        "P": rng.standard_normal((32, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["xwb"]),
        helper.make_node("MatMul", ["x", "P"], ["xp"]),
        helper.make_node("Add", ["xwb", "xp"], ["y"]),
        helper.make_node("MatMul", ["x", "H"], ["h"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 32]),
         helper.make_tensor_value_info("P", TensorProto.FLOAT, [32, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 16]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["B", 16])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = DEFAULT_IR_VERSION
    onnx.save(model, path)
    return weights


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, h = session.run(None, {"x": x})
    return y, h


def test_large_weights_become_fp16_and_the_rest_stays_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "g.onnx"
    weights = _hand_built(path, rng)
    x = rng.standard_normal((3, 32)).astype(np.float32)
    before, h_before = _run(path, x)

    stored = store_weights_fp16(path, min_elements=64)
    assert (stored.converted, stored.kept) == (1, 3)  # W; b (small), H (overflow), P (graph input)
    model = onnx.load(path)
    types = {init.name: init.data_type for init in model.graph.initializer}
    assert types == {"W" + FP16_SUFFIX: TensorProto.FLOAT16, "b": TensorProto.FLOAT, "H": TensorProto.FLOAT,
                     "P": TensorProto.FLOAT}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # I/O unchanged
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT

    got, h = _run(path, x)
    w16 = weights["W"].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, x @ w16 + weights["b"] + x @ weights["P"], rtol=1e-5, atol=1e-5)
    assert not np.array_equal(got, before)  # negative control: W really was rounded
    np.testing.assert_array_equal(h, h_before)  # H kept float32 (as fp16 it would be inf)
    assert np.isfinite(h).all()


def test_default_threshold_keeps_small_tensors(tmp_path: Path) -> None:
    path = tmp_path / "g.onnx"
    _hand_built(path, np.random.default_rng(1))
    assert MIN_ELEMENTS <= 32 * 16
    assert store_weights_fp16(path).converted == 1


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from vitsrt.benchmarks.voices import build_random_checkpoint

    torch.set_num_threads(1)
    return build_random_checkpoint(tmp_path_factory.mktemp("fp16ckpt"), SMALL_22K_CONFIG, seed=11)


def test_export_fp16_weights_halves_the_bundle_and_keeps_the_audio(small_checkpoint, tmp_path: Path) -> None:
    from vitsrt.export.bundle import export_voice
    from vitsrt.serve.engine.engine import Engine
    from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
    from vitsrt.voice import load_voice

    checkpoint, config = small_checkpoint
    fp32 = export_voice(checkpoint, config, tmp_path / "fp32", verify=False)
    fp16 = export_voice(checkpoint, config, tmp_path / "fp16", weights="fp16", verify=True)

    manifest = load_voice(fp16).manifest
    assert manifest.weights == "fp16" and load_voice(fp32).manifest.weights == "fp32"
    stages = manifest.parity.stages
    for stage in ("encoder", "duration", "duration_dp_only", "flow", "decoder"):
        assert stages[stage].passed and stages[f"{stage}+fp16-weights"].passed
        # fp16 rounding is visible, and larger than the fp32 export's own error (not in the flow: a freshly
        # initialised coupling layer's output projection is zero, so the random flow is the identity)
        if stage != "flow":
            assert stages[f"{stage}+fp16-weights"].max_abs_diff > stages[stage].max_abs_diff

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.glob("*.onnx"))

    assert size(fp16) < 0.6 * size(fp32)

    request = SynthesisRequest(phonemes=PhonemeIds(phone_ids=[0, 5, 0, 9, 0, 17, 0, 3, 0, 30, 0]), seed=2,
                               sdp_ratio=0.0)
    audio = {}
    for name, folder in (("fp32", fp32), ("fp16", fp16)):
        with Engine.open([folder]) as engine:
            audio[name] = engine.synthesize(request).audio
    assert audio["fp32"].shape == audio["fp16"].shape
    peak = float(np.abs(audio["fp32"]).max())
    diff = float(np.abs(audio["fp32"] - audio["fp16"]).max())
    assert 0 < diff <= 2e-2 * peak, (diff, peak)


def test_negative_control_coarser_weights_fail_the_fp16_tolerances(small_checkpoint, tmp_path: Path) -> None:
    """Weights rounded to 6 mantissa bits (instead of fp16's 11) must fail the fp16-weights check."""
    from vitsrt.export.bundle import export_voice
    from vitsrt.export.verify import FP16_WEIGHT_TOLERANCES, ParityError, check_parity, verify_graphs
    from vitsrt.train.loading import load_generator

    checkpoint, config = small_checkpoint
    voice = export_voice(checkpoint, config, tmp_path / "v", weights="fp16", verify=False)
    coarse = tmp_path / "coarse"
    shutil.copytree(voice, coarse)
    path = coarse / "decoder.onnx"
    model = onnx.load(path)
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            array = numpy_helper.to_array(init).astype(np.float32)
            mantissa, exponent = np.frexp(array)
            rounded = np.ldexp(np.round(mantissa * 64) / 64, exponent).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(rounded, name=init.name))
    onnx.save(model, path)
    loaded = load_generator(checkpoint, config)
    good = verify_graphs(loaded.model, {"decoder": voice / "decoder.onnx"}, tolerances=FP16_WEIGHT_TOLERANCES)
    check_parity(good)
    bad = verify_graphs(loaded.model, {"decoder": path}, tolerances=FP16_WEIGHT_TOLERANCES)
    with pytest.raises(ParityError, match="decoder"):
        check_parity(bad)
