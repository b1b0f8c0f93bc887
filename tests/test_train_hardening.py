"""Training day to day: a signal stops a run after the current step with a checkpoint (plain and under
torchrun) and the resume is exact; checkpoints follow the umask; log lines do not break the progress bar;
a base generator that only partly fits is refused unless --allow-partial-init."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT
from train_helpers import assert_same_state, free_port, prepare, subprocess_env, trainer
from vitsrt.cli import main as cli_main
from vitsrt.train.checkpoint import latest_complete_step, read_checkpoint

KINDS = ("G", "D", "DUR")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores on CI


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return prepare(tmp_path_factory.mktemp("data"), n_items=8, val_per_speaker=1, eval_interval=3)


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.02)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the parenthesised name
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(item[5:]) for item in environ if item.startswith(b"RANK=")]
    return ranks[0] if ranks else None


# ----- 1. signals ------------------------------------------------------------------------------------


def test_ctrl_c_to_vitsrt_train_saves_the_step_and_resume_is_exact(prepared, tmp_path):
    reference = trainer(prepared, tmp_path / "reference", max_steps=8)
    reference.train()

    run = tmp_path / "interrupted"
    log_file = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "vitsrt.cli", "train", "-c", str(prepared), "-m", str(run),
               "--max-steps", "1000", "--no-progress", "--set", "num_workers=1"]  # fmt: skip
    # Its own process group, signalled as a whole: what Ctrl-C in a terminal does (the DataLoader worker
    # gets SIGINT too).
    with log_file.open("w") as err:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=err, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for(lambda: "vitsrt.train: step 4 " in log_file.read_text(), process, "step 4")
            os.killpg(process.pid, signal.SIGINT)
            out, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, log_file.read_text()[-3000:]
    stopped = re.search(r"stopped by SIGINT at step (\d+)", out)
    assert stopped, out
    step = int(stopped.group(1))
    assert 4 <= step < 8
    assert latest_complete_step(run, KINDS) == step  # saved where it stopped, nothing after
    assert f"SIGINT: stopped after step {step} with a checkpoint" in log_file.read_text()

    resumed = trainer(prepared, run, max_steps=8)
    assert resumed.position.step == step
    resumed.train()
    for kind in KINDS:
        a, b = read_checkpoint(tmp_path / "reference" / f"{kind}_8.pth"), read_checkpoint(run / f"{kind}_8.pth")
        assert_same_state(a["model"], b["model"], f"{kind}.model")
        assert_same_state(a["optimizer"], b["optimizer"], f"{kind}.optimizer")
        assert a["vitsrt"] == b["vitsrt"] if kind == "G" else True


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds torchrun's workers through /proc")
def test_sigterm_to_one_torchrun_worker_stops_both_ranks_after_the_same_step(prepared, tmp_path):
    run = tmp_path / "ddp"
    log_file = tmp_path / "stderr.txt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        "-m", "vitsrt.train", "-c", str(prepared), "-m", str(run),
        "--max-steps", "1000", "--no-progress", "--param-digest", "--backend", "gloo",
    ]  # fmt: skip
    with log_file.open("w") as err:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(), stdout=err, stderr=err)
        try:
            _wait_for(lambda: (run / "G_3.pth").is_file(), process, "step-3 checkpoint")
            rank1 = [pid for pid in _children(process.pid) if _rank_of(pid) == 1]
            assert len(rank1) == 1, _children(process.pid)
            # Only rank 1 is told: rank 0, which writes the checkpoints, learns it through the all-reduce.
            os.kill(rank1[0], signal.SIGTERM)
            process.wait(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
    stderr = log_file.read_text()
    assert process.returncode == 0, stderr[-3000:]
    step = latest_complete_step(run, KINDS)
    assert step is not None and step >= 3
    assert f"SIGTERM: stopped after step {step} with a checkpoint" in stderr
    digests = [json.loads((run / "param_digest" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["step"] == digests[1]["step"] == step
    assert digests[0] == digests[1]
    # The checkpoint holds the weights the ranks ended with.
    h = hashlib.sha256()
    for key, tensor in sorted(read_checkpoint(run / f"G_{step}.pth")["model"].items()):
        h.update(key.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    assert h.hexdigest() == digests[0]["G"]


# ----- 2. checkpoint files ---------------------------------------------------------------------------

_SAVE_WITH_UMASKS = """
import os, sys, torch
from vitsrt.train.checkpoint import save_checkpoint
for umask in (0o022, 0o077, 0o002):
    os.umask(umask)
    save_checkpoint(os.path.join(sys.argv[1], f"G_{umask:o}.pth"), torch.nn.Linear(2, 2))
