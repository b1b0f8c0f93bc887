"""`vitsrt export --format piper`: a small random multi-speaker VITS checkpoint -> VOICE.onnx + VOICE.onnx.json that
piper-tts's own `PiperVoice` loads and speaks, equal (noise 0, per sample) to the PyTorch model for every speaker;
then imported back with `import-piper` and checked against the exported piper graph again (round trip)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from vitsrt.cli import main
from vitsrt.config import parse_config
from vitsrt.errors import VitsrtError
from vitsrt.export.piper_export import export_piper_graph, export_piper_voice
from vitsrt.export.piper_import import (
    PIPER_TOLERANCE,
    ParityCase,
    PiperGraph,
    default_cases,
    import_piper,
    load_piper_voice,
    piper_parity,
    torch_synthesizer,
)
from vitsrt.sampling import Sampling
from vitsrt.text.inventory import default_phoneme_id_map
from vitsrt.train.models.vits import VitsSynthesizer

SPEAKERS = {"ann": 0, "bob": 1, "cyd": 2}


def tiny_config(n_speakers: int, use_sdp: bool = True) -> dict:
    id_map = default_phoneme_id_map()
    return {
        "family": "vits",
        "data": {"sampling_rate": 16000, "filter_length": 256, "hop_length": 64, "win_length": 256,
                 "n_speakers": n_speakers, "spk2id": SPEAKERS if n_speakers > 1 else {}},
        "train": {"segment_size": 1024},
        "model": {"num_symbols": len(id_map), "inter_channels": 8, "hidden_channels": 16, "filter_channels": 24,
                  "n_heads": 2, "n_layers": 2, "kernel_size": 3, "resblock": "2", "resblock_kernel_sizes": [3, 5],
                  "resblock_dilation_sizes": [[1, 2], [2, 6]], "upsample_rates": [8, 4, 2],
                  "upsample_initial_channel": 32, "upsample_kernel_sizes": [16, 8, 4],
                  "gin_channels": 8 if n_speakers > 1 else 0, "use_sdp": use_sdp},
        "frontend": {"kind": "ipa", "num_symbols": len(id_map), "phoneme_id_map": id_map, "add_blank": True,
                     "languages": {"en-us": 0}, "espeak_voices": {"en-us": "en-us"}, "num_languages": 1,
                     "num_tones": 1},
    }


def random_model(config: dict, seed: int = 0) -> VitsSynthesizer:
    """Every parameter random (fresh flows start as the identity, which would hide a wrong flow)."""
    model = VitsSynthesizer(parse_config(config))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        if model.multi_speaker:  # speakers far apart, so a wrong speaker cannot pass for the right one
            model.emb_g.weight.mul_(10.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, checkpoint dir, VOICE.onnx) for a 3-speaker voice exported with the piper format."""
    root = tmp_path_factory.mktemp("piper_export")
    config = tiny_config(3)
    model = random_model(config)
    torch.save(model.state_dict(), root / "G_1.pth")
    (root / "config.json").write_text(json.dumps(config))
    onnx_path = root / "out" / "tiny.onnx"
    code = main(["export", "--format", "piper", str(root / "G_1.pth"), "-c", str(root / "config.json"), "-o",
                 str(onnx_path), "--noise-scale", "0.5", "--noise-scale-w", "0.7", "--length-scale", "1.1"])
    assert code == 0 and onnx_path.is_file()
    return model, root, onnx_path


def _speech_ids(voice, text: str) -> list[int]:
    return voice.phonemes_to_ids(voice.phonemize(text)[0])


def test_the_onnx_json_carries_what_piper_reads(exported) -> None:
    _model, root, onnx_path = exported
    body = json.loads(onnx_path.with_name("tiny.onnx.json").read_text())
    config = json.loads((root / "config.json").read_text())
    assert body["audio"]["sample_rate"] == 16000 and body["hop_length"] == 64
    assert body["espeak"]["voice"] == "en-us" and body["phoneme_type"] == "espeak"
    assert body["phoneme_id_map"] == config["frontend"]["phoneme_id_map"]
    assert body["num_speakers"] == 3 and body["speaker_id_map"] == SPEAKERS
    assert body["inference"] == {"noise_scale": 0.5, "length_scale": 1.1, "noise_w": 0.7}
    model = onnx.load(str(onnx_path), load_external_data=False)
    assert [i.name for i in model.graph.input] == ["input", "input_lengths", "scales", "sid"]
    assert len(model.graph.output) == 1
    meta = {p.key: p.value for p in model.metadata_props}  # what sherpa-onnx reads
    assert meta["comment"] == "piper" and meta["n_speakers"] == "3" and meta["sample_rate"] == "16000"


def test_piper_tts_loads_and_speaks_it_like_the_torch_model(exported) -> None:
    piper = pytest.importorskip("piper", reason="piper-tts is not installed")
    from piper.config import SynthesisConfig

    model, _root, onnx_path = exported
    voice = piper.PiperVoice.load(onnx_path)
    chunks = list(voice.synthesize("Hello there. This is a small test."))
    assert len(chunks) == 2 and all(c.audio_int16_array.size > 0 for c in chunks)
    reference = torch_synthesizer(model)
    ids = _speech_ids(voice, "The quick brown fox jumps over the lazy dog.")
    for speaker in SPEAKERS.values():
        quiet = SynthesisConfig(speaker_id=speaker, noise_scale=0.0, noise_w_scale=0.0, length_scale=1.0,
                                normalize_audio=False)
        theirs = voice.phoneme_ids_to_audio(ids, quiet)
        ours = reference(ParityCase("fox", tuple(ids), speaker))
        assert theirs.shape == ours.shape
        assert float(np.abs(theirs - ours).max()) <= PIPER_TOLERANCE
    # Negative control: another speaker's audio is not within tolerance of speaker 0's.
    other = reference(ParityCase("fox", tuple(ids), 1))
    first = reference(ParityCase("fox", tuple(ids), 0))
    assert other.shape != first.shape or float(np.abs(other - first).max()) > PIPER_TOLERANCE


