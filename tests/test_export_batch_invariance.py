"""Batch invariance of the exported graphs: four items of random lengths run as one padded batch give,
stage by stage, what each item gives alone (<= 1e-4), with per-item sampling parameters and seeds.

Runs on onnxruntime + numpy only (vitsrt.export.ort_pipeline), with non-zero noise so the per-request
noise streams are covered as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from vitsrt.export.ort_pipeline import PipelineResult, synthesize_batch
from vitsrt.regulator import pad_batch
from vitsrt.voice import load_voice

TOL = 1e-4
LENGTHS = (23, 9, 1, 16)
SEEDS = (11, 12, 13, 14)
SCALES = {
    "noise_scale": np.array([0.667, 0.5, 0.8, 0.3]),
    "noise_scale_w": np.array([0.8, 0.6, 1.0, 0.9]),
    "length_scale": np.array([1.0, 1.2, 0.9, 1.1]),
    "sdp_ratio": np.array([0.5, 0.0, 1.0, 0.3]),
}


def _items(fixture_voice: Path) -> list[dict[str, np.ndarray]]:
    """Unpadded encoder inputs for each item ([1, T] ids, [1, 1024, T] features)."""
    fe = load_voice(fixture_voice).manifest.front_end
    rng = np.random.default_rng(2024)
    items = []
    for i, t in enumerate(LENGTHS):
        items.append(
            {
                "phone_ids": rng.integers(1, fe.num_symbols, (1, t)),
                "tone_ids": rng.integers(0, fe.num_tones, (1, t)),
                "language_ids": rng.integers(0, fe.num_languages, (1, t)),
                "lengths": np.array([t]),
                **{b: rng.standard_normal((1, fe.bert_dim, t), dtype=np.float32) for b in fe.bert_inputs},
                "sid": np.array([i % 2]),
            }
        )
    return items


def _padded(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    batch = {}
    for key in items[0]:
        if key in ("lengths", "sid"):
            batch[key] = np.concatenate([item[key] for item in items])
        else:
            batch[key] = pad_batch([item[key][0] for item in items], axis=-1)[0]
    return batch


@pytest.fixture(scope="module")
def runs(fixture_runner, fixture_voice) -> tuple[PipelineResult, list[PipelineResult]]:
    items = _items(fixture_voice)
    batched = synthesize_batch(fixture_runner, _padded(items), seeds=SEEDS, **SCALES)
    alone = [
        synthesize_batch(fixture_runner, item, seeds=[SEEDS[i]], **{k: v[i] for k, v in SCALES.items()})
        for i, item in enumerate(items)
    ]
    return batched, alone


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) if a.size else 0.0


@pytest.mark.parametrize("key", ["enc", "m_p", "logs_p", "x_mask", "logw"])
def test_token_side_stages(runs, key):
    batched, alone = runs
    for i, (t, single) in enumerate(zip(LENGTHS, alone, strict=True)):
        assert _max_diff(batched.tensors[key][i : i + 1, :, :t], single.tensors[key]) <= TOL, (key, i)


def test_g_and_durations(runs):
    batched, alone = runs
    for i, (t, single) in enumerate(zip(LENGTHS, alone, strict=True)):
        assert _max_diff(batched.tensors["g"][i : i + 1], single.tensors["g"]) == 0.0
        np.testing.assert_array_equal(batched.durations[i : i + 1, :t], single.durations)
        assert not batched.durations[i, t:].any()
        assert batched.y_lengths[i] == single.y_lengths[0]
    assert len(set(batched.y_lengths.tolist())) == len(LENGTHS), "want distinct frame counts"


@pytest.mark.parametrize("key", ["z_p", "y_mask", "z"])
def test_frame_side_stages(runs, key):
    batched, alone = runs
    for i, single in enumerate(alone):
        frames = int(single.y_lengths[0])
        assert _max_diff(batched.tensors[key][i : i + 1, :, :frames], single.tensors[key]) <= TOL, (key, i)


def test_decoder_audio(runs):
    batched, alone = runs
    for i, single in enumerate(alone):
        n = int(single.y_lengths[0]) * 512
        assert _max_diff(batched.audio[i : i + 1, :, :n], single.audio) <= TOL, i
        assert not batched.audio[i, :, n:].any()


def test_negative_control_unmasked_decode(runs, fixture_runner):
    """Decoding the padded batch with an all-ones mask (upstream's unmasked behaviour) breaks the
    shorter items' ends: the comparison above does detect padding leaking in."""
    batched, alone = runs
    z = batched.tensors["z"] * batched.tensors["y_mask"]
    ones = np.ones_like(batched.tensors["y_mask"])
    audio = fixture_runner.run("decoder", {"z": z, "y_mask": ones, "g": batched.tensors["g"]})["audio"]
    shortest = int(np.argmin(batched.y_lengths))
    n = int(alone[shortest].y_lengths[0]) * 512
    assert _max_diff(audio[shortest : shortest + 1, :, :n], alone[shortest].audio) > TOL
