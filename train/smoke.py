"""`vitsrt train --smoke`: prepare a generated toy dataset and train a tiny model a few steps.

Checks an install end to end in well under a minute on a laptop CPU: audio I/O, resampling,
spectrograms, the alignment search, every loss, both discriminators, checkpoint writing and
strict reloading. The same generators feed the test suite.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

SMOKE_TEXTS = (
    "a quiet tone",
    "the red kite",
    "one more day",
    "blue sea air",
    "hold the line",
    "soft and low",
    "it is late now",
    "we go home",
)


def tiny_config_dict(**train_overrides: Any) -> dict[str, Any]:
    """A config small enough to train on 2 CPU cores in seconds (16 kHz, hop 128, hidden 16)."""
    train = {
        "log_interval": 1,
        "eval_interval": 1000,
        "seed": 1234,
        "epochs": 10000,
        "learning_rate": 2e-4,
        "betas": [0.8, 0.99],
        "eps": 1e-9,
        "batch_size": 2,
        "lr_decay": 0.999875,
        "segment_size": 2048,
        "c_mel": 45,
        "c_kl": 1.0,
        "skip_optimizer": True,
        "keep_ckpts": 2,
        "bucket_boundaries": [8, 64, 128, 256],
        "num_workers": 0,
        "mpd_periods": [2, 3],
        "mpd_channel_divisor": 16,
        "eval_audio_items": 1,
    }
    train.update(train_overrides)
    return {
        "train": train,
        "data": {
            "training_files": "filelists/train.list",
            "validation_files": "filelists/val.list",
            "max_wav_value": 32768.0,
            "sampling_rate": 16000,
            "filter_length": 512,
            "hop_length": 128,
            "win_length": 512,
            "n_mel_channels": 40,
            "mel_fmin": 0.0,
            "mel_fmax": 8000.0,
            "add_blank": True,
            "n_speakers": 2,
            "cleaned_text": True,
            "spk2id": {},
        },
        "model": {
            "use_spk_conditioned_encoder": True,
            "use_noise_scaled_mas": True,
            "use_mel_posterior_encoder": False,
            "use_duration_discriminator": True,
            "inter_channels": 16,
            "hidden_channels": 16,
            "filter_channels": 32,
            "n_heads": 2,
            "n_layers": 3,
            "kernel_size": 3,
            "p_dropout": 0.1,
            "resblock": "1",
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
            "upsample_rates": [8, 4, 4],
            "upsample_initial_channel": 32,
            "upsample_kernel_sizes": [16, 8, 8],
            "gin_channels": 16,
            "use_transformer_flow": False,
            "n_layers_trans_flow": 3,
        },
        "version": "2.3",
    }


def tiny_vits_config_dict(n_speakers: int = 2, use_sdp: bool = True, **train_overrides: Any) -> dict[str, Any]:
    """The same tiny scale for an original-VITS model (``"family": "vits"``): no tones, languages or BERT."""
    base = tiny_config_dict(**train_overrides)
    data = {**base["data"], "n_speakers": n_speakers}
    model = {
        key: base["model"][key]
        for key in ("inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
                    "p_dropout", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes", "upsample_rates",
                    "upsample_initial_channel", "upsample_kernel_sizes")
    }
    model.update(gin_channels=16 if n_speakers > 1 else 0, use_sdp=use_sdp)
    return {"family": "vits", "train": base["train"], "data": data, "model": model}


def tiny_emotion_config_dict(**train_overrides: Any) -> dict[str, Any]:
    """The tiny Bert-VITS2 config as a 2.2 model: the same generator plus the CLAP emotion branch."""
    return {**tiny_config_dict(**train_overrides), "version": "2.2"}


def write_random_emotions(config_path: Path, seed: int = 0) -> int:
    """Stand-ins for what `vitsrt clap-features` writes: a random unit vector (a CLAP embedding's shape and norm)
    as ``<stem>.emo.npy`` beside every recording of the config's training and validation filelists. Returns how
    many were written."""
    from vitsrt.config import load_config
    from vitsrt.train.data import emotion_path, resolve
    from vitsrt.train.models.emotion import CLAP_DIM
    from vitsrt.train.tokens import read_filelist

    config = load_config(config_path)
    rng = np.random.default_rng(seed)
    written = 0
    for filelist in (config.data.training_files, config.data.validation_files):
        path = resolve(config_path.parent, filelist)
        for entry in read_filelist(path) if path.is_file() else []:
            vector = rng.standard_normal(CLAP_DIM).astype(np.float32)
            np.save(emotion_path(resolve(config_path.parent, entry.audio)), vector / np.linalg.norm(vector))
            written += 1
    return written


def synthesize_utterance(text: str, rate: int, pitch: float, seed: int) -> np.ndarray:
    """A 'spoken' toy utterance: one short harmonic tone per letter (pitch from the letter), gaps for
    spaces. Not speech, but text-dependent and learnable, which is what a smoke test needs."""
    rng = np.random.default_rng(seed)
    pieces = [np.zeros(int(0.05 * rate), dtype=np.float32)]
    for ch in text:
        if ch == " ":
            pieces.append(np.zeros(int(0.04 * rate), dtype=np.float32))
            continue
        n = int(0.06 * rate)
        t = np.arange(n) / rate
        f0 = pitch * (1.0 + (ord(ch) % 16) / 16.0)
        wave = sum(np.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3))
        envelope = np.sin(np.pi * np.arange(n) / n) ** 2
        pieces.append((0.3 * wave * envelope + 0.005 * rng.standard_normal(n)).astype(np.float32))
    pieces.append(np.zeros(int(0.05 * rate), dtype=np.float32))
    return np.concatenate(pieces)


def write_toy_dataset(
    folder: Path, rate: int = 16000, n_items: int = 8, speakers: tuple[str, ...] = ("ann", "bob")
) -> Path:
    """Recordings + a 4-field metadata.list; returns the metadata path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_items):
        speaker = speakers[i % len(speakers)]
        text = SMOKE_TEXTS[i % len(SMOKE_TEXTS)]
        audio = synthesize_utterance(text, rate, 140.0 + 60.0 * (i % len(speakers)), seed=i)
        name = f"{speaker}_{i:03d}.wav"
        sf.write(str(folder / name), audio, rate, subtype="PCM_16")
        lines.append(f"{name}|{speaker}|en|{text}")
    metadata = folder / "metadata.list"
    metadata.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return metadata