def test_the_piper_command_speaks_it(exported, tmp_path: Path) -> None:
    """piper-tts's own command line (`python -m piper`) writes the voice's audio for speaker 2 (noise off)."""
    piper = pytest.importorskip("piper", reason="piper-tts is not installed")
    model, _root, onnx_path = exported
    text = "The quick brown fox jumps over the lazy dog."
    wav_path = tmp_path / "fox.wav"
    subprocess.run([sys.executable, "-m", "piper", "-m", str(onnx_path), "-f", str(wav_path), "-s", "2",
                    "--noise-scale", "0", "--noise-w", "0", "--no-normalize"], input=text, text=True, check=True,
                   capture_output=True, timeout=120)
    with wave.open(str(wav_path)) as wav:
        assert wav.getframerate() == 16000
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    ids = _speech_ids(piper.PiperVoice.load(onnx_path), text)
    ours = torch_synthesizer(model)(ParityCase("fox", tuple(ids), 2))
    assert written.shape == ours.shape
    # piper writes int16(clip(audio) * 32767): truncation loses up to one step.
    assert float(np.abs(written / 32767.0 - np.clip(ours, -1, 1)).max()) <= 1 / 32767 + PIPER_TOLERANCE


def test_round_trip_export_import_is_exact_for_every_speaker(exported, tmp_path: Path) -> None:
    _model, _root, onnx_path = exported
    piper_config = load_piper_voice(onnx_path).piper
    generated = [c for c in default_cases(piper_config) if not c.label.startswith("sentence")]
    assert {c.speaker for c in generated} == set(SPEAKERS.values())  # every speaker is compared
    out, parity = import_piper(onnx_path, tmp_path / "voice", threads=1, cases=generated)
    assert set(parity) == {"torch vs piper graph", "bundle vs piper graph"}
    for name, figures in parity.items():
        assert figures.max_abs_diff <= PIPER_TOLERANCE, (name, figures)
    imported = load_piper_voice(onnx_path)
    assert set(imported.weights.count_by_origin()) == {"name"}  # our export keeps every parameter's name
    assert imported.config.speakers() == SPEAKERS
    from vitsrt.voice import load_voice

    manifest = load_voice(out).manifest
    assert manifest.speakers == SPEAKERS and manifest.front_end.kind == "piper"
    assert manifest.inference.noise_scale == 0.5 and manifest.inference.noise_scale_w == 0.7
    # Negative control: the graph of a differently initialised model does not pass against this one.
    graph = PiperGraph(onnx_path, threads=1)
    stranger = torch_synthesizer(random_model(tiny_config(3), seed=1))
    cases = default_cases(imported.piper)[:2]
    figures = piper_parity(lambda c: graph(c.ids, c.speaker), {"stranger": stranger}, cases)
    assert figures["stranger"].max_abs_diff > PIPER_TOLERANCE


def test_single_speaker_deterministic_duration_round_trip(tmp_path: Path) -> None:
    """No sid input, no emb_g, the deterministic duration predictor: still read back exactly."""
    config = tiny_config(1, use_sdp=False)
    model = random_model(config, seed=3)
    path = export_piper_graph(model, tmp_path / "one.onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input", "input_lengths", "scales"]
    from vitsrt.export.piper_export import piper_voice_config

    body = piper_voice_config(parse_config(config), model.n_vocab, Sampling(), dataset="one")
    (tmp_path / "one.onnx.json").write_text(json.dumps(body))
    imported = load_piper_voice(path)
    assert imported.config.n_speakers == 1 and not imported.config.model.use_sdp
    cases = [c for c in default_cases(imported.piper) if not c.label.startswith("sentence")][:3]
    reference = PiperGraph(path, threads=1)
    figures = piper_parity(lambda c: reference(c.ids, c.speaker),
                           {"rebuilt": torch_synthesizer(imported.model), "original": torch_synthesizer(model)}, cases)
    assert all(f.max_abs_diff <= PIPER_TOLERANCE for f in figures.values()), figures


def test_export_refuses_a_voice_piper_cannot_speak(tmp_path: Path) -> None:
    config = tiny_config(1)
    del config["frontend"]
    model = random_model(config)
    torch.save(model.state_dict(), tmp_path / "G.pth")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(VitsrtError, match="no 'frontend' section") as err:
        export_piper_voice(tmp_path / "G.pth", tmp_path / "config.json", tmp_path / "x.onnx")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_refuses_options_piper_has_no_place_for(exported, capsys) -> None:
    _model, root, onnx_path = exported
    args = ["export", "--format", "piper", str(root / "G_1.pth"), "-c", str(root / "config.json"), "-o",
            str(onnx_path.with_name("other.onnx"))]
    assert main([*args, "--weights", "fp16"]) == 2
    assert main([*args, "--noise-scale", "7"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "--weights fp16" in errors[0] and "--noise-scale" in errors[1]
    assert not onnx_path.with_name("other.onnx").exists()


def test_existing_files_are_kept_without_force(exported) -> None:
    _model, root, onnx_path = exported
    before = onnx_path.read_bytes()
    with pytest.raises(VitsrtError, match="exists"):
        export_piper_voice(root / "G_1.pth", root / "config.json", onnx_path)
    assert onnx_path.read_bytes() == before
