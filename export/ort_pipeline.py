"""The export tests' whole-utterance reference: the serving engine's own chain, recorded.

One padded batch in, one padded batch out, every tensor the graphs saw and made, and a wall-clock time per
stage: `synthesize_batch` runs the engine's `VoicePipeline` steps (prefill, flow, one-shot decode) over an
`OrtRunner` wrapped in a recording backend. So export is proven end to end on exactly the chain that serves
(no second encoder -> duration -> regulator -> flow -> decoder implementation). It needs onnxruntime and
numpy only (no torch).

Per item the noise comes from :class:`vitsrt.regulator.RequestNoise` (seed per item), so an item's
result does not depend on the batch it was run in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from vitsrt import regulator
from vitsrt.sampling import Sampling
from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.serve.engine.clap_stage import EMOTION_INPUT, EmotionJob
from vitsrt.serve.engine.pipeline import DecodeJob, Segment, VoicePipeline
from vitsrt.serve.engine.windows import ONE_SHOT
from vitsrt.stages import BERT_FEATURES
from vitsrt.text.sequence import PhonemeSequence

__all__ = ["PipelineResult", "synthesize_batch"]


@dataclass
class PipelineResult:
    audio: np.ndarray  # [B, 1, F*hop], zero past y_lengths*hop
    y_lengths: np.ndarray  # [B] int64
    durations: np.ndarray  # [B, T] int64
    tensors: dict[str, np.ndarray]  # every graph input and output by tensor name (enc, m_p, logw, z_p, z, ...)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (+ "regulate")


class _RecordingBackend:
    """A stage backend over an OrtRunner that keeps every tensor the graphs saw and made, and their times.
    Without `skip_sdp` it hides the deterministic-only duration graph, so the full one always runs."""

    name = "onnxruntime-recording"
    Options: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, runner: OrtRunner, skip_sdp: bool):
        self.runner = runner
        self.skip_sdp = skip_sdp
        self.tensors: dict[str, np.ndarray] = {}
        self.timings: dict[str, float] = {}

    def has_stage(self, stage: str) -> bool:
        return self.runner.has(stage) and (self.skip_sdp or stage != "duration_dp_only")

    def run(self, stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = self.runner.run(stage, inputs)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started
        self.tensors.update(inputs)
        self.tensors.update(outputs)
        return outputs

    def close(self) -> None:
        pass


def _per_item(value: float | npt.ArrayLike, batch: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (batch,)).copy()


def _segments(feeds: Mapping[str, np.ndarray], seeds: Sequence[int], scales: Mapping[str, np.ndarray]) -> list[Segment]:
    """One segment per batch row: its ids and BERT features cut to its length, its seed and sampling values."""
    segments = []
    for row, length in enumerate(np.asarray(feeds["lengths"], dtype=np.int64)):
        ids = PhonemeSequence(phone_ids=feeds["phone_ids"][row, :length], tone_ids=feeds["tone_ids"][row, :length],
                              language_ids=feeds["language_ids"][row, :length])
        sampling = Sampling(**{name: float(values[row]) for name, values in scales.items()})
        features = {name: feeds[name][row, :, :length] for name in BERT_FEATURES if name in feeds}
        emotion = EmotionJob.of(feeds[EMOTION_INPUT][row]) if EMOTION_INPUT in feeds else None  # Bert-VITS2 2.2
        segments.append(Segment(row, 0, ids, int(feeds["sid"][row]), sampling, regulator.RequestNoise(int(seeds[row])),
                                ONE_SHOT, features=features, emotion=emotion))
    return segments


def synthesize_batch(
    runner: OrtRunner,
    encoder_inputs: Mapping[str, npt.ArrayLike],
    *,
    seeds: Sequence[int],
    skip_sdp: bool = True,
    **sampling: float | npt.ArrayLike,
) -> PipelineResult:
    """Run the engine's chain (encoder -> duration -> regulation -> flow -> decoder) on one padded batch.

    ``runner`` knows its voice (``OrtRunner.from_voice``, or ``voice=``): the pipeline reads its manifest.
    ``encoder_inputs`` holds the encoder's inputs (phone_ids, tone_ids, language_ids, lengths, bert, ja_bert,
    en_bert, sid; a Bert-VITS2 2.2 voice's emo), the speaker as ``sid`` whichever speaker input the graph takes (the
    engine feeds an encoder that takes ``speaker_weights`` the one-hot row of that id). ``sampling`` gives every
    field of vitsrt.sampling.Sampling by name, each a scalar or one value per item: this harness has no defaults of
    its own. With ``skip_sdp`` and every ``sdp_ratio`` 0, the ``duration_dp_only`` graph runs instead of
    ``duration`` if present.
    """
    if runner.voice is None:
        raise ValueError("synthesize_batch needs an OrtRunner that knows its voice (from_voice, or voice=)")
    if set(sampling) != set(Sampling.model_fields):
        raise TypeError(f"synthesize_batch takes exactly {sorted(Sampling.model_fields)}, got {sorted(sampling)}")
    feeds = {k: np.ascontiguousarray(v) for k, v in encoder_inputs.items()}
    batch, tokens = feeds["phone_ids"].shape
    backend = _RecordingBackend(runner, skip_sdp)
    pipeline = VoicePipeline(runner.voice, backend, max_phonemes=max(tokens, 1))
    segments = _segments(feeds, seeds, {name: _per_item(value, batch) for name, value in sampling.items()})
    pipeline.prefill(segments)
    pipeline.flow(segments)
    pipeline.decode([DecodeJob(segment, segment.windows[0]) for segment in segments])
    durations = regulator.pad_batch([s.durations for s in segments], axis=-1, size=tokens)[0].astype(np.int64)
    y_lengths = np.array([int(s.durations.sum()) for s in segments], dtype=np.int64)
    timings = {**backend.timings, "regulate": segments[0].timings.get("regulator", 0.0)}
    return PipelineResult(audio=backend.tensors["audio"], y_lengths=y_lengths, durations=durations,
                          tensors=backend.tensors, timings=timings)
