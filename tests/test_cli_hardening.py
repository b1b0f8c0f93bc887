"""CLI defects that used to end in a traceback, a silent no-op or a useless message: each is now a one-line
error with exit status 2, or works. The real CLI runs (in-process `vitsrt.cli.main` or a subprocess)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import REPO_ROOT
from vitsrt.benchmarks.evaluation import default_output_dir, heldout_for, read_heldout
from vitsrt.benchmarks.metrics import RequestTiming, summarize
from vitsrt.benchmarks.report import write_report
from vitsrt.benchmarks.schema import BenchReport, Environment, TargetInfo, WorkloadInfo
from vitsrt.cli import main
from vitsrt.errors import name_list

HAS_IPA = importlib.util.find_spec("phonemizer") is not None and importlib.util.find_spec("espeakng_loader") is not None


def _error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    """The one stderr line of a refused command (logging is quiet in these runs)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"vitsrt {command}: error: "), lines[0]
    return lines[0]


def _cli(args: list[str], cwd: Path, code: str = "") -> subprocess.CompletedProcess:
    """`vitsrt ARGS` in a fresh interpreter, after `code` (which can break an import on purpose)."""
    script = f"import sys\n{code}\nfrom vitsrt.cli import main\nsys.exit(main({args!r}))\n"
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, timeout=120)


# ----- 1. --backend torch ---------------------------------------------------------------------------------


def test_synth_torch_backend_refuses_a_voice_without_weights_or_checkpoint(tmp_path, capsys):
    pytest.importorskip("torch", reason="the torch backend needs the 'torch' extra")
    out = tmp_path / "x.wav"
    # the shipped default voice was exported before bundles carried weights.safetensors
    assert main(["-q", "synth", "--ids", "0 1 0", "--backend", "torch", "-o", str(out)]) == 2
    assert "has no weights.safetensors" in _error_line(capsys, "synth")
    assert main(["-q", "synth", "--ids", "0 1 0", "--checkpoint", "G.pth", "-o", str(out)]) == 2
    assert "go with --backend torch" in _error_line(capsys, "synth")
    assert not out.exists()


@pytest.fixture(scope="module")
def torch_voice(request) -> Path:
    pytest.importorskip("torch", reason="the torch backend needs the 'torch' extra")
    return request.getfixturevalue("small_22k_voice")


def test_synth_torch_backend_runs_the_checkpoint_like_onnxruntime(torch_voice, tmp_path):
    checkpoint = torch_voice.parent / "ckpt"
    common = ["-q", "synth", "-v", str(torch_voice), "--ids", "0 5 0 9 0 12 0 7 0", "--seed", "3",
              "--speaker", "ben"]
    assert main([*common, "-o", str(tmp_path / "ort.wav")]) == 0
    assert main([*common, "--backend", "torch", "--checkpoint", str(checkpoint / "G_0.pth"),
                 "--config", str(checkpoint / "config.json"), "-o", str(tmp_path / "torch.wav")]) == 0
    ort, _ = soundfile.read(tmp_path / "ort.wav", dtype="int16")
    eager, rate = soundfile.read(tmp_path / "torch.wav", dtype="int16")
    assert rate == 22050 and len(eager) == len(ort) > 0 and np.abs(eager).max() > 100
    assert np.abs(eager.astype(np.int32) - ort).max() <= 4  # same model, two runtimes: a few LSB at most


# ----- 2. unknown speaker ---------------------------------------------------------------------------------


def test_synth_unknown_speaker_lists_the_voice_speakers(tmp_path, capsys):
    out = tmp_path / "x.wav"
    assert main(["-q", "synth", "Hello there.", "--speaker", "bob", "-o", str(out)]) == 2
    line = _error_line(capsys, "synth")
    assert line.endswith("unknown speaker 'bob' for voice 'vitsrt-default'; available: awb, kal, rms, slt")
    assert not out.exists()


def test_name_list_shows_twenty_and_counts_the_rest():
    names = [f"spk{i:03d}" for i in range(250)]
    shown = name_list(names)
    assert shown.startswith("spk000, spk001,") and shown.endswith("spk019, ... (230 more)")
    assert name_list(names[:20]) == ", ".join(names[:20])  # exactly the limit: nothing cut


# ----- 3. the output path ---------------------------------------------------------------------------------


def test_synth_output_missing_folder_fails_before_synthesis(tmp_path, capsys):
    # A voice folder that does not exist either: the output is checked first, before any loading.
    out = tmp_path / "nodir" / "x.wav"
    assert main(["-q", "synth", "hi", "-v", str(tmp_path / "novoice"), "-o", str(out)]) == 2
    assert "nodir' does not exist" in _error_line(capsys, "synth")


def test_synth_output_unsupported_type_lists_the_supported_ones(tmp_path, capsys):
    assert main(["-q", "synth", "hi", "-o", str(tmp_path / "x.mp3")]) == 2
    assert "unsupported file type; use .wav, .flac or - (WAV on standard output)" in _error_line(capsys, "synth")


