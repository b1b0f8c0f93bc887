"""Smoke test of the peer benchmark (vitsrt.benchmarks.peers) on a tiny piper voice: a random single-speaker
VITS (deterministic duration predictor) exported in piper's format, imported back into a vitsrt bundle, and both
spoken through the benchmark's own code paths with tiny settings. With both noise scales 0 the two sides must make
the same amount of audio for the same text (a different speaking rate on one side is caught: the negative
control)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("piper", reason="piper-tts is not installed (the bench extra)")
torch = pytest.importorskip("torch", reason="building the tiny voice needs torch")

from vitsrt.benchmarks import peers  # noqa: E402
from vitsrt.benchmarks.evaluation import score  # noqa: E402
from vitsrt.errors import VitsrtError  # noqa: E402

DETERMINISTIC = {"noise_scale": 0.0, "noise_scale_w": 0.0}
TEXTS = {"5w": peers.PEER_TEXTS["5w"], "20w-3s": peers.PEER_TEXTS["20w-3s"]}


def _tiny_vits_config() -> dict:
    from vitsrt.text.inventory import default_phoneme_id_map

    id_map = default_phoneme_id_map()
    return {
        "family": "vits",
        "data": {"sampling_rate": 16000, "filter_length": 256, "hop_length": 64, "win_length": 256, "n_speakers": 1},
        "train": {"segment_size": 1024},
        "model": {"num_symbols": len(id_map), "inter_channels": 8, "hidden_channels": 16, "filter_channels": 16,
                  "n_heads": 2, "n_layers": 1, "kernel_size": 3, "resblock": "2", "resblock_kernel_sizes": [3],
                  "resblock_dilation_sizes": [[1, 3]], "upsample_rates": [8, 8], "upsample_initial_channel": 16,
                  "upsample_kernel_sizes": [16, 16], "gin_channels": 0, "use_sdp": False},
        "frontend": {"kind": "ipa", "num_symbols": len(id_map), "phoneme_id_map": id_map, "add_blank": True,
                     "languages": {"en-us": 0}, "espeak_voices": {"en-us": "en-us"}, "num_languages": 1,
                     "num_tones": 1},
    }


@pytest.fixture(scope="module")
def voice(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(VOICE.onnx, VOICE.onnx.json, vitsrt bundle) of a tiny random voice."""
    from vitsrt.config import parse_config
    from vitsrt.export.piper_export import export_piper_voice
    from vitsrt.train.models.vits import VitsSynthesizer

    root = tmp_path_factory.mktemp("peers")
    config = _tiny_vits_config()
    model = VitsSynthesizer(parse_config(config))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        model.dp.proj.weight.mul_(0.1)
        model.dp.proj.bias.fill_(1.5)  # ~4.5 frames per id, so a speaking rate shows in the length
    torch.save(model.eval().state_dict(), root / "G_1.pth")
    (root / "config.json").write_text(json.dumps(config))
    onnx_path = export_piper_voice(root / "G_1.pth", root / "config.json", root / "tiny.onnx", verify=False)
    config_path = onnx_path.with_name(onnx_path.name + ".json")
    voice_dir = peers.imported_voice(onnx_path, config_path, cache_dir=root / "cache", verify=False)
    return onnx_path, config_path, voice_dir


