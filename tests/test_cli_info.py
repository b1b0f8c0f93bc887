import json
import subprocess
import sys

from conftest import REPO_ROOT


def _vitsrt(*args):
    return subprocess.run([sys.executable, "-m", "vitsrt.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)


def test_info_on_fixture(fixture_dir):
    result = _vitsrt("info", str(fixture_dir / "G_0.pth"), "-c", str(fixture_dir / "config.json"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Bert-VITS2 2.3" in out and "44100 Hz" in out and "alice=0, bob=1" in out
    for prefix, count in (("enc_p", "156,704"), ("dec", "62,954"), ("flow", "311,104"), ("total", "1,076,059")):
        assert any(line.split()[:2] == [prefix, count] for line in out.splitlines()), prefix
    as_json = json.loads(_vitsrt("info", str(fixture_dir / "G_0.pth"), "-c", str(fixture_dir / "config.json"),
                                 "--json").stdout)
    assert as_json["parameters"]["sdp"] == 51824 and as_json["decoder_context_frames"] == 13


def test_info_on_corrupt_file_is_one_line_nonzero(fixture_dir, tmp_path):
    corrupt = tmp_path / "G_9.pth"
    corrupt.write_bytes((fixture_dir / "G_0.pth").read_bytes()[:100_000])
    result = _vitsrt("info", str(corrupt), "-c", str(fixture_dir / "config.json"))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("vitsrt info: error: ") and "is truncated or not a checkpoint" in result.stderr
    assert len(result.stderr.strip()) - len(str(corrupt)) <= 160, result.stderr


def test_info_on_unsupported_version(fixture_dir, tmp_path):
    config = json.loads((fixture_dir / "config.json").read_text())
    config["version"] = "2.1"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = _vitsrt("info", str(fixture_dir / "G_0.pth"), "-c", str(path))
    assert result.returncode != 0
    assert "unsupported version 2.1" in result.stderr and len(result.stderr.strip().splitlines()) == 1
