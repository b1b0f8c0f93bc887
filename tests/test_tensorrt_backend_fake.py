"""The TensorRT backend's orchestration on CPU, over in-process fakes of tensorrt and cuda-python
(tests/tensorrt_fakes.py): plans found by engine key, the tightest profile chosen per call, grow-only
device buffers, copies in and out, and CUDA-graph capture and replay for repeated decoder window shapes.
A wrong address, shape or copy would change the audio, which must equal onnxruntime's exactly (the
fakes execute the same ONNX graphs). Real-TensorRT tests: test_tensorrt_engine.py (GPU only)."""

from __future__ import annotations

import shutil
import sys
import types

import numpy as np
import pytest
from tensorrt_fakes import FakeCuda, make_plan, make_tensorrt

from vitsrt.export.tensorrt_build import ProfileLimits, engine_relpath, record_engines, stage_profiles
from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.pipeline import DecodeJob, VoicePipeline
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
from vitsrt.serve.engine.windows import ONE_SHOT, WindowPolicy, plan_windows
from vitsrt.voice import EngineKey, TensorRTEngine, load_voice, sha256_file

KEY = EngineKey(gpu_name="Fake GPU 9000", compute_capability="8.9", trt_version="10.99.0", precision="fp32")
LIMITS = ProfileLimits(max_batch=4, max_text_len=256, max_frames=600)


@pytest.fixture()
def fakes(monkeypatch):
    cuda = FakeCuda()
    runtime_module = types.ModuleType("cuda.bindings.runtime")
    for name in dir(cuda):
        if name.startswith("cuda"):
            setattr(runtime_module, name, getattr(cuda, name))
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = runtime_module
    package = types.ModuleType("cuda")
    package.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", package)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime_module)
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(cuda))
    return cuda


@pytest.fixture(scope="module")
def voice_with_fake_plans(fixture_voice, tmp_path_factory):
    voice_dir = tmp_path_factory.mktemp("fakeplans") / "voice"
    shutil.copytree(fixture_voice, voice_dir)
    voice = load_voice(voice_dir)
    entries = []
    for stage, _ in voice.manifest.graphs.items():
        profiles = [{name: [list(r.min), list(r.opt), list(r.max)] for name, r in p.shapes.items()}
                    for p in stage_profiles(voice.manifest, stage, LIMITS)]
        plan = voice_dir / engine_relpath(KEY, stage)
        plan.parent.mkdir(parents=True, exist_ok=True)
        plan.write_bytes(make_plan(str(voice.graph_path(stage)), profiles, voice.manifest.hop_length))
        entries.append(TensorRTEngine(stage=stage, key=KEY, file=engine_relpath(KEY, stage), sha256=sha256_file(plan)))
    record_engines(voice_dir, entries)
    return voice_dir


def _ids(tokens: int, seed: int) -> PhonemeIds:
    rng = np.random.default_rng(seed)
    return PhonemeIds(phone_ids=[0 if i % 2 == 0 else int(rng.integers(1, 112)) for i in range(tokens)])


def test_plans_are_found_for_this_gpu_and_missing_ones_explained(fakes, voice_with_fake_plans):
    from vitsrt.errors import VoiceError
    from vitsrt.serve.backends.base import open_backend

    backend = open_backend("tensorrt", load_voice(voice_with_fake_plans))
    assert backend.name == "tensorrt-fp32" and backend.key == KEY
    assert all(backend.has_stage(s) for s in ("encoder", "duration", "duration_dp_only", "flow", "decoder"))
    decoder = backend._stages["decoder"]
    assert [p.ranges["z"][2][2] for p in decoder.profiles] == [282, 600]  # window profile (256 + 2*13) first
    backend.close()
    with pytest.raises(VoiceError, match="vitsrt build-engines"):
        open_backend("tensorrt", load_voice(voice_with_fake_plans), precision="fp16")