def test_single_part_rows_and_equal_audio(voice) -> None:
    onnx_path, config_path, voice_dir = voice
    rows = peers.measure_single(onnx_path, config_path, voice_dir, [1], TEXTS, repeats=1, sampling=DETERMINISTIC)
    assert [(r["threads"], r["text"]) for r in rows] == [(1, "5w"), (1, "20w-3s")]
    assert [r["sentences"] for r in rows] == [1, 3]  # piper's chunks: one per sentence
    for row in rows:
        for side in ("piper", "vitsrt_oneshot", "vitsrt_stream"):
            got = row[side]
            assert len(got["samples"]) == 1 and 0 < got["first_audio_s"] <= got["latency_s"]
            assert got["rtf"] == pytest.approx(got["latency_s"] / got["audio_s"])
        # same voice, same text, no noise: the same amount of audio from piper, one-shot and streaming
        assert row["vitsrt_oneshot"]["audio_s"] == pytest.approx(row["piper"]["audio_s"], abs=1e-9)
        assert row["vitsrt_stream"]["audio_s"] == pytest.approx(row["piper"]["audio_s"], abs=1e-9)
        ratio = row["vitsrt_oneshot"]["latency_s"] / row["piper"]["latency_s"]
        assert row["oneshot_over_piper"] == pytest.approx(ratio)
        assert row["paired_oneshot_over_piper"] == pytest.approx(ratio)  # one repeat: the pair is the medians
    assert rows[1]["vitsrt_stream"]["chunks"] > 1  # three sentences cannot come as one chunk


def test_audio_length_check_sees_a_different_speaking_rate(voice) -> None:
    """Negative control for the equal-audio check: a slower rate on piper's side only changes its length."""
    onnx_path, config_path, voice_dir = voice
    text = TEXTS["5w"]
    engine = peers.open_engine(voice_dir, 1, 1)
    try:
        ours = peers.time_oneshot(engine, text, 1, DETERMINISTIC)
    finally:
        engine.close()
    piper = peers.open_piper(onnx_path, config_path, 1)
    same = peers.time_piper(piper, text, peers.piper_syn_config(DETERMINISTIC))
    slower = peers.time_piper(piper, text, peers.piper_syn_config({**DETERMINISTIC, "length_scale": 1.5}))
    assert same.audio_s == pytest.approx(ours.audio_s, abs=1e-9)
    assert slower.audio_s > ours.audio_s * 1.3


def test_concurrent_part_interleaves_every_config(voice) -> None:
    onnx_path, config_path, voice_dir = voice
    configs = peers.measure_concurrent(onnx_path, config_path, voice_dir, [(1, 2)], [(1, 1), (2, 1)],
                                       list(TEXTS.values()), clients=2, per_client=1, rounds=2,
                                       sampling=DETERMINISTIC, oneshot_lane_configs=[(2, 1)])
    assert [c["config"] for c in configs] == ["piper 1x2", "vitsrt 1x1", "vitsrt 2x1", "vitsrt 2x1 one-shot"]
    assert [c["side"] for c in configs] == ["piper", "vitsrt", "vitsrt", "vitsrt-oneshot"]
    assert configs[0]["workers"] == 2 and configs[2]["lanes"] == 2
    assert configs[0]["level"]["stages"] is None  # piper has no engine counters; the engine's are summed
    assert all(c["level"]["stages"]["worker_busy_s"]["decode"] > 0 for c in configs[1:])
    assert configs[3]["level"]["chunks_per_request"] == 1  # one-shot: one chunk per request
    for c in configs:
        level = c["level"]
        assert level["concurrency"] == 2 and level["requests"] == 4 and level["ok"] == 4 and level["errors"] == 0
        assert level["rtfx"] > 0 and level["ttfa_ms"]["p50"] <= level["latency_ms"]["p50"]
    # every configuration got the same requests: the same audio in total
    audio = [c["level"]["audio_s"] for c in configs]
    assert audio[1:] == pytest.approx([audio[0]] * 3, abs=1e-6)
    goals = peers.concurrent_goals(configs)
    names = [g["goal"] for g in goals]
    # the goals read streaming configurations, and one-shot only for its throughput against piper's best
    oneshot_goals = [name for name in names if "one-shot" in name]
    assert oneshot_goals == ["vitsrt 2x1 one-shot throughput / piper 1x2 (piper's best)"]
    assert "vitsrt 2x1 throughput / vitsrt 1x1 (one lane)" in names
    assert all(g["met"] in (True, False) for g in goals)
    lanes = next(g for g in goals if g["goal"] == "vitsrt 2x1 throughput / vitsrt 1x1 (one lane)")
    assert lanes["measured"] == pytest.approx(configs[2]["level"]["rtfx"] / configs[1]["level"]["rtfx"])
    table = peers.markdown({"concurrent": configs, "goals": goals})
    assert "| vitsrt 2x1 one-shot |" in table and "| piper 1x2 |" in table and lanes["goal"] in table


