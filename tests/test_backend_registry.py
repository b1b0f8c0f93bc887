"""Backends are opened by name through one registry; each validates its own options model, and the one
ONNX Runtime runner opens graphs from a bundle or from bare paths."""

from __future__ import annotations

import numpy as np
import pytest

from vitsrt import voices
from vitsrt.errors import VitsrtError
from vitsrt.serve.backends.base import BACKENDS, open_backend
from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.voice import load_voice


@pytest.fixture(scope="module")
def voice():
    return load_voice(voices.default_voice_dir())


def test_registry_names_every_backend():
    assert set(BACKENDS) == {
        "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt", "triton", "torch", "torch-cuda",
    }


def test_unknown_backend_and_unknown_options_are_one_line_errors(voice):
    with pytest.raises(VitsrtError, match="unknown backend 'onnx'"):
        open_backend("onnx", voice)
    with pytest.raises(VitsrtError, match="has no option 'threads'; its options: device, device_id") as info:
        open_backend("onnxruntime", voice, threads=2)
    assert "\n" not in str(info.value)
    # Nothing is accepted and ignored: TensorRT refuses a thread count before it loads anything.
    with pytest.raises(VitsrtError, match="'tensorrt' has no option 'intra_op_threads'"):
        open_backend("tensorrt", voice, intra_op_threads=2)
    with pytest.raises(VitsrtError, match="option 'timeout_s'"):
        open_backend("triton", voice, timeout_s=-1)
    with pytest.raises(VitsrtError, match="sets \\['device'\\] itself"):
        open_backend("onnxruntime-cuda", voice, device="cpu")


def test_engine_defaults_reach_only_backends_that_declare_them(voice):
    backend = open_backend("ort", voice, engine_defaults={"intra_op_threads": 1, "spinning": False, "other": 1})
    try:
        assert backend.name == "onnxruntime-cpu" and backend.has_stage("decoder")
    finally:
        backend.close()


def test_runner_from_dir_matches_runner_from_voice(voice):
    by_voice = OrtRunner.from_voice(voice, intra_op_threads=1, quiet=True)
    by_dir = OrtRunner.from_dir(voice.root, intra_op_threads=1, quiet=True)
    assert by_dir.stages == by_voice.stages == tuple(stage for stage, _ in voice.manifest.graphs.items())
    spec = voice.manifest.graphs.get("decoder")
    assert by_dir.input_names("decoder") == [s.name for s in spec.inputs]
    assert by_dir.input_ranks("decoder") == {s.name: len(s.shape) for s in spec.inputs}
    z = np.random.default_rng(0).standard_normal((1, voice.manifest.latent_channels, 7)).astype(np.float32)
    gin = spec.input("g").shape[1]
    feeds = {"z": z, "y_mask": np.ones((1, 1, 7), np.float32), "g": np.zeros((1, gin, 1), np.float32)}
    np.testing.assert_array_equal(by_dir.run("decoder", feeds)["audio"], by_voice.run("decoder", feeds)["audio"])
    with pytest.raises(VitsrtError, match="decoder: inputs \\['g'\\] are missing"):
        by_dir.run("decoder", {"z": z, "y_mask": feeds["y_mask"]})
