"""Training a Bert-VITS2 2.2 model (CLAP emotion branch) on CPU: prepare -> `.emo.npy` beside each recording
(random unit vectors standing in for `vitsrt clap-features`, no CLAP model) -> 2 real training steps -> export,
and the exported voice takes `emo`. Also: a missing embedding is refused naming the file; the emotion branch
trains (commitment loss reported, its weights and codebooks move); the smoke variant runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vitsrt.errors import ConfigError
from vitsrt.train.data import TextAudioDataset, emotion_path
from vitsrt.train.prepare import PrepareOptions, prepare_dataset
from vitsrt.train.smoke import tiny_emotion_config_dict, write_random_emotions, write_toy_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # 2 shared cores on CI


def _prepare22(root: Path) -> Path:
    write_toy_dataset(root / "raw", n_items=6)
    (root / "base.json").write_text(json.dumps(tiny_emotion_config_dict(eval_interval=1000)), encoding="utf-8")
    options = PrepareOptions(frontend="chars", language="en", val_per_speaker=1)
    prepare_dataset(root / "raw", root / "prepared", root / "base.json", options)
    return root / "prepared" / "config.json"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    config = _prepare22(tmp_path_factory.mktemp("data22"))
    assert write_random_emotions(config, seed=3) == 6
    return config


def _trainer(config: Path, run_dir: Path, max_steps: int):
    from vitsrt.train.distributed import DistContext
    from vitsrt.train.loop import RunSettings, Trainer

    settings = RunSettings(config=config, run_dir=run_dir, max_steps=max_steps, progress=False)
    return Trainer(settings, DistContext.from_env(device="cpu"))


def _emotion_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.generator.state_dict().items()
            if k.startswith(("enc_p.in_feature_net", "enc_p.emo_vq", "enc_p.out_feature_net"))}


def test_missing_embedding_is_refused_naming_the_first_file(tmp_path):
    config = _prepare22(tmp_path)
    write_random_emotions(config)
    from vitsrt.config import load_config
    from vitsrt.train.tokens import read_filelist

    loaded = load_config(config)
    first = read_filelist(config.parent / loaded.data.training_files)[0]
    missing = emotion_path(config.parent / first.audio)
    missing.unlink()
    with pytest.raises(ConfigError, match=r"\.emo\.npy not found") as caught:
        TextAudioDataset(loaded.data.training_files, loaded, config.parent)
    assert str(missing) in str(caught.value) and "\n" not in str(caught.value)
    # Negative control: with the file back the dataset loads and an item carries its own embedding.
    vector = np.zeros(512, dtype=np.float32)
    vector[7] = 1.0
    np.save(missing, vector)
    dataset = TextAudioDataset(loaded.data.training_files, loaded, config.parent)
    assert torch.equal(dataset[0].emo, torch.from_numpy(vector))


def test_two_steps_train_the_emotion_branch_then_export_takes_emo(prepared, tmp_path):
    trainer = _trainer(prepared, tmp_path / "run", max_steps=2)
    before = _emotion_state(trainer)
    trainer.train()
    history = list(trainer.history)
    assert len(history) == 2
    commits = [scalars["loss/commit"] for scalars in history]
    assert all(np.isfinite(commits)) and all(c > 0 for c in commits), commits
    after = _emotion_state(trainer)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    # Gradients reach the feature nets (straight through the quantizer); the codebooks follow the batch (EMA).
    for key in ("enc_p.in_feature_net.0.weight", "enc_p.emo_vq.project_in.weight", "enc_p.out_feature_net.weight",
                "enc_p.emo_vq._codebook.embed", "enc_p.emo_vq._codebook.cluster_size"):
        assert key in moved, key

    export = pytest.importorskip("vitsrt.export.bundle")
    pytest.importorskip("onnxruntime")
    voice = export.export_voice(tmp_path / "run" / "G_2.pth", tmp_path / "run" / "config.json", tmp_path / "voice",
                                name="trained22", verify=True, threads=1)
    manifest = json.loads((voice / "voice.json").read_text())
    assert manifest["model"]["version"] == "2.2" and manifest["emotion"] is not None

    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.serve.engine.types import EmotionPrompt, PhonemeIds, SynthesisRequest

    rng = np.random.default_rng(0)
    ids = PhonemeIds(phone_ids=[int(i) for i in rng.integers(1, 20, 16)])

    def speak(engine, emo: np.ndarray) -> np.ndarray:
        request = SynthesisRequest(phonemes=ids, seed=1, emotion=EmotionPrompt(embedding=emo.tolist()))
        return np.concatenate([chunk.audio for chunk in engine.stream(request)])

    happy, sad = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 512)).astype(np.float32))
    engine = Engine.open([voice], options=EngineOptions(threads=1))
    try:
        first, again, other = speak(engine, happy), speak(engine, happy), speak(engine, sad)
    finally:
        engine.close()
    assert first.size > 0 and np.array_equal(first, again)
    # Negative control: the encoder really reads emo (another embedding, other codes, other audio).
    assert first.shape != other.shape or float(np.abs(first - other).max()) > 1e-4


def test_smoke_has_a_22_variant():
    from vitsrt.train.smoke import run_smoke

    report = run_smoke(steps=2, family="bert-vits2-2.2")
    assert "commit" in report and "smoke: OK" in report


def test_quantizer_trains_as_upstreams():
    """Training mode: the forward value is the chosen codes projected out, the gradient passes straight through to
    the input, the commitment loss is 0.1 * mse(projected, chosen), the codebooks move; eval mode: none of it."""
    from torch.nn import functional as F

    from vitsrt.train.models.emotion import VQ_COMMITMENT_WEIGHT, EmotionQuantizer

    torch.manual_seed(0)
    vq = EmotionQuantizer().train()
    features = torch.randn(3, 512, requires_grad=True)
    embed_before = vq._codebook.embed.clone()
    torch.manual_seed(1)
    out = vq(features)
    commitment = vq.take_commitment()
    assert vq.take_commitment() is None  # taken once: a stale loss is never added twice
    torch.manual_seed(1)
    projected = vq.project_in(features)
    codes = vq.sampled_codes(projected.detach())  # the same draw as the forward's
    chosen = embed_before[torch.arange(32), codes].reshape(3, -1)  # embed[h, codes[b, h]]: [B, H, D] -> [B, H*D]
    assert torch.allclose(out, vq.project_out(chosen), atol=1e-5)
    assert torch.allclose(commitment, F.mse_loss(projected, chosen) * VQ_COMMITMENT_WEIGHT, rtol=1e-5)
    out.sum().backward()
    assert features.grad is not None and float(features.grad.abs().max()) > 0  # straight through
    assert not torch.equal(vq._codebook.embed, embed_before)  # EMA step (and dead codes re-drawn)

    # Negative control: eval mode picks codes without a gradient path, keeps no loss and leaves the codebooks.
    vq.eval()
    features.grad = None
    embed_eval = vq._codebook.embed.clone()
    vq(features).sum().backward()
    assert features.grad is None or float(features.grad.abs().max()) == 0
    assert vq.take_commitment() is None and torch.equal(vq._codebook.embed, embed_eval)
