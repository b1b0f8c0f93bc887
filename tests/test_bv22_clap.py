"""CLAP towers for Bert-VITS2 2.2 emotion prompts: our ONNX export of the fixture's tiny CLAP stand-in, fed by our
numpy feature extractor and tokenizer (vitsrt.text.clap, no torch), reproduces upstream's clap_wrapper outputs
(fixture clap_cases.npz) to 1e-4 for three clips and four prompts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from bv22_helpers import exported_voice22, fixture22, load_npz  # noqa: E402

from vitsrt.export.clap import export_clap  # noqa: E402
from vitsrt.export.onnx_export import ExportError  # noqa: E402
from vitsrt.text.clap import (  # noqa: E402
    AUDIO_GRAPH,
    TEXT_GRAPH,
    ClapTokenizer,
    audio_features,
    decode_clip,
    log_mel,
    read_clap_manifest,
    read_mel_filters,
)
from vitsrt.voice import load_voice  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def clap_cases() -> dict[str, np.ndarray]:
    return load_npz("clap_cases.npz")


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    """The CLAP export bundled with the session's 2.2 voice (vitsrt export --clap)."""
    voice = exported_voice22(tmp_path_factory)
    return voice / load_voice(voice).manifest.emotion.clap_model


@pytest.fixture(scope="module")
def towers(clap_dir):
    manifest = read_clap_manifest(clap_dir)
    return {
        "manifest": manifest,
        "filters": read_mel_filters(clap_dir, manifest),
        "tokenizer": ClapTokenizer(clap_dir, manifest),
        "audio": ort.InferenceSession(str(clap_dir / AUDIO_GRAPH), providers=["CPUExecutionProvider"]),
        "text": ort.InferenceSession(str(clap_dir / TEXT_GRAPH), providers=["CPUExecutionProvider"]),
    }


def _features(towers, wave: np.ndarray) -> np.ndarray:
    return audio_features(wave, towers["manifest"], towers["filters"])


def _embed_audio(towers, features: np.ndarray) -> np.ndarray:
    return towers["audio"].run(None, {"input_features": np.ascontiguousarray(features, dtype=np.float32)})[0]


def _embed_text(towers, prompts: list[str]) -> np.ndarray:
    return towers["text"].run(None, towers["tokenizer"].feeds(prompts))[0]


def test_manifest_describes_the_stand_in(towers):
    manifest = towers["manifest"]
    assert (manifest.sampling_rate, manifest.fft_window_size, manifest.hop_length, manifest.max_samples) == (
        48000, 1024, 480, 480000)
    assert (manifest.num_mel_bins, manifest.frames, manifest.embedding_dim) == (64, 1001, 512)
    assert manifest.max_tokens == 512 and manifest.pad.id == 1


@pytest.mark.parametrize("clip", [0, 1, 2])
def test_wav_decodes_to_the_fixture_wave(clip, clap_cases):
    wave = decode_clip((fixture22() / f"clap_audio{clip}.wav").read_bytes(), 48000)
    np.testing.assert_array_equal(wave, clap_cases[f"audio{clip}_wave"])


@pytest.mark.parametrize("clip", [0, 1, 2])
def test_audio_features_and_embedding_match_upstream(towers, clap_cases, clip):
    features = _features(towers, clap_cases[f"audio{clip}_wave"])
    assert float(np.abs(features - clap_cases[f"audio{clip}_input_features"][0]).max()) <= TOL
    embedding = _embed_audio(towers, features[None])
    assert float(np.abs(embedding - clap_cases[f"audio{clip}_emb"].T).max()) <= TOL
    assert bool(clap_cases[f"audio{clip}_is_longer"].all())  # upstream's one-clip calls: fusion always on


def test_audio_batch_equals_single_clips(towers, clap_cases):
    features = np.stack([_features(towers, clap_cases[f"audio{i}_wave"]) for i in range(3)])
    batched = _embed_audio(towers, features)
    for i in range(3):
        assert float(np.abs(batched[i] - clap_cases[f"audio{i}_emb"][:, 0]).max()) <= TOL


@pytest.mark.parametrize("prompt", [0, 1, 2, 3])
def test_text_ids_and_embedding_match_upstream(towers, clap_cases, prompt):
    text = str(clap_cases[f"text{prompt}_prompt"])
    np.testing.assert_array_equal(towers["tokenizer"].encode(text), clap_cases[f"text{prompt}_input_ids"][0])
    embedding = _embed_text(towers, [text])
    assert float(np.abs(embedding - clap_cases[f"text{prompt}_emb"].T).max()) <= TOL


def test_padded_prompt_batch_equals_single_prompts(towers, clap_cases):
    prompts = [str(clap_cases[f"text{i}_prompt"]) for i in range(4)]
    batched = _embed_text(towers, prompts)
    for i in range(4):
        assert float(np.abs(batched[i] - clap_cases[f"text{i}_emb"][:, 0]).max()) <= TOL


def test_negative_controls(towers, clap_cases):
    """A clip one sample shorter and a prompt in other case miss the fixture: the checks above can fail."""
    wave = clap_cases["audio0_wave"][1:]
    features = _features(towers, wave)
    assert float(np.abs(features - clap_cases["audio0_input_features"][0]).max()) > TOL
    assert float(np.abs(_embed_audio(towers, features[None]) - clap_cases["audio0_emb"].T).max()) > TOL
    assert float(np.abs(_embed_text(towers, ["happy"]) - clap_cases["text0_emb"].T).max()) > TOL


def test_long_clip_is_cropped_deterministically(towers):
    """A 12 s clip: the global mel shrunk to 10 s plus the first, middle and last 10 s (upstream's crops are
    random); the same clip gives the same features every time."""
    manifest, filters = towers["manifest"], towers["filters"]
    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(12 * 48000)).astype(np.float32)
    features = _features(towers, wave)
    assert features.shape == (4, 1001, 64)
    mel = log_mel(wave, manifest, filters)
    last = mel.shape[0] - 1001
    for copy, start in ((1, 0), (2, last // 2), (3, last)):
        np.testing.assert_allclose(features[copy], mel[start : start + 1001], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(features, _features(towers, wave))
    assert np.isfinite(_embed_audio(towers, features[None])).all()


def test_export_is_reused(clap_dir):
    again = export_clap(fixture22() / "clap", clap_dir.parent)
    assert again.reused and again.directory == clap_dir


def test_not_a_clap_directory_is_refused(tmp_path):
    with pytest.raises(ExportError, match="not a directory"):
        export_clap(tmp_path / "missing", tmp_path / "out")
    source = tmp_path / "unfused"
    shutil.copytree(fixture22() / "clap", source)
    config = json.loads((source / "config.json").read_text())
    config["audio_config"]["enable_fusion"] = False
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="not the fused one"):
        export_clap(source, tmp_path / "out")
    config["model_type"] = "bert"
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="is not 'clap'"):
        export_clap(source, tmp_path / "out")