def test_stage_outputs_equal_onnxruntime_and_graphs_replay_window_shapes(fakes, voice_with_fake_plans):
    from vitsrt.serve.backends.tensorrt_backend import TensorRTBackend

    voice = load_voice(voice_with_fake_plans)
    trt_pipeline = VoicePipeline(voice, TensorRTBackend(voice))
    ort_pipeline = VoicePipeline(voice, OnnxRuntimeBackend(voice, intra_op_threads=1))
    policy = WindowPolicy(first_frames=16, frames=64, one_shot_frames=0)
    for pipeline in (trt_pipeline, ort_pipeline):
        segments = [pipeline.segments_for(SynthesisRequest(phonemes=_ids(n, n), seed=n), n, n, policy)[0]
                    for n in (31, 77)]
        pipeline.prefill(segments)
        pipeline.flow(segments)
        pipeline.result = [np.concatenate(pipeline.decode([DecodeJob(s, w) for w in s.windows])) for s in segments]
        whole = plan_windows(segments[1].frames, pipeline.context, ONE_SHOT)[0]
        pipeline.one_shot = pipeline.decode([DecodeJob(segments[1], whole)])
    for got, want in zip(trt_pipeline.result, ort_pipeline.result, strict=True):
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5  # thread counts differ
    assert np.abs(trt_pipeline.one_shot[0] - ort_pipeline.one_shot[0]).max() <= 1e-5

    # Repeated window shapes: captured on the second sighting, replayed afterwards, same audio.
    backend = trt_pipeline.backend
    window_profile = backend._stages["decoder"].profiles[0]
    segment = trt_pipeline.segments_for(SynthesisRequest(phonemes=_ids(60, 5), seed=5), 9, 5, policy)[0]
    trt_pipeline.prefill([segment])
    trt_pipeline.flow([segment])
    job = DecodeJob(segment, segment.windows[1])  # a middle window: window + 2 * context frames
    outputs = [trt_pipeline.decode([job])[0] for _ in range(4)]
    assert window_profile.graphs and fakes.launches >= 3
    assert all(np.array_equal(o, outputs[0]) for o in outputs)
    reference = ort_pipeline.decode([DecodeJob(segment, segment.windows[1])])[0]
    assert np.abs(outputs[0] - reference).max() <= 1e-5
    addresses = {n: b.pointer for n, b in window_profile.buffers.items()}
    trt_pipeline.decode([DecodeJob(segment, segment.windows[-1])])  # another shape: buffers do not move
    assert {n: b.pointer for n, b in window_profile.buffers.items()} == addresses
    backend.close()
    assert fakes.memory == {}  # every device buffer freed


def test_shapes_outside_every_profile_are_a_clear_error(fakes, voice_with_fake_plans):
    from vitsrt.errors import VitsrtError
    from vitsrt.serve.backends.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(load_voice(voice_with_fake_plans))
    z = np.zeros((1, 32, 601), np.float32)
    with pytest.raises(VitsrtError, match="outside every TensorRT profile"):
        backend.run("decoder", {"z": z, "y_mask": np.ones((1, 1, 601), np.float32),
                                "g": np.zeros((1, 32, 1), np.float32)})
    backend.close()


def test_engine_streams_over_the_tensorrt_backend_like_onnxruntime(fakes, voice_with_fake_plans):
    request = SynthesisRequest(phonemes=_ids(101, 3), seed=42, sdp_ratio=0.4)
    options = EngineOptions(threads=1, max_wait_ms=1.0)
    with Engine.open([voice_with_fake_plans], backend="tensorrt", options=options) as engine:
        got = [c.audio for c in engine.stream(request)]
    with Engine.open([voice_with_fake_plans], options=options) as engine:
        want = [c.audio for c in engine.stream(request)]
    assert [len(c) for c in got] == [len(c) for c in want] and len(got) > 1
    assert np.abs(np.concatenate(got) - np.concatenate(want)).max() <= 1e-5
