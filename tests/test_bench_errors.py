"""Broken targets end `vitsrt bench` with one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import socket

from vitsrt.benchmarks.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fails_cleanly(capsys, args: list[str], *expected: str) -> str:
    assert main(["-q", "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("vitsrt bench: error: ")
    for text in expected:
        assert text in err, err
    return err


def test_server_down(capsys):
    port = _free_port()  # nothing listens there
    _fails_cleanly(capsys, ["--target", "grpc", "--server", f"127.0.0.1:{port}", "--connect-timeout", "1"],
                   f"cannot reach a gRPC server at 127.0.0.1:{port}")


def test_missing_voice_directory(capsys, tmp_path):
    _fails_cleanly(capsys, ["--voice", str(tmp_path / "nope")], "nope", "not a directory")


def test_directory_that_is_not_a_voice(capsys, tmp_path):
    _fails_cleanly(capsys, ["--voice", str(tmp_path)], "voice.json")


def test_unknown_speaker(capsys, fixture_voice):
    _fails_cleanly(capsys, ["--voice", str(fixture_voice), "--speaker", "nobody"], "no speaker 'nobody'")


def test_engine_target_without_a_voice_when_no_default_voice_is_installed(capsys, monkeypatch, tmp_path):
    from vitsrt import voices

    monkeypatch.setattr(voices, "DEFAULT_VOICE_DIR", tmp_path / "absent")
    _fails_cleanly(capsys, ["--target", "engine"], "default voice is not installed", "--voice")


def test_torch_target_without_checkpoint(capsys):
    _fails_cleanly(capsys, ["--target", "torch"], "--checkpoint")


def test_triton_target_without_a_server(capsys):
    # Whether or not the Triton target module is installed, the run ends with one clear line.
    err = _fails_cleanly(capsys, ["--target", "triton"])
    assert "--server" in err or "triton target is not available" in err


def test_compare_of_a_file_that_is_not_a_report(capsys, tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    _fails_cleanly(capsys, ["--compare", str(path), str(path)], "is not a vitsrt bench report")


def test_negative_control_a_good_run_exits_zero(capsys, fixture_voice):
    assert main(["-q", "--no-progress", "--voice", str(fixture_voice), "--requests", "1", "--warmup", "0",
                 "--lengths", "short", "--threads", "1"]) == 0
    assert "Traceback" not in capsys.readouterr().err