def test_command_writes_the_record(voice, tmp_path: Path) -> None:
    onnx_path, _config, voice_dir = voice
    out = tmp_path / "peers.json"
    code = peers.main(["--part", "single", "--piper-voice", str(onnx_path), "--voice-dir", str(voice_dir),
                       "--texts", "5w", "--threads", "1", "--repeats", "1", "--noise-scale", "0", "--noise-w", "0",
                       "--piper-spinning", "off",
                       "--json", str(out), "--markdown", str(tmp_path / "peers.md")])
    assert code == 0
    record = json.loads(out.read_text())
    for key in ("benchmark", "created", "command", "cpu", "load_avg_start", "load_avg_end", "versions", "voice",
                "texts", "single", "goals"):
        assert key in record, key
    assert record["sampling"] == DETERMINISTIC and "piper-tts" in record["versions"]
    assert record["piper_spinning"] == "off"
    assert "| 1 | 5w | 5/1 |" in (tmp_path / "peers.md").read_text()
    assert peers.main(["--part", "single", "--piper-voice", str(onnx_path), "--voice-dir", str(voice_dir),
                       "--texts", "nope"]) == 2


def test_wer_part_scores_both_sides(voice) -> None:
    onnx_path, config_path, voice_dir = voice

    class Fixed:  # a stand-in recogniser that always hears the same words
        name = "fixed"

        def transcribe(self, audio) -> str:
            assert audio.dtype.name == "float32" and audio.size > 0
            return "please close the gate"

    sentences = [TEXTS["5w"], "Another short line."]
    result = peers.measure_wer(onnx_path, config_path, voice_dir, sentences, Fixed(), takes=2, threads=1,
                               sampling=DETERMINISTIC)
    expected = sum(score(s, "please close the gate").word_edits for s in sentences) / sum(
        score(s, s).words for s in sentences)
    assert result["piper"]["clips"] == result["vitsrt"]["clips"] == 4
    assert result["piper"]["wer"] == pytest.approx(expected) and result["vitsrt"]["wer"] == pytest.approx(expected)
    assert result["wer_difference"] == pytest.approx(0.0)


def test_piper_takes_differ_only_within_one_session(voice) -> None:
    """Why the WER part renders every take through one PiperVoice: a new session repeats its noise."""
    import numpy as np

    onnx_path, config_path, _voice_dir = voice
    text = [TEXTS["5w"]]
    first = peers.open_piper(onnx_path, config_path, 1)
    take1, take2 = (peers.render_piper(first, text, {})[0][0] for _ in range(2))
    fresh = peers.render_piper(peers.open_piper(onnx_path, config_path, 1), text, {})[0][0]
    assert take1.shape == take2.shape and not np.array_equal(take1, take2)
    assert np.array_equal(fresh, take1)


def test_piper_session_settings(voice) -> None:
    onnx_path, config_path, _voice_dir = voice
    default = peers.open_piper(onnx_path, config_path, 2).session.get_session_options()
    assert default.intra_op_num_threads == 2
    with pytest.raises(RuntimeError):  # piper's own session: onnxruntime's default (spinning), no entry set
        default.get_session_config_entry("session.intra_op.allow_spinning")
    quiet = peers.open_piper(onnx_path, config_path, 1, spinning=False).session.get_session_options()
    assert quiet.intra_op_num_threads == 1 and quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_pairs_are_checked() -> None:
    assert peers.parse_pairs("2x4,1x2") == [(2, 4), (1, 2)]
    for bad in ("2x", "ax1", "0x2", "", "1x2x3"):
        with pytest.raises(VitsrtError):
            peers.parse_pairs(bad)
