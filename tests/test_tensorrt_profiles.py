"""CPU checks of the TensorRT build plan: optimization profiles, engine keys and names, voice.json
records, the TensorRT-EP profile strings, and a clean one-line failure without TensorRT."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from vitsrt.export.tensorrt_build import (
    ProfileLimits,
    TensorRTBuildError,
    engine_dir_name,
    engine_relpath,
    gpu_slug,
    ort_tensorrt_options,
    record_engines,
    stage_profiles,
    window_frames_range,
)
from vitsrt.serve.engine.windows import WindowPolicy, plan_windows
from vitsrt.voice import EngineKey, TensorRTEngine, load_voice, sha256_file

KEY = EngineKey(gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9", trt_version="10.3.0.26", precision="fp16")


def test_profiles_cover_batch_text_and_frames(fixture_voice):
    manifest = load_voice(fixture_voice).manifest
    limits = ProfileLimits(max_batch=8, max_text_len=300, max_frames=2000)
    (encoder,) = stage_profiles(manifest, "encoder", limits)
    assert encoder.shapes["phone_ids"].min == (1, 1)
    assert encoder.shapes["phone_ids"].opt == (4, 128)
    assert encoder.shapes["phone_ids"].max == (8, 300)
    assert encoder.shapes["bert"].max == (8, 1024, 300)  # fixed axes stay fixed
    assert encoder.shapes["speaker_weights"].max == (8, manifest.num_speakers) and encoder.shapes["lengths"].min == (1,)
    (duration,) = stage_profiles(manifest, "duration", limits)
    assert duration.shapes["sdp_noise"].max == (8, 2, 300) and duration.shapes["sdp_ratio"].opt == (4,)
    (flow,) = stage_profiles(manifest, "flow", limits)
    assert flow.shapes["z_p"].max == (8, manifest.latent_channels, 2000)
    assert flow.shapes["g"].min == (1, 32, 1)


def test_decoder_window_profile_covers_every_window_the_engine_plans(fixture_voice):
    manifest = load_voice(fixture_voice).manifest
    context = manifest.decoder_context_frames  # 13 for this layout
    policy = WindowPolicy(first_frames=16, frames=64, one_shot_frames=32, max_frames=256)
    windows, one_shot = stage_profiles(manifest, "decoder", ProfileLimits(max_frames=3000), policy)
    assert windows.name == "windows" and one_shot.name == "one-shot"
    assert windows.shapes["z"].opt[2] == 64 + 2 * context  # the steady-state window
    assert windows.shapes["z"].max[2] == 256 + 2 * context  # windows double from 64 up to 256
    assert windows.shapes["z"].min[2] == 1
    assert one_shot.shapes["z"].max[2] == 3000
    # every decoder call the engine makes for streamed utterances fits the window profile
    for frames in (1, 15, 16, 17, 32, 33, 80, 81, 145, 1000):
        for window in plan_windows(frames, context, policy):
            assert windows.contains({"z": (1, manifest.latent_channels, window.input_frames),
                                     "y_mask": (1, 1, window.input_frames), "g": (1, 32, 1)})
    # a 64-frame window (64 + 26) is the optimum; the 256-frame cap (+ 26) bounds the profile
    assert window_frames_range(context, policy) == (1, 90, 282)
    assert window_frames_range(context, WindowPolicy(first_frames=300, frames=64)) == (1, 90, 326)


def test_decoder_has_one_profile_when_max_frames_fits_the_windows(fixture_voice):
    manifest = load_voice(fixture_voice).manifest
    assert [p.name for p in stage_profiles(manifest, "decoder", ProfileLimits(max_frames=64))] == ["windows"]


def test_bad_limits_are_refused():
    with pytest.raises(TensorRTBuildError):
        ProfileLimits(max_batch=0)
    with pytest.raises(TensorRTBuildError):
        ProfileLimits(max_batch=4, opt_batch=5)


def test_engine_key_naming():
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert engine_dir_name(KEY) == "nvidia-geforce-rtx-4090_sm89_trt10.3.0.26_fp16"
    assert engine_relpath(KEY, "decoder") == "engines/nvidia-geforce-rtx-4090_sm89_trt10.3.0.26_fp16/decoder.plan"
    other = KEY.model_copy(update={"precision": "fp32"})
    assert engine_relpath(other, "decoder") != engine_relpath(KEY, "decoder")


def test_recorded_plans_are_found_by_key_and_replaced_on_rebuild(fixture_voice, tmp_path):
    voice_dir = tmp_path / "voice"
    shutil.copytree(fixture_voice, voice_dir)
    plan = voice_dir / engine_relpath(KEY, "decoder")
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"not a real plan")
    entry = TensorRTEngine(stage="decoder", key=KEY, file=engine_relpath(KEY, "decoder"), sha256=sha256_file(plan))
    record_engines(voice_dir, [entry])
    record_engines(voice_dir, [entry])  # a rebuild replaces, never duplicates
    voice = load_voice(voice_dir)
    assert len(voice.manifest.engines) == 1
    assert voice.engine_paths(KEY) == {"decoder": plan}
    assert voice.engine_paths(KEY.model_copy(update={"gpu_name": "NVIDIA A10"})) == {}
    plan.write_bytes(b"tampered")
    with pytest.raises(Exception, match="SHA-256"):
        load_voice(voice_dir)


def test_onnxruntime_tensorrt_provider_profiles(fixture_voice):
    manifest = load_voice(fixture_voice).manifest
    options = ort_tensorrt_options(manifest, "decoder", ProfileLimits(max_batch=4, max_frames=1000), precision="fp16")
    assert options["trt_profile_min_shapes"] == "z:1x32x1,y_mask:1x1x1,g:1x32x1"
    assert options["trt_profile_opt_shapes"] == "z:2x32x90,y_mask:2x1x90,g:2x32x1"
    # g's frames ("G"): 1 (one vector, the opt) up to every frame (a speaker curve's per-frame vectors)
    assert options["trt_profile_max_shapes"] == "z:4x32x1000,y_mask:4x1x1000,g:4x32x1000"
    assert options["trt_fp16_enable"] is True and options["trt_layer_norm_fp32_fallback"] is True


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_engines_without_tensorrt_exits_with_one_line(fixture_voice, capsys):
    from vitsrt.cli import main

    assert main(["build-engines", str(fixture_voice), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TensorRT is not importable" in err
