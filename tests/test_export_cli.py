"""`vitsrt export` on bad input: one-line errors, a non-zero exit, and never a partial bundle.

Also the happy path through the CLI once (--no-verify, --force over a stale directory)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from export_helpers import fixture_files  # noqa: E402
from vitsrt.cli import main  # noqa: E402
from vitsrt.export import bundle  # noqa: E402
from vitsrt.export.onnx_export import ExportError  # noqa: E402
from vitsrt.export.verify import ParityError  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("vitsrt export: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".export-" in p.name or ".old-" in p.name)


def _config_variant(tmp_path: Path, **changes) -> Path:
    _, config = fixture_files()
    raw = json.loads(config.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__") if "__" in dotted else (None, dotted)
        (raw[section] if section else raw)[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_checkpoint_config_mismatch(tmp_path, capsys):
    checkpoint, _ = fixture_files()
    config = _config_variant(tmp_path, model__hidden_channels=48)
    out = tmp_path / "voices" / "v"
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(out))
    _assert_one_line_error(code, err, "shape mismatch", "config does not describe this checkpoint")
    assert not out.exists() and _leftovers(out.parent) == []


def test_unsupported_version(tmp_path, capsys):
    checkpoint, _ = fixture_files()
    config = _config_variant(tmp_path, version="2.1")
    out = tmp_path / "v"
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(out))
    _assert_one_line_error(code, err, "unsupported version 2.1")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_output_under_a_file_is_unwritable(tmp_path, capsys):
    checkpoint, config = fixture_files()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(blocker / "v"))
    _assert_one_line_error(code, err, "cannot write")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_parent(tmp_path, capsys):
    checkpoint, config = fixture_files()
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(parent / "v"))
    finally:
        parent.chmod(0o755)
    _assert_one_line_error(code, err, "cannot write")
    assert list(parent.iterdir()) == []


def test_non_empty_output_is_refused_without_force(tmp_path, capsys):
    checkpoint, config = fixture_files()
    out = tmp_path / "v"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(out))
    _assert_one_line_error(code, err, "not empty", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_name_and_opset(tmp_path, capsys):
    checkpoint, config = fixture_files()
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(tmp_path / "v"), "--name", "a b")
    _assert_one_line_error(code, err, "invalid voice name")
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(tmp_path / "v"), "--opset", "13")
    _assert_one_line_error(code, err, "opset 13")
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("failure", ["export", "verify"])
def test_failure_mid_export_leaves_nothing(tmp_path, capsys, monkeypatch, failure):
    """A failure after graphs were written (TensorRT check, parity) removes the staging directory."""

    def broken_export(model, out_dir, **kwargs):
        (Path(out_dir) / "encoder.onnx").write_bytes(b"partial")
        raise ExportError("encoder graph is not TensorRT-friendly: NonZero node 'x'")

    def fake_export(model, out_dir, **kwargs):
        path = Path(out_dir) / "decoder.onnx"
        path.write_bytes(b"not really a graph")
        return {"decoder": path}

    def broken_verify(model, graphs, **kwargs):
        raise ParityError("decoder graph differs from PyTorch by 0.5 (tolerance 0.0001)")

    if failure == "export":
        monkeypatch.setattr(bundle, "export_stages", broken_export)
    else:
        monkeypatch.setattr(bundle, "export_stages", fake_export)
        monkeypatch.setattr(bundle, "verify_and_report", broken_verify)
    checkpoint, config = fixture_files()
    out = tmp_path / "v"
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(out))
    _assert_one_line_error(code, err, "TensorRT-friendly" if failure == "export" else "differs from PyTorch")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_force_replaces_a_stale_bundle(tmp_path, capsys):
    checkpoint, config = fixture_files()
    out = tmp_path / "v"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, stdout, err = _cli(
        capsys, str(checkpoint), "-c", str(config), "-o", str(out), "--no-verify", "--force", "--name", "tiny-cli"
    )
    assert code == 0, err
    assert stdout.strip() == str(out)
    voice = load_voice(out)
    assert voice.manifest.name == "tiny-cli" and voice.manifest.parity is None
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["voice.json", "encoder.onnx", "duration.onnx", "duration_dp_only.onnx", "flow.onnx", "decoder.onnx",
         "weights.safetensors"]
    )
    assert _leftovers(tmp_path) == []
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {oct(0o644)}


def test_sampling_defaults_and_fp16_weights_through_the_cli(tmp_path, capsys):
    checkpoint, config = fixture_files()
    out = tmp_path / "voice"
    # verified, at the tolerances of fp16-stored weights
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(out), "--threads", "1",
                        "--noise-scale", "0.3", "--sdp-ratio", "0", "--weights", "fp16")
    assert code == 0, err
    manifest = load_voice(out).manifest
    assert (manifest.inference.noise_scale, manifest.inference.sdp_ratio) == (0.3, 0.0)
    assert manifest.inference.noise_scale_w == 0.9 and manifest.weights == "fp16"  # unset: upstream's value


@pytest.mark.parametrize(("flag", "value"), [("--noise-scale", "-1"), ("--sdp-ratio", "1.5"),
                                             ("--length-scale", "0")])
def test_bad_sampling_default_is_one_line_and_writes_nothing(tmp_path, capsys, flag, value):
    checkpoint, config = fixture_files()
    out = tmp_path / "voice"
    code, _, err = _cli(capsys, str(checkpoint), "-c", str(config), "-o", str(out), "--no-verify", flag, value)
    _assert_one_line_error(code, err, flag)
    assert not out.exists() and _leftovers(tmp_path) == []
