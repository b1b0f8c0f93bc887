"""The torch backend from a voice directory alone: the bundle's weights.safetensors rebuilds the generator, its
audio equals onnxruntime's, and the CUDA execution scheme (buckets, static-buffer replay, autocast) is exact
where it claims to be; run here on the CPU (the same code paths, without the GPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch backend needs the 'torch' extra")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save  # noqa: E402

from vitsrt.errors import VoiceError  # noqa: E402
from vitsrt.serve.backends.torch_backend import WEIGHTS_NAME, TorchBackend, window_input_frames  # noqa: E402
from vitsrt.serve.engine.engine import Engine, EngineOptions  # noqa: E402
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest  # noqa: E402
from vitsrt.train.stage_runner import WEIGHTS_FORMAT, crop_output, pad_input  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402

# Same float32 model, two runtimes: measured 6e-7 max abs per sample on the small voice.
TORCH_VS_ORT = 1e-5


def ids_request(tokens: int, seed: int, **kwargs) -> SynthesisRequest:
    phones = [int(x) for x in np.random.default_rng(seed).integers(1, 100, tokens)]
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=phones), seed=seed, **kwargs)


REQUESTS = [ids_request(n, i, sdp_ratio=0.3, speaker=("ann", "ben", "cat")[i % 3])
            for i, n in enumerate([5, 21, 44, 80])]


@pytest.fixture(scope="module")
def voice(small_22k_voice) -> Path:
    return small_22k_voice


def _audio(voice_dir: Path, backend: str, requests=REQUESTS, stream: bool = False, **backend_options):
    options = EngineOptions(lanes=1, threads=1)
    with Engine.open([voice_dir], backend=backend, options=options, backend_options=backend_options or None) as e:
        if stream:
            return [np.concatenate([c.audio for c in e.stream(r)]) for r in requests]
        return [e.synthesize(r).audio for r in requests]


def _worst(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def ort_audio(voice):
    return _audio(voice, "onnxruntime")


def test_the_bundle_carries_the_inference_weights(voice):
    manifest = load_voice(voice).manifest
    with safe_open(str(voice / WEIGHTS_NAME), framework="pt") as f:
        metadata, keys = f.metadata(), list(f.keys())
        dtypes = {f.get_tensor(k).dtype for k in keys if f.get_tensor(k).is_floating_point()}
    assert metadata["format"] == WEIGHTS_FORMAT and metadata["family"] == "bert-vits2"
    assert metadata["version"] == manifest.model.version
    assert json.loads(metadata["graphs"]) == {s: spec.sha256 for s, spec in manifest.graphs.items()}
    assert json.loads(metadata["config"])["data"]["hop_length"] == manifest.hop_length
    assert not [k for k in keys if k.startswith("enc_q.")]  # training-only posterior encoder left out
    assert not [k for k in keys if k.endswith(("weight_g", "weight_v"))]  # weight norm folded
    assert dtypes == {torch.float32}


def test_torch_from_the_voice_directory_equals_onnxruntime(voice, ort_audio):
    eager = _audio(voice, "torch")
    assert all(np.abs(a).max() > 1e-3 for a in eager)
    assert _worst(eager, ort_audio) <= TORCH_VS_ORT


def test_a_changed_weight_is_seen(voice, ort_audio, tmp_path):
    """Negative control: one decoder tensor scaled by 1.01 in the bundle's weights moves the audio well past the
    tolerance (so the equality above is the bundle's weights speaking, not a shared code path)."""
    copy = tmp_path / "voice"
    shutil.copytree(voice, copy)
    with safe_open(str(copy / WEIGHTS_NAME), framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    state["dec.conv_post.weight"] = state["dec.conv_post.weight"] * 1.01
    (copy / WEIGHTS_NAME).write_bytes(save(state, metadata=metadata))
    changed = _audio(copy, "torch", REQUESTS[:2])
    assert max(float(np.abs(a - b).max()) for a, b in zip(changed, ort_audio, strict=False)) > 100 * TORCH_VS_ORT


def test_weights_missing_or_for_other_graphs_are_refused(voice, tmp_path):
    copy = tmp_path / "voice"
    shutil.copytree(voice, copy)
    with safe_open(str(copy / WEIGHTS_NAME), framework="pt") as f:
        metadata = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    other = {**json.loads(metadata["graphs"]), "decoder": "0" * 64}
    (copy / WEIGHTS_NAME).write_bytes(save(state, metadata={**metadata, "graphs": json.dumps(other)}))
    with pytest.raises(VoiceError, match="other graphs"):
        TorchBackend(load_voice(copy))
    del state["dec.conv_post.weight"]
    (copy / WEIGHTS_NAME).write_bytes(save(state, metadata=metadata))
    with pytest.raises(VoiceError, match=r"lacks dec\.conv_post\.weight"):
        TorchBackend(load_voice(copy))
    (copy / WEIGHTS_NAME).unlink()
    with pytest.raises(VoiceError, match="re-export"):
        TorchBackend(load_voice(copy))
    with pytest.raises(VoiceError, match="together"):
        TorchBackend(load_voice(voice), checkpoint=voice / "G_0.pth")


# ----- the CUDA scheme's shapes, exercised on the CPU --------------------------------------------------------


def test_window_shapes_follow_the_window_policy():
    # windows 16, 64, 128, 256 frames with 13 frames of context each side, and one-shot utterances up to 32
    assert window_input_frames(13) == (32, 42, 90, 154, 282)
    assert window_input_frames(0) == (16, 32, 64, 128, 256)


def test_padding_repeats_the_first_item_and_cropping_undoes_it():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    padded = pad_input(x, ("B", "latent", "F"), {"B": 4, "F": 6})
    assert padded.shape == (4, 3, 6)
    assert np.array_equal(padded[:2, :, :4], x) and not padded[:, :, 4:].any()
    assert np.array_equal(padded[2], padded[0]) and np.array_equal(padded[3], padded[0])
    audio = np.ones((4, 1, 6 * 8), np.float32)
    assert crop_output(audio, ("B", 1, "F*hop"), {"B": 2, "F": 4}, hop=8).shape == (2, 1, 32)
    # a speaker vector per frame (a speaker curve) follows F; a broadcast one (G = 1) stays one frame
    per_frame = pad_input(np.ones((2, 5, 4), np.float32), ("B", "gin", "G"), {"B": 2, "F": 6, "G": 6})
    assert per_frame.shape == (2, 5, 6) and not per_frame[:, :, 4:].any()
    assert pad_input(np.ones((2, 5, 1), np.float32), ("B", "gin", "G"), {"B": 4, "F": 6, "G": 1}).shape == (4, 5, 1)


def test_bucketed_replayed_execution_equals_plain_execution(voice):
    """Buckets pad every call (lengths to multiples of 32, batches to powers of two) and decoder windows run
    through captured static buffers (the CPU stand-in of a CUDA graph): exact, because every stage is masked."""
    plain = _audio(voice, "torch", stream=True)
    backend = {"buckets": True, "cuda_graphs": True}
    options = EngineOptions(lanes=1, threads=1)
    with Engine.open([voice], backend="torch", options=options, backend_options=backend) as engine:
        replayed = [np.concatenate([c.audio for c in engine.stream(r)]) for r in REQUESTS]
        runner = engine.pipeline().backend._runner
        assert runner.captured > 0  # the replay path really ran
        # a captured shape called again with other inputs gives those inputs' result, not the capture's
        decoder_key = next(key for key in runner._graphs if key[0] == "decoder")
        frames = dict(decoder_key[1])["F"] - 3
        rng = np.random.default_rng(0)
        inputs = [{"z": rng.standard_normal((1, 24, frames)).astype(np.float32),
                   "y_mask": np.ones((1, 1, frames), np.float32),
                   "g": rng.standard_normal((1, 16, 1)).astype(np.float32)} for _ in range(2)]
        before = runner.captured
        outs = [runner.run("decoder", i)["audio"] for i in inputs]
        assert runner.captured == before
        assert outs[0].shape == (1, 1, frames * 256)
        assert np.abs(outs[0] - outs[1]).max() > 1e-3
        eager = TorchBackend(load_voice(voice))
        for i, out in zip(inputs, outs, strict=True):
            assert np.abs(eager.run("decoder", i)["audio"] - out).max() <= 1e-5
        # a speaker vector per frame (a speaker curve) is padded with the frames: same result as unpadded
        curve = {**inputs[0], "g": rng.standard_normal((1, 16, frames)).astype(np.float32)}
        bucketed = runner.run("decoder", curve)["audio"]
        assert np.abs(eager.run("decoder", curve)["audio"] - bucketed).max() <= 1e-5
        assert np.abs(bucketed - outs[0]).max() > 1e-3  # the per-frame vectors were used
    assert _worst(replayed, plain) <= 1e-5


def test_streaming_equals_one_shot_on_torch(voice):
    one_shot = _audio(voice, "torch")
    streamed = _audio(voice, "torch", stream=True)
    assert _worst(streamed, one_shot) <= 1e-5


def test_bf16_autocast_keeps_durations_and_stays_near_float32(voice):
    """bf16 flow and decoder; encoder and durations stay float32, so every length is the same. Measured on the
    CPU: 0.006-0.010 max abs per sample on audio peaking at 0.5-0.7 (~1.5% of the peak)."""
    fp32 = _audio(voice, "torch")
    bf16 = _audio(voice, "torch", precision="bf16")
    worst = _worst(bf16, fp32)  # same shapes: the durations did not move
    assert 1e-4 < worst <= 0.05, worst


def test_synth_runs_torch_from_the_voice_directory_alone(voice, tmp_path, capsys):
    import soundfile

    from vitsrt.cli import main

    common = ["-q", "synth", "-v", str(voice), "--ids", "0 5 0 9 0 12 0 7 0", "--seed", "3", "--lanes", "2"]
    assert main([*common, "-o", str(tmp_path / "ort.wav")]) == 0
    assert main([*common, "--backend", "torch", "-o", str(tmp_path / "torch.wav")]) == 0
    ort, _ = soundfile.read(tmp_path / "ort.wav", dtype="int16")
    eager, _ = soundfile.read(tmp_path / "torch.wav", dtype="int16")
    assert len(eager) == len(ort) > 0 and np.abs(eager.astype(np.int32) - ort).max() <= 1
    assert main([*common, "--precision", "bf16", "-o", str(tmp_path / "x.wav")]) == 2  # onnxruntime: refused
    assert "--precision go with --backend torch" in capsys.readouterr().err
