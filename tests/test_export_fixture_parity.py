"""The exported graphs, run on onnxruntime with numpy length regulation only, reproduce the upstream
Bert-VITS2 2.3 fixture: identical durations, audio within 1e-4 of each item's single-item reference
over its full length, exact zeros past it (batched case4 included).

No torch here: the pipeline is `vitsrt.export.ort_pipeline` (onnxruntime sessions + vitsrt.regulator).
Noise scales are 0 as in the fixture, so the seeds do not matter.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from onnx import numpy_helper  # noqa: E402

from export_helpers import (  # noqa: E402
    CASE_NAMES,
    case_scales,
    encoder_inputs,
    load_cases,
)
from vitsrt.export.ort_pipeline import PipelineResult, synthesize_batch  # noqa: E402
from vitsrt.serve.backends.ort_runner import OrtRunner  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402

TOL = 1e-4
HOP = 512


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    return load_cases()


def _synthesize(fixture_runner: OrtRunner, cases, name: str, **override) -> PipelineResult:
    inputs = encoder_inputs(cases, name)
    scales = {**case_scales(cases, name), **override}
    return synthesize_batch(fixture_runner, inputs, seeds=[7] * len(inputs["lengths"]), **scales)


def _audio_errors(result: PipelineResult, cases, name: str) -> list[float]:
    """Per item: max abs diff against the single-item reference over y_length*hop samples."""
    errors = []
    for b, frames in enumerate(cases[f"{name}_y_lengths"]):
        n = int(frames) * HOP
        reference = cases.get(f"{name}_audio_single_{b}", cases[f"{name}_audio"][b : b + 1, :, :n])
        assert reference.shape == (1, 1, n)
        errors.append(float(np.abs(result.audio[b : b + 1, :, :n] - reference).max()))
    return errors


@pytest.mark.parametrize("name", CASE_NAMES)
def test_onnx_pipeline_matches_upstream(fixture_runner, cases, name):
    result = _synthesize(fixture_runner, cases, name)
    np.testing.assert_array_equal(result.durations, cases[f"{name}_durations"][:, 0, :].astype(np.int64))
    np.testing.assert_array_equal(result.y_lengths, cases[f"{name}_y_lengths"])
    # Intermediates before expansion, whole tensors (masked, zero in padding on both sides).
    for key, ref_key in (("m_p", "m_p"), ("logs_p", "logs_p"), ("logw", "logw"), ("enc", "enc_x")):
        assert float(np.abs(result.tensors[key] - cases[f"{name}_{ref_key}"]).max()) <= TOL, key
    errors = _audio_errors(result, cases, name)
    assert max(errors) <= TOL, errors
    for b, frames in enumerate(cases[f"{name}_y_lengths"]):
        assert not result.audio[b, :, int(frames) * HOP :].any(), f"item {b} has samples past its length"
    assert result.audio.shape[-1] == int(cases[f"{name}_y_lengths"].max()) * HOP


def test_batched_case_items_each_match_their_single_reference(fixture_runner, cases):
    result = _synthesize(fixture_runner, cases, "case4")
    assert len(result.y_lengths) == 2 and result.y_lengths[0] != result.y_lengths[1]
    errors = _audio_errors(result, cases, "case4")
    assert max(errors) <= TOL, errors


def test_negative_control_perturbed_decoder_graph(fixture_voice, cases, tmp_path):
    """The same comparison fails when one decoder weight tensor is off by 1%."""
    model = onnx.load(str(fixture_voice / "decoder.onnx"))
    weights = [t for t in model.graph.initializer if len(t.dims) in (3, 4)]  # conv weights, 1-D or 2-D layout
    target = weights[len(weights) // 2]
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(1.01), target.name))
    path = tmp_path / "decoder.onnx"
    onnx.save(model, str(path))
    graphs = {s: fixture_voice / f"{s}.onnx" for s in ("encoder", "duration", "duration_dp_only", "flow")}
    perturbed = OrtRunner({**graphs, "decoder": path}, voice=load_voice(fixture_voice), intra_op_threads=1,
                          spinning=True, quiet=True)
    result = _synthesize(perturbed, cases, "case0")
    np.testing.assert_array_equal(result.durations, cases["case0_durations"][:, 0, :].astype(np.int64))
    assert max(_audio_errors(result, cases, "case0")) > TOL


def test_negative_control_durations(fixture_runner, cases):
    """Durations are compared exactly: a 10% longer length_scale changes them and the audio length."""
    scale = case_scales(cases, "case0")["length_scale"] * 1.1
    result = _synthesize(fixture_runner, cases, "case0", length_scale=scale)
    assert not np.array_equal(result.durations, cases["case0_durations"][:, 0, :].astype(np.int64))
    assert result.y_lengths[0] != cases["case0_y_lengths"][0]