"""


def test_checkpoints_are_written_with_the_users_umask(tmp_path):
    # The fsync of the file and of its folder cannot be observed without cutting the power; only the mode is tested.
    subprocess.run([sys.executable, "-c", _SAVE_WITH_UMASKS, str(tmp_path)], check=True, env=subprocess_env())
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert modes == {"G_22.pth": 0o644, "G_77.pth": 0o600, "G_2.pth": 0o664}
    assert set(read_checkpoint(tmp_path / "G_22.pth")["model"]) == {"weight", "bias"}


# ----- 3. progress bar and log lines -----------------------------------------------------------------


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every writer of the terminal has closed it
            return
        if not chunk:
            return
        into.extend(chunk)


def test_log_lines_start_at_the_left_edge_while_the_progress_bar_runs(prepared, tmp_path):
    # A real terminal: tqdm draws nothing when stderr is not one.
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    command = [sys.executable, "-m", "vitsrt.cli", "train", "-c", str(prepared), "-m", str(tmp_path / "run"),
               "--max-steps", "4"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=subprocess_env(), stdout=slave, stderr=slave)
    os.close(slave)
    output = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, output))
    reader.start()
    try:
        assert process.wait(timeout=180) == 0, output.decode(errors="replace")[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(timeout=30)
        os.close(master)
    text = output.decode(errors="replace").replace("\r\n", "\n")  # the terminal's own newline translation
    assert "/4 [" in text, text  # the bar was drawn, so the check below is not vacuous
    # What the terminal shows of a line is what follows its last carriage return.
    shown = [line.rsplit("\r", 1)[-1] for line in text.split("\n") if "vitsrt.train: step " in line]
    assert len(shown) == 4, text
    for line in shown:
        assert line.startswith("INFO vitsrt.train: step "), repr(line)


# ----- 4. fine-tuning from a base generator ----------------------------------------------------------


def _base_generator(prepared: Path, tmp_path: Path, edit) -> tuple[Path, dict[str, torch.Tensor]]:
    """This config's generator, every tensor moved off the fresh init, then changed by `edit`."""
    fresh = trainer(prepared, tmp_path / "fresh", max_steps=0)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in fresh.generator.state_dict().items()}
    edit(state)
    path = tmp_path / "G_base.pth"
    torch.save({"model": state, "iteration": 1}, path)
    return path, state


def _another_model(state: dict[str, torch.Tensor]) -> None:
    """As if from another symbol set and flow: one shape differs, the flow is absent."""
    state["enc_p.emb.weight"] = torch.zeros(3, state["enc_p.emb.weight"].shape[1])
    for key in [k for k in state if k.startswith("flow.")]:
        del state[key]


def test_init_g_that_only_partly_fits_is_refused_with_what_matched(prepared, tmp_path, capsys):
    base, state = _base_generator(prepared, tmp_path, _another_model)
    total = len(trainer(prepared, tmp_path / "count", max_steps=0).generator.state_dict())
    flow = total - len(state)
    assert flow > 0
    argv = ["train", "-c", str(prepared), "-m", str(tmp_path / "run"), "--init-g", str(base), "--max-steps", "0",
            "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    expected = (
        f"vitsrt train: error: --init-g {base} matches {total - flow - 1} of {total} generator tensors "
        f"(1 shape mismatches, e.g. enc_p.emb.weight: checkpoint [3, 16], this config ["
    )
    assert err.startswith(expected), err
    assert f"; {flow} missing, e.g. flow." in err
    assert err.endswith("); pass --allow-partial-init to start from it anyway\n")

    assert cli_main([*argv, "--allow-partial-init"]) == 0
    tuned = trainer(prepared, tmp_path / "run2", max_steps=0, init_generator=base, allow_partial_init=True)
    fresh = trainer(prepared, tmp_path / "fresh2", max_steps=0).generator.state_dict()
    loaded = tuned.generator.state_dict()
    assert torch.equal(loaded["dec.conv_pre.weight"], state["dec.conv_pre.weight"])  # what fits is used
    assert not torch.equal(loaded["dec.conv_pre.weight"], fresh["dec.conv_pre.weight"])
    assert all(torch.equal(loaded[k], fresh[k]) for k in fresh if k.startswith("flow."))  # the rest stays fresh
    assert torch.equal(loaded["enc_p.emb.weight"], fresh["enc_p.emb.weight"])


def test_init_g_with_another_speaker_count_is_accepted(prepared, tmp_path):
    def five_speakers(state: dict[str, torch.Tensor]) -> None:
        state["emb_g.weight"] = torch.zeros(5, state["emb_g.weight"].shape[1])

    base, state = _base_generator(prepared, tmp_path, five_speakers)
    tuned = trainer(prepared, tmp_path / "run", max_steps=0, init_generator=base)
    loaded = tuned.generator.state_dict()
    assert loaded["emb_g.weight"].shape[0] == 2  # this dataset's speakers, freshly initialised
    assert all(torch.equal(loaded[k], state[k]) for k in loaded if k != "emb_g.weight")