@pytest.mark.skipif(not HAS_IPA, reason="the default voice speaks text through the 'ipa' extra")
def test_synth_output_dash_writes_wav_to_stdout(tmp_path):
    result = _cli(["synth", "Hello there.", "-o", "-"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    audio, rate = soundfile.read(__import__("io").BytesIO(result.stdout), dtype="int16")
    assert rate == 16000 and len(audio) > 1000
    assert "wrote WAV to standard output" in result.stderr.decode()
    assert list(tmp_path.iterdir()) == []


# ----- 4. the ipa extra missing ---------------------------------------------------------------------------


def test_text_without_ipa_extra_is_one_line_naming_the_extra(tmp_path):
    # None in sys.modules makes `import phonemizer` raise ImportError: what a default install does.
    result = _cli(["-q", "synth", "Hello there.", "-o", str(tmp_path / "x.wav")], cwd=tmp_path,
                  code="sys.modules['phonemizer'] = None")
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("vitsrt synth: error: ") and "pip install 'vitsrt[ipa]'" in lines[0]
    assert not (tmp_path / "x.wav").exists()


# ----- 5. eval from any folder ----------------------------------------------------------------------------


def test_eval_defaults_resolve_from_another_folder(tmp_path):
    # A full eval needs Whisper; an unknown recogniser is refused right after the voice and the held-out
    # sentences are resolved, so reaching that error shows both defaults work outside the checkout.
    result = _cli(["-q", "eval", "--asr", "nope"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode().strip() == "vitsrt eval: error: asr: unknown ASR 'nope'; available: faster-whisper"
    assert list(tmp_path.iterdir()) == []


def test_builtin_heldout_matches_the_recipe_file():
    sentences, source = heldout_for(None)
    assert sentences == read_heldout(REPO_ROOT / "recipes" / "default-voice" / "heldout.txt")
    assert source.startswith("vitsrt.heldout")


def test_eval_output_dir_defaults_to_the_records_only_in_a_checkout(tmp_path):
    assert default_output_dir(tmp_path) == tmp_path
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    assert default_output_dir(tmp_path) == tmp_path / "benchmarks" / "results"


def test_eval_missing_heldout_file_and_unknown_speaker_are_one_line(tmp_path, capsys):
    assert main(["-q", "eval", "--heldout", str(tmp_path / "none.txt"), "--asr", "nope"]) == 2
    assert "heldout: cannot read" in _error_line(capsys, "eval")
    assert main(["-q", "eval", "--speakers", "kal", "bob", "--asr", "nope"]) == 2
    assert "no speaker 'bob'; available: awb, kal, rms, slt" in _error_line(capsys, "eval")


# ----- 6. bench --compare with --plot / --json ------------------------------------------------------------


def _report(path: Path, label: str, ttfa_s: float) -> Path:
    timing = RequestTiming(sent_at=0.0)
    timing.add_chunk(ttfa_s, 1.0)
    timing.latency_s = ttfa_s
    write_report(BenchReport(
        created="2026-01-01T00:00:00+00:00", command="test", target=TargetInfo(kind="fake", label=label, stream=True),
        environment=Environment(cpu="cpu", cpu_cores=2, platform="p", python="3"),
        workload=WorkloadInfo(source="s", texts=1, words_min=1, words_max=1, words_mean=1, stand_in_ids=False,
                              seed=0, warmup=0),
        levels=[summarize([timing], mode="closed", concurrency=1)],
    ), path)
    return path


def test_bench_compare_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the 'bench' extra")
    a, b = _report(tmp_path / "a.json", "slow", 0.4), _report(tmp_path / "b.json", "fast", 0.2)
    plot = tmp_path / "cmp.png"
    assert main(["-q", "bench", "--compare", str(a), str(b), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_compare_refuses_json(tmp_path, capsys):
    a, b = _report(tmp_path / "a.json", "slow", 0.4), _report(tmp_path / "b.json", "fast", 0.2)
    assert main(["-q", "bench", "--compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 2
    assert "--compare only reads reports" in _error_line(capsys, "bench")
    assert not (tmp_path / "c.json").exists()


# ----- the smaller ones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["", "-o", "x.wav"], "text: is empty"),
    (["hi", "--speaker", "bob", "-v", "novoice", "-o", "x.wav"], "novoice: not a directory"),
    (["--tones", "0 0", "hi", "-o", "x.wav"], "--tones and --languages go with --ids"),
])
def test_synth_bad_inputs_are_one_line_errors(args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "synth", *args]) == 2
    assert expected in _error_line(capsys, "synth")
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--ids", "a b"], "argument --ids: expected integers"),
    (["--seed", "-1"], "argument --seed: expected an integer from 0 to 2**64-1, got '-1'"),
])
def test_synth_bad_flags_are_usage_errors(args, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["synth", *args, "-o", str(tmp_path / "x.wav")])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_client_against_a_closed_port_is_one_line(tmp_path, capsys):
    server = f"127.0.0.1:{_closed_port()}"
    assert main(["-q", "client", "hello", "--server", server, "-o", str(tmp_path / "x.wav")]) == 2
    assert f"no vitsrt server answers at '{server}' (UNAVAILABLE: " in _error_line(capsys, "client")
    assert main(["-q", "client", "--ids", "a b", "--server", server]) == 2
    assert "ids: expected comma-separated integers, got 'a b'" in _error_line(capsys, "client")
    assert main(["-q", "client", "hello", "--server", server, "-o", str(tmp_path / "x.mp3")]) == 2
    assert "use .wav or -" in _error_line(capsys, "client")
