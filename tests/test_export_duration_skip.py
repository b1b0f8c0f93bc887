"""The sdp_ratio == 0 skip: `duration_dp_only` gives the same logw (and so the same durations and
audio) as the full `duration` graph with ratio 0, whatever SDP noise the full graph is fed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from export_helpers import case_scales, encoder_inputs, load_cases
from vitsrt.export.ort_pipeline import synthesize_batch
from vitsrt.regulator import durations_from_logw

# Bitwise equality is what the math gives (sdp * 0 adds exact zeros); allow ORT kernel rounding.
TOL = 1e-6


@pytest.fixture(scope="module")
def encoded(fixture_runner) -> dict[str, np.ndarray]:
    cases = load_cases()
    return fixture_runner.run("encoder", encoder_inputs(cases, "case4"))  # B=2, padded


def _full(fixture_runner, encoded, ratio: float, seed: int = 3) -> np.ndarray:
    batch, _, tokens = encoded["x_mask"].shape
    noise = np.random.default_rng(seed).standard_normal((batch, 2, tokens), dtype=np.float32)
    feeds = {**encoded, "sdp_noise": noise, "sdp_ratio": np.full(batch, ratio, dtype=np.float32)}
    return fixture_runner.run("duration", feeds)["logw"]


def test_dp_only_equals_full_graph_at_ratio_zero(fixture_runner, encoded):
    dp_only = fixture_runner.run("duration_dp_only", encoded)["logw"]
    for seed in (1, 2):
        full = _full(fixture_runner, encoded, 0.0, seed)
        assert float(np.abs(full - dp_only).max()) <= TOL
        np.testing.assert_array_equal(
            durations_from_logw(full, encoded["x_mask"], 1.0), durations_from_logw(dp_only, encoded["x_mask"], 1.0)
        )


def test_negative_control_nonzero_ratio_differs(fixture_runner, encoded):
    dp_only = fixture_runner.run("duration_dp_only", encoded)["logw"]
    assert float(np.abs(_full(fixture_runner, encoded, 0.5) - dp_only).max()) > 1e-2


def test_pipeline_skip_gives_the_same_audio(fixture_runner):
    cases = load_cases()
    inputs = encoder_inputs(cases, "case0")  # sdp_ratio 0 in the fixture
    scales = {**case_scales(cases, "case0"), "noise_scale": 0.5, "noise_scale_w": 0.8}
    skipped = synthesize_batch(fixture_runner, inputs, seeds=[5], skip_sdp=True, **scales)
    full = synthesize_batch(fixture_runner, inputs, seeds=[5], skip_sdp=False, **scales)
    assert "duration_dp_only" in skipped.timings and "duration" not in skipped.timings
    assert "duration" in full.timings and "duration_dp_only" not in full.timings
    np.testing.assert_array_equal(skipped.durations, full.durations)
    assert float(np.abs(skipped.audio - full.audio).max()) <= TOL
