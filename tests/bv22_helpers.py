"""Shared pieces of the Bert-VITS2 2.2 tests (tests/test_bv22_*.py): the upstream 2.2 fixture, its cases, and
one exported 2.2 voice (with its CLAP towers) per test session, cached under pytest's base temp directory.

Importing this module needs torch (the exporter); the test modules import it after their `importorskip`s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT

FIXTURE22 = REPO_ROOT.parent / "shared" / "fixtures" / "bertvits2-2.2-tiny"
CASES22 = tuple(f"case{k}" for k in range(4))
HOP = 512
# The encoder graph's inputs and the fixture's names for them.
ENCODER_KEYS22 = {
    "phone_ids": "x", "tone_ids": "tone", "language_ids": "language", "lengths": "x_lengths", "bert": "bert",
    "ja_bert": "ja_bert", "en_bert": "en_bert", "sid": "sid", "emo": "emo",
}


def fixture22() -> Path:
    """The 2.2 fixture directory, or skip the test."""
    if not (FIXTURE22 / "G_0.pth").is_file() or not (FIXTURE22 / "cases.npz").is_file():
        pytest.skip(f"Bert-VITS2 2.2 fixture not found at {FIXTURE22} (../shared beside the checkout)")
    return FIXTURE22


def load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture22() / name) as data:
        return {k: data[k] for k in data.files}


def exported_voice22(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture exported with verification on and its CLAP stand-in bundled, once per test session."""
    from vitsrt.export.bundle import export_voice

    root = fixture22()
    voice = tmp_path_factory.getbasetemp() / "vitsrt-bv22-cache" / "tiny22"
    if not (voice / "voice.json").is_file():
        torch.set_num_threads(1)  # the test machine is shared
        export_voice(root / "G_0.pth", root / "config.json", voice, name="tiny22", verify=True, threads=1,
                     clap=root / "clap")
    return voice


def encoder_feeds(cases: dict[str, np.ndarray], name: str, emo: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The encoder graph's feeds for one fixture case (`emo` replaces the case's emotion embedding)."""
    feeds = {graph: cases[f"{name}_{key}"] for graph, key in ENCODER_KEYS22.items()}
    speakers = json.loads((FIXTURE22 / "config.json").read_text())["data"]["n_speakers"]
    feeds["speaker_weights"] = np.eye(speakers, dtype=np.float32)[feeds["sid"]]  # what the exported encoder takes
    if emo is not None:
        feeds["emo"] = np.asarray(emo, dtype=np.float32).reshape(1, -1)
    return feeds


def case_scales(cases: dict[str, np.ndarray], name: str) -> dict[str, float]:
    from vitsrt.sampling import Sampling

    return {k: float(cases[f"{name}_{k}"]) for k in Sampling.model_fields}


def single_references(cases: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    """Per item, upstream's audio over its own y_length*hop samples (the item run alone for a batched case)."""
    lengths = cases[f"{name}_y_lengths"]
    if len(lengths) == 1:
        return [cases[f"{name}_audio"][:, :, : int(lengths[0]) * HOP]]
    return [cases[f"{name}_audio_single_{b}"] for b in range(len(lengths))]


def audio_errors(audio: np.ndarray, references: list[np.ndarray]) -> list[float]:
    """Per item: max abs diff of `audio`'s row against its reference over the reference's length."""
    errors = []
    for b, reference in enumerate(references):
        n = reference.shape[-1]
        errors.append(float(np.abs(audio[b : b + 1, :, :n] - reference).max()))
    return errors
