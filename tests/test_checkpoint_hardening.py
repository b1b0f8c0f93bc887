"""`vitsrt info CKPT -c CONFIG` on hostile or mismatched files: exit 2 and one short stderr line, never a
traceback, never torch's advice to retry unsafely, never a model allocated from a config that is not the
checkpoint's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import REPO_ROOT  # noqa: E402
from vitsrt.cli import main  # noqa: E402


class _RunsShell:
    """Unpickling this runs a shell command (here: one that creates a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _info_error(capsys, checkpoint: Path, config: Path) -> str:
    """Run `vitsrt info`; assert exit 2 and exactly one stderr line; return that line's message."""
    code = main(["info", str(checkpoint), "-c", str(config)])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vitsrt info: error: "), lines[0]
    assert captured.out == ""
    return lines[0].removeprefix("vitsrt info: error: ")


def _config(fixture_dir: Path, tmp_path: Path, section: str | None = None, **changes) -> Path:
    raw = json.loads((fixture_dir / "config.json").read_text())
    (raw[section] if section else raw).update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _fixture_state(fixture_dir: Path) -> dict:
    return torch.load(fixture_dir / "G_0.pth", map_location="cpu", weights_only=True)


def test_hostile_pickle_is_refused_without_the_unsafe_advice(fixture_dir, tmp_path, capsys):
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "G_evil.pth"
    state = _fixture_state(fixture_dir)
    state["optimizer"] = _RunsShell(marker)  # a real upstream layout with one poisoned entry
    torch.save(state, checkpoint)
    message = _info_error(capsys, checkpoint, fixture_dir / "config.json")
    assert message == (
        f"{checkpoint} is not a plain checkpoint: it asks to run code (os.system); refused "
        "(only tensors and plain containers are loaded)"
    )
    assert "weights_only" not in message
    assert not marker.exists()


def test_absurd_hidden_channels_fails_in_the_schema(fixture_dir, tmp_path, capsys):
    config = _config(fixture_dir, tmp_path, "model", hidden_channels=1e6)
    message = _info_error(capsys, fixture_dir / "G_0.pth", config)
    assert message == f"{config}: invalid model.hidden_channels: Input should be less than or equal to 8192"


@pytest.mark.parametrize(
    ("section", "changes", "expected"),
    [
        ("model", {"hidden_channels": 64}, "shape mismatch for enc_p.emb.weight: expected [112, 64] "
         "(from model.hidden_channels = 64 in {config}), found [112, 32]"),
        ("model", {"n_heads": 4}, "shape mismatch for enc_p.encoder.attn_layers.0.emb_rel_k: expected [1, 9, 8] "
         "(from model.n_heads = 4 in {config}), found [1, 9, 16]"),
        ("model", {"upsample_initial_channel": 64}, "shape mismatch for dec.conv_pre.weight: expected [64, 32, 7]"),
        ("data", {"n_speakers": 5}, "shape mismatch for emb_g.weight: expected [5, 32] (from data.n_speakers = 5"),
        ("data", {"filter_length": 1024, "win_length": 1024}, "shape mismatch for enc_q.pre.weight: expected "
         "[32, 513, 1] (from data.filter_length = 1024"),
        ("model", {"n_layers": 4}, "{config} has model.n_layers = 4 but the checkpoint has 3 "
         "enc_p.encoder.attn_layers.N"),
        ("model", {"use_transformer_flow": False}, "{config} has model.use_transformer_flow = false but the "
         "checkpoint has flow.flows.0.enc.attn_layers.* keys"),
        ("model", {"resblock": "2"}, '{config} has model.resblock = "2" but the checkpoint has '
         "dec.resblocks.0.convs1.* keys"),
    ],
)
def test_config_sizes_are_checked_against_the_checkpoint_by_field(fixture_dir, tmp_path, capsys, section, changes,
                                                                   expected):
    config = _config(fixture_dir, tmp_path, section, **changes)
    message = _info_error(capsys, fixture_dir / "G_0.pth", config)
    assert expected.format(config=config) in message, message
    assert message.endswith("the config does not describe this checkpoint")


def test_a_mismatched_size_never_builds_the_model(fixture_dir, tmp_path):
    # hidden_channels=1024 is within the schema's limits but would allocate a ~1.1 GB generator; the check
    # against the checkpoint's tensors must fail before that (the whole process stays far below it).
    config = _config(fixture_dir, tmp_path, "model", hidden_channels=1024)
    # The peak is read from VmHWM, which belongs to this process's own address space: ru_maxrss survives
    # execve, so a child forked from a large pytest process would report the parent's size.
    script = (
        "import sys\nfrom pathlib import Path\nfrom vitsrt.cli import main\n"
        f"code = main(['info', {str(fixture_dir / 'G_0.pth')!r}, '-c', {str(config)!r}])\n"
        "status = Path('/proc/self/status').read_text().splitlines()\n"
        "print(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\nsys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=300)
    assert result.returncode == 2, result.stderr
    assert "shape mismatch for enc_p.emb.weight" in result.stderr
    peak_mib = int(result.stdout.strip()) / 1024  # VmHWM is in KiB
    assert peak_mib < 900, f"peak RSS {peak_mib:.0f} MiB: the model was built before the check"


def test_a_config_of_another_model_is_one_summary_line(fixture_dir, tmp_path, capsys):
    raw = _fixture_state(fixture_dir)
    raw["model"] = {f"net_g.{k}": v for k, v in raw["model"].items()}  # wrapped: no key where the model has it
    checkpoint = tmp_path / "G_wrapped.pth"
    torch.save(raw, checkpoint)
    config = fixture_dir / "config.json"
    message = _info_error(capsys, checkpoint, config)
    assert message.startswith(
        f"{config} does not describe {checkpoint}: 999 of 999 model tensors are not in the checkpoint and 999 of "
        "999 checkpoint tensors have no place in the model (e.g. missing key enc_p.emb.weight, unexpected key "
    )
    assert message.endswith("; is this the config of this checkpoint?")
    assert len(message) - len(str(config)) - len(str(checkpoint)) < 260, message


def test_one_missing_key_is_still_named_precisely(fixture_dir, tmp_path, capsys):
    raw = _fixture_state(fixture_dir)
    del raw["model"]["dec.conv_post.weight"]
    checkpoint = tmp_path / "G_one_missing.pth"
    torch.save(raw, checkpoint)
    message = _info_error(capsys, checkpoint, fixture_dir / "config.json")
    assert message == f"{checkpoint}: missing key dec.conv_post.weight (expected shape [1, 1, 7])"


def _truncated(fixture_dir: Path, path: Path) -> None:
    path.write_bytes((fixture_dir / "G_0.pth").read_bytes()[:100_000])


def _plain_zip(_fixture_dir: Path, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a checkpoint")


def _model_is_a_list(_fixture_dir: Path, path: Path) -> None:
    torch.save({"model": [torch.zeros(2)], "iteration": 1}, path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated, "is truncated or not a checkpoint (PytorchStreamReader failed reading zip archive)"),
        (lambda _fixture, path: path.mkdir(), "is a directory, not a checkpoint file"),
        (lambda _fixture, path: path.write_bytes(b""), "is empty, not a checkpoint"),
        (_plain_zip, "is a zip archive but not a PyTorch checkpoint (file in archive is not in a subdirectory)"),
        (_model_is_a_list, ": its 'model' entry is a list, not a state_dict"),
    ],
    ids=["truncated", "directory", "empty", "plain-zip", "model-is-a-list"],
)
def test_bad_checkpoint_files(fixture_dir, tmp_path, capsys, make, expected):
    checkpoint = tmp_path / "G_bad.pth"
    make(fixture_dir, checkpoint)
    message = _info_error(capsys, checkpoint, fixture_dir / "config.json")
    assert message == f"{checkpoint}{' ' if expected[0] != ':' else ''}{expected}"
    assert len(message) - len(str(checkpoint)) <= 160


def _info_in_thread(capsys, checkpoint: Path, config: Path) -> str:
    """_info_error, failing (not hanging the suite) if the command blocks on a FIFO."""
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(_info_error(capsys, checkpoint, config)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "vitsrt info blocked reading a FIFO"
    assert result, "the command raised (see the thread's traceback above)"
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_refused_without_blocking(fixture_dir, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    message = _info_in_thread(capsys, fifo, fixture_dir / "config.json")
    assert message == f"{fifo} is not a regular file (a FIFO, device or socket cannot be a checkpoint)"
    message = _info_in_thread(capsys, fixture_dir / "G_0.pth", fifo)
    assert message == f"{fifo} is not a regular file (a FIFO, device or socket cannot be a config)"


def test_huge_and_deeply_nested_configs(fixture_dir, tmp_path, capsys):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(9 * 1024 * 1024)  # sparse: no 9 MiB written
    assert _info_error(capsys, fixture_dir / "G_0.pth", huge) == f"{huge} is larger than 8 MiB; not a config.json"
    deep = tmp_path / "deep.json"
    deep.write_text('{"model": ' + "[" * 200_000 + "]" * 200_000 + "}")
    assert _info_error(capsys, fixture_dir / "G_0.pth", deep) == f"{deep} is nested too deeply to be a config.json"
    assert _info_error(capsys, fixture_dir / "G_0.pth", tmp_path) == f"{tmp_path} is a directory, not a config file"