def run_smoke(run_dir: Path | None = None, steps: int = 4, family: str = "bert-vits2") -> str:
    """Generate, prepare, train `steps` steps of a tiny `family` model ("bert-vits2", "bert-vits2-2.2": with 2.2's
    emotion branch, trained on random stand-in CLAP embeddings, or "vits"), reload the generator strictly.
    Returns a short report."""
    from vitsrt.train.checkpoint import latest_complete_step
    from vitsrt.train.distributed import DistContext
    from vitsrt.train.loading import load_generator
    from vitsrt.train.loop import RunSettings, Trainer
    from vitsrt.train.prepare import PrepareOptions, prepare_dataset

    with tempfile.TemporaryDirectory(prefix="vitsrt-smoke-") as scratch:
        work = Path(scratch)
        run_dir = run_dir or work / "run"
        write_toy_dataset(work / "raw")
        base = work / "base_config.json"
        configs = {"vits": tiny_vits_config_dict, "bert-vits2-2.2": tiny_emotion_config_dict}
        config = configs.get(family, tiny_config_dict)()
        base.write_text(json.dumps(config), encoding="utf-8")
        started = time.perf_counter()
        report = prepare_dataset(work / "raw", work / "prepared", base, PrepareOptions(frontend="chars", language="en"))
        prepared_s = time.perf_counter() - started
        if family == "bert-vits2-2.2":
            write_random_emotions(work / "prepared" / "config.json")
        settings = RunSettings(
            config=work / "prepared" / "config.json", run_dir=run_dir, max_steps=steps, progress=False
        )
        dist = DistContext.from_env(device="cpu")
        try:
            trainer = Trainer(settings, dist)
            started = time.perf_counter()
            position = trainer.train()
            train_s = time.perf_counter() - started
        finally:
            dist.close()
        kinds = ("G", "D", "DUR") if trainer.duration_discriminator is not None else ("G", "D")
        step = latest_complete_step(run_dir, kinds)
        loaded = load_generator(run_dir / f"G_{step}.pth", run_dir / "config.json")
        losses = {k.removeprefix("loss/"): v for k, v in trainer.last_scalars.items() if k.startswith("loss/")}
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        lines = [
            f"smoke: {loaded.family} model; prepared {report.train + report.val} utterances in {prepared_s:.1f} s",
            f"smoke: trained {position.step} steps in {train_s:.1f} s ({train_s / max(position.step, 1):.2f} s/step)",
            "smoke: last losses " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items()),
            f"smoke: G_{step}.pth reloads strictly ({sum(p.numel() for p in loaded.model.parameters())} parameters)",
        ]
        if bad:
            raise RuntimeError(f"smoke training produced non-finite losses: {bad}")
        lines.append("smoke: OK")
        return "\n".join(lines)
