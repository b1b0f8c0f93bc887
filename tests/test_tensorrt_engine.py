"""Real TensorRT (and the GPU onnxruntime providers) on a GPU machine; every test here skips with the
reason where TensorRT, cuda-python, a GPU or the provider is missing (as on CPU-only CI).

Builds fp32 plans (TF32 off) for the fixture voice with small profiles, then checks the TensorRT
backend stage by stage against onnxruntime CPU, streaming through the engine (with CUDA graphs for the
repeated window shapes), and an fp16 build through both precision routes against fp32.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest

pytestmark = [pytest.mark.gpu]


def _tensorrt_or_skip():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    if not hasattr(trt, "Builder"):
        pytest.skip("the installed tensorrt package is a stub without runtime libraries")
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python is not installed")
    from vitsrt.serve.backends.tensorrt_runtime import cuda_check, import_cudart

    try:
        count = cuda_check(import_cudart().cudaGetDeviceCount())
    except Exception as exc:  # no driver / no device: any CUDA error means "no GPU here"
        pytest.skip(f"no usable CUDA device ({exc})")
    if not count:
        pytest.skip("no CUDA device")
    return trt


def _request(tokens: int, seed: int) -> SynthesisRequest:
    rng = np.random.default_rng(seed)
    ids = [0 if i % 2 == 0 else int(rng.integers(1, 112)) for i in range(tokens)]
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=ids), seed=seed, sdp_ratio=0.5)


@pytest.fixture(scope="module")
def trt_voice(fixture_voice, tmp_path_factory):
    _tensorrt_or_skip()
    from vitsrt.export.tensorrt_build import BuildOptions, ProfileLimits, build_engines

    voice_dir = tmp_path_factory.mktemp("trt") / "voice"
    shutil.copytree(fixture_voice, voice_dir)
    limits = ProfileLimits(max_batch=4, max_text_len=256, max_frames=1024)
    build_engines(voice_dir, BuildOptions(precision="fp32", limits=limits, workspace_gb=2))
    return voice_dir


@pytest.mark.tensorrt
def test_fp32_plans_match_onnxruntime_per_stage_and_when_streaming(trt_voice):
    from vitsrt.voice import load_voice

    voice = load_voice(trt_voice)
    assert {e.stage for e in voice.manifest.engines} >= {"encoder", "duration", "flow", "decoder"}
    options = EngineOptions(threads=1, max_wait_ms=1.0)
    requests = [_request(n, n) for n in (9, 57, 121)]
    with Engine.open([trt_voice], backend="tensorrt", options=options) as engine:
        streamed = [[c.audio for c in engine.stream(r)] for r in requests]
        again = [[c.audio for c in engine.stream(r)] for r in requests]  # CUDA graphs replay these shapes
        graphs = sum(len(p.graphs) for p in engine.pipeline().backend._stages["decoder"].profiles)
    with Engine.open([trt_voice], options=options) as engine:
        reference = [[c.audio for c in engine.stream(r)] for r in requests]
    for got, replay, want in zip(streamed, again, reference, strict=True):
        assert [len(c) for c in got] == [len(c) for c in want]
        assert np.abs(np.concatenate(got) - np.concatenate(want)).max() <= 1e-3
        assert np.abs(np.concatenate(replay) - np.concatenate(got)).max() <= 1e-6
    assert graphs > 0
    # negative control: a different seed is not within the tolerance
    with Engine.open([trt_voice], backend="tensorrt", options=options) as engine:
        other = np.concatenate([c.audio for c in engine.stream(requests[2].model_copy(update={"seed": 7}))])
    n = min(len(other), len(np.concatenate(reference[2])))
    assert np.abs(other[:n] - np.concatenate(reference[2])[:n]).max() > 1e-3


@pytest.mark.tensorrt
@pytest.mark.parametrize("strongly_typed", [False, True])
def test_fp16_plans_stay_close_to_fp32(trt_voice, tmp_path, strongly_typed):
    trt = _tensorrt_or_skip()
    from vitsrt.export.tensorrt_build import BuildOptions, ProfileLimits, build_engines, trt_major

    if not strongly_typed and trt_major(trt) >= 11:
        pytest.skip("TensorRT 11 has no FP16 builder flag (the strongly typed route covers it)")
    voice_dir = tmp_path / "voice"
    shutil.copytree(trt_voice, voice_dir)
    limits = ProfileLimits(max_batch=2, max_text_len=256, max_frames=1024)
    build_engines(voice_dir, BuildOptions(precision="fp16", limits=limits, strongly_typed=strongly_typed or None))
    request = _request(80, 3)
    with Engine.open([voice_dir], backend="tensorrt", backend_options={"precision": "fp16"}) as engine:
        half = engine.synthesize(request).audio
    with Engine.open([voice_dir], backend="tensorrt") as engine:
        full = engine.synthesize(request).audio
    n = min(len(half), len(full))  # fp16 durations may round differently by a frame
    assert abs(len(half) - len(full)) <= 2 * 512
    assert np.abs(half[:n] - full[:n]).max() <= 0.05 * max(np.abs(full).max(), 1e-3)


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_onnxruntime_gpu_providers_match_cpu(fixture_voice, provider):
    if provider not in ort.get_available_providers():
        pytest.skip(f"onnxruntime has no {provider} here")
    backend = "onnxruntime-cuda" if provider == "CUDAExecutionProvider" else "onnxruntime-tensorrt"
    request = _request(77, 5)
    with Engine.open([fixture_voice], backend=backend) as engine:
        got = np.concatenate([c.audio for c in engine.stream(request)])
    with Engine.open([fixture_voice]) as engine:
        want = np.concatenate([c.audio for c in engine.stream(request)])
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-3
