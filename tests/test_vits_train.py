"""`vitsrt train` on an original-VITS config ("family": "vits"): prepare, a few real training steps (posterior,
alignment search, the duration loss of the SDP or the deterministic predictor, discriminators, validation audio),
checkpoints that reload strictly, and an export of the trained generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from train_helpers import trainer  # noqa: E402
from vitsrt.export.bundle import export_voice  # noqa: E402
from vitsrt.train.cli import add_arguments, run  # noqa: E402
from vitsrt.train.loading import load_generator  # noqa: E402
from vitsrt.train.models.vits import VitsSynthesizer  # noqa: E402
from vitsrt.train.prepare import PrepareOptions, prepare_dataset  # noqa: E402
from vitsrt.train.smoke import tiny_vits_config_dict, write_toy_dataset  # noqa: E402
from vitsrt.voice import load_voice  # noqa: E402


def prepare_vits(root: Path, speakers: tuple[str, ...], use_sdp: bool) -> Path:
    write_toy_dataset(root / "raw", n_items=4 * len(speakers), speakers=speakers)
    config = tiny_vits_config_dict(n_speakers=len(speakers), use_sdp=use_sdp, eval_interval=2)
    (root / "base.json").write_text(json.dumps(config), encoding="utf-8")
    options = PrepareOptions(frontend="chars", language="en", val_per_speaker=1)
    prepare_dataset(root / "raw", root / "prepared", root / "base.json", options)
    return root / "prepared" / "config.json"


def _train_and_export(tmp_path: Path, speakers: tuple[str, ...], use_sdp: bool) -> None:
    torch.set_num_threads(1)
    config = prepare_vits(tmp_path, speakers, use_sdp)
    run_dir = tmp_path / "run"
    t = trainer(config, run_dir, max_steps=2)
    assert isinstance(t.generator, VitsSynthesizer) and t.duration_discriminator is None
    assert t.generator.multi_speaker == (len(speakers) > 1) and t.generator.use_sdp == use_sdp
    before = {k: v.clone() for k, v in t.generator.state_dict().items()}
    position = t.train()
    assert position.step == 2
    losses = {k: v for k, v in t.last_scalars.items() if k.startswith("loss/")}
    assert {"loss/mel", "loss/kl", "loss/dur", "loss/d"} <= set(losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    after = t.generator.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("enc_p.") for k in changed) and any(k.startswith("dp.") for k in changed)
    assert any(k.startswith("dec.") for k in changed) and any(k.startswith("flow.") for k in changed)

    # The run folder is self-describing: its config and G_2.pth reload strictly and export as a VITS voice.
    assert not list(run_dir.glob("DUR_*.pth"))
    loaded = load_generator(run_dir / "G_2.pth", run_dir / "config.json")
    assert loaded.family == "vits" and loaded.model.n_vocab == t.generator.n_vocab
    voice_dir = export_voice(run_dir / "G_2.pth", run_dir / "config.json", tmp_path / "voice")
    manifest = load_voice(voice_dir).manifest
    assert manifest.model.family == "vits" and manifest.front_end.kind == "ids"
    assert sorted(manifest.speakers) == sorted(speakers)
    assert manifest.parity is not None and all(p.passed for p in manifest.parity.stages.values())


def test_train_a_multi_speaker_vits_model_and_export_it(tmp_path):
    _train_and_export(tmp_path, ("ann", "bob"), use_sdp=True)


@pytest.mark.slow
def test_train_a_single_speaker_vits_model_with_the_deterministic_predictor(tmp_path):
    _train_and_export(tmp_path, ("ann",), use_sdp=False)


def test_cli_smoke_trains_a_vits_model(capsys):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    torch.set_num_threads(1)
    assert run(parser.parse_args(["--smoke", "--smoke-family", "vits", "--smoke-steps", "1"])) == 0
    out = capsys.readouterr().out
    assert "smoke: vits model" in out and "smoke: OK" in out
