"""Shared pieces of the export tests: one exported fixture voice per test session, the fixture cases.

The export (a few seconds) is cached on disk under pytest's per-session base temp directory, so every
export test module reuses the same bundle without module-level state. Importing this module needs
torch (the exporter); the tests that use it import it after their `importorskip`s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURE_DIR
from vitsrt.export.bundle import export_voice
from vitsrt.sampling import Sampling

CASE_NAMES = tuple(f"case{k}" for k in range(6))
ENCODER_KEYS = {
    "phone_ids": "x",
    "tone_ids": "tone",
    "language_ids": "language",
    "lengths": "x_lengths",
    "bert": "bert",
    "ja_bert": "ja_bert",
    "en_bert": "en_bert",
    "sid": "sid",
}


def fixture_files() -> tuple[Path, Path]:
    """(G_0.pth, config.json) of the upstream fixture, or skip the test."""
    checkpoint, config = FIXTURE_DIR / "G_0.pth", FIXTURE_DIR / "config.json"
    if not checkpoint.is_file() or not config.is_file():
        pytest.skip(f"upstream parity fixture not found at {FIXTURE_DIR} (../shared beside the checkout)")
    return checkpoint, config


def exported_fixture_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture exported with verification on, once per test session."""
    checkpoint, config = fixture_files()
    voice = tmp_path_factory.getbasetemp() / "vitsrt-export-cache" / "tiny"
    if not (voice / "voice.json").is_file():
        # One torch thread: the test machine is shared, and oversubscribed OpenMP threads spin-wait
        # each other into a 3-5x slowdown.
        torch.set_num_threads(1)
        export_voice(checkpoint, config, voice, name="tiny", verify=True)
    return voice


def load_cases() -> dict[str, np.ndarray]:
    fixture_files()
    with np.load(FIXTURE_DIR / "cases.npz") as data:
        return {k: data[k] for k in data.files}


def encoder_inputs(cases: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The encoder graph's feeds for one fixture case; the speaker also as one-hot ``speaker_weights`` (what the
    exported encoder takes; runners feed a graph the inputs it declares)."""
    feeds = {graph: cases[f"{name}_{key}"] for graph, key in ENCODER_KEYS.items()}
    speakers = json.loads((FIXTURE_DIR / "config.json").read_text())["data"]["n_speakers"]
    feeds["speaker_weights"] = np.eye(speakers, dtype=np.float32)[feeds["sid"]]
    return feeds


def case_scales(cases: dict[str, np.ndarray], name: str) -> dict[str, float]:
    return {k: float(cases[f"{name}_{k}"]) for k in Sampling.model_fields}
