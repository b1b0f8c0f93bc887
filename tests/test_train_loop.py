"""The training loop end to end on a tiny generated dataset (CPU): 2-process DDP, overfitting, exact
kill-and-resume, fine-tuning with frozen modules, strict reload and export of the produced checkpoint,
and `vitsrt train --smoke`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT
from train_helpers import assert_same_state as _assert_same_state
from train_helpers import free_port as _free_port
from train_helpers import prepare as _prepare
from train_helpers import subprocess_env as _subprocess_env
from train_helpers import trainer as _trainer
from vitsrt.cli import main as cli_main
from vitsrt.train.checkpoint import read_checkpoint, save_checkpoint
from vitsrt.train.loading import load_generator

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores on CI


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return _prepare(tmp_path_factory.mktemp("data"), n_items=8, val_per_speaker=1, eval_interval=3)


def test_two_process_ddp_keeps_ranks_identical(prepared, tmp_path):
    run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "vitsrt.train", "-c", str(prepared), "-m", str(run),
        "--max-steps", "3", "--no-progress", "--param-digest", "--backend", "gloo",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=_subprocess_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank0] vitsrt.train: step 3 " in result.stderr
    assert "non-finite" not in result.stderr and " nan " not in result.stderr
    digests = [json.loads((run / "param_digest" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["step"] == digests[1]["step"] == 3
    assert digests[0] == digests[1]  # DDP averaged the gradients: both ranks hold the same weights
    for kind in ("G", "D", "DUR"):
        assert (run / f"{kind}_3.pth").is_file()
    # Not vacuous: the weights moved away from the common initialisation.
    fresh = _trainer(prepared, tmp_path / "fresh", max_steps=0)
    fresh.settings.param_digest = True
    fresh._write_param_digest()
    assert json.loads((tmp_path / "fresh" / "param_digest" / "rank0.json").read_text())["G"] != digests[0]["G"]


def test_mel_loss_falls_when_overfitting(tmp_path):
    config = _prepare(tmp_path, n_items=4, val_per_speaker=0, learning_rate=2e-3, batch_size=4, eval_interval=1000)
    trainer = _trainer(config, tmp_path / "run", max_steps=30)
    trainer.train()
    history = list(trainer.history)
    assert len(history) == 30
    for scalars in history:
        assert all(torch.isfinite(torch.tensor(v)) for k, v in scalars.items() if k.startswith("loss/"))
    mel = [s["loss/mel"] for s in history]
    first, last = sum(mel[:3]) / 3, sum(mel[-8:]) / 8
    assert last < 0.75 * first, mel


def test_kill_and_resume_continues_exactly(prepared, tmp_path):
    # Reference: 6 uninterrupted steps (checkpoints at 3 and 6).
    reference = _trainer(prepared, tmp_path / "reference", max_steps=6)
    reference.train()

    # A second run is SIGKILLed after its step-3 checkpoint, then resumed.
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "vitsrt.train", "-c", str(prepared), "-m", str(run), "--max-steps", "1000",
               "--no-progress"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_subprocess_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (run / "G_3.pth").is_file():  # G_ is written last: its presence means step 3 is complete
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no step-3 checkpoint in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()
    for path in run.glob("*_*.pth"):  # as if killed right after step 3
        if int(path.stem.split("_")[1]) > 3:
            path.unlink()

    resumed = _trainer(prepared, run, max_steps=6)
    assert resumed.position.step == 3
    saved_g = read_checkpoint(run / "G_3.pth")
    _assert_same_state(resumed.optim_g.state_dict(), saved_g["optimizer"], "optim_g")
    _assert_same_state(resumed.optim_d.state_dict(), read_checkpoint(run / "D_3.pth")["optimizer"], "optim_d")
    assert resumed.schedulers["g"].state_dict() == saved_g["vitsrt"]["schedulers"]["g"]
    resumed.train()

    for kind in ("G", "D", "DUR"):
        a, b = read_checkpoint(tmp_path / "reference" / f"{kind}_6.pth"), read_checkpoint(run / f"{kind}_6.pth")
        _assert_same_state(a["model"], b["model"], f"{kind}.model")
        _assert_same_state(a["optimizer"], b["optimizer"], f"{kind}.optimizer")
        assert a["iteration"] == b["iteration"] and a["learning_rate"] == b["learning_rate"]
    # Negative control: the step-3 weights differ from the step-6 ones, so equality above is not trivial.
    with pytest.raises(AssertionError):
        _assert_same_state(read_checkpoint(run / "G_3.pth")["model"], read_checkpoint(run / "G_6.pth")["model"])

    # keep_ckpts=2 (tiny config): older steps pruned, nothing half-written left behind.
    assert sorted(p.name for p in run.glob("G_*.pth")) == ["G_3.pth", "G_6.pth"]
    assert not list(run.glob(".*.tmp"))

    # The generator checkpoint is upstream-format and loads strictly with the run's config.
    raw = read_checkpoint(run / "G_6.pth")
    assert {"model", "iteration", "optimizer", "learning_rate"} <= set(raw)
    loaded = load_generator(run / "G_6.pth", run / "config.json")
    assert loaded.iteration == raw["iteration"] and loaded.model.emb_g.num_embeddings == 2

    export = pytest.importorskip("vitsrt.export.bundle")
    voice = export.export_voice(run / "G_6.pth", run / "config.json", tmp_path / "voice", verify=True)
    assert (voice / "voice.json").is_file()


def test_fine_tune_from_base_checkpoints_with_a_frozen_decoder(prepared, tmp_path):
    base = _trainer(prepared, tmp_path / "base", max_steps=1)
    base.train()
    run = tmp_path / "finetune"
    run.mkdir()
    (run / "G_0.pth").write_bytes((tmp_path / "base" / "G_1.pth").read_bytes())
    (run / "D_0.pth").write_bytes((tmp_path / "base" / "D_1.pth").read_bytes())
    tuned = _trainer(prepared, run, max_steps=2, overrides={"freeze": ["dec"]})
    start = {k: v.clone() for k, v in tuned.generator.state_dict().items()}
    base_state = read_checkpoint(tmp_path / "base" / "G_1.pth")["model"]
    _assert_same_state(start, base_state, "init")  # initialised from G_0
    assert tuned.position.step == 0
    trainable = {id(p) for group in tuned.optim_g.param_groups for p in group["params"]}
    assert all(id(p) not in trainable for p in tuned.generator.dec.parameters())
    tuned.train()
    end = tuned.generator.state_dict()
    assert all(torch.equal(end[k], start[k]) for k in start if k.startswith("dec."))
    assert not torch.equal(end["enc_p.emb.weight"], start["enc_p.emb.weight"])
    assert (run / "G_0.pth").is_file() and (run / "G_2.pth").is_file()  # the base is never pruned


def test_resume_refuses_a_checkpoint_that_does_not_fit(prepared, tmp_path):
    run = tmp_path / "bad"
    trainer = _trainer(prepared, run, max_steps=1)
    trainer.train()
    save_checkpoint(run / "G_5.pth", torch.nn.Linear(2, 2))
    (run / "D_5.pth").write_bytes((run / "D_1.pth").read_bytes())
    (run / "DUR_5.pth").write_bytes((run / "DUR_1.pth").read_bytes())
    from vitsrt.errors import CheckpointError

    with pytest.raises(CheckpointError, match="missing key"):
        _trainer(prepared, run, max_steps=6)


def test_cli_smoke_and_argument_errors(capsys):
    assert cli_main(["train", "--smoke", "--smoke-steps", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "smoke: OK" in out and "reloads strictly" in out
    assert cli_main(["train", "-c", "x.json"]) == 2


def test_tensorboard_gets_scalars_images_and_audio(prepared, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    trainer = _trainer(prepared, run, max_steps=3)  # eval_interval 3: one evaluation with audio
    trainer.train()
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "audio": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/mel", "loss/g", "loss/d", "grad_norm/g", "lr/g", "speed/steps_per_s"} <= set(tags["scalars"])
    assert len(events.Scalars("loss/mel")) == 3
    assert {"train/alignment", "eval/0/mel_generated"} <= set(tags["images"])
    assert "eval/0/generated" in tags["audio"]
