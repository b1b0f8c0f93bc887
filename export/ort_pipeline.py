"""A minimal whole-utterance pipeline over the stage graphs: an OrtRunner + numpy regulation.

This is the *reference* chain used by the export tests and ``benchmarks/export_vs_torch.py``: no
scheduler, no streaming, one padded batch in, one padded batch out, with a wall-clock time per stage.
The serving engine (vitsrt.serve) has its own pipeline; this one exists so export can be proven
end to end without depending on it. It needs onnxruntime and numpy only (no torch).

Per item the noise comes from :class:`vitsrt.regulator.RequestNoise` (seed per item), so an item's
result does not depend on the batch it was run in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vitsrt import regulator
from vitsrt.serve.backends.ort_runner import OrtRunner
from vitsrt.stages import StageName

__all__ = ["PipelineResult", "synthesize_batch"]


@dataclass
class PipelineResult:
    audio: np.ndarray  # [B, 1, F*hop], zero past y_lengths*hop
    y_lengths: np.ndarray  # [B] int64
    durations: np.ndarray  # [B, T] int64
    tensors: dict[str, np.ndarray]  # every intermediate by graph tensor name (enc, m_p, logw, z_p, z, ...)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (+ "regulate")


def _per_item(value: float | npt.ArrayLike, batch: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float32), (batch,)).copy()


def synthesize_batch(
    runner: OrtRunner,
    encoder_inputs: Mapping[str, npt.ArrayLike],
    *,
    seeds: Sequence[int],
    noise_scale: float | npt.ArrayLike,
    noise_scale_w: float | npt.ArrayLike,
    length_scale: float | npt.ArrayLike,
    sdp_ratio: float | npt.ArrayLike,
    skip_sdp: bool = True,
) -> PipelineResult:
    """Run encoder -> duration -> regulation -> flow -> decoder on one padded batch.

    ``encoder_inputs`` holds the encoder graph's inputs (phone_ids, tone_ids, language_ids, lengths,
    bert, ja_bert, en_bert, sid). Scales are scalars or one value per item, all given: this harness has no
    defaults of its own (a voice's are vitsrt.sampling.Sampling's). With ``skip_sdp`` and
    every ``sdp_ratio`` 0, the ``duration_dp_only`` graph runs instead of ``duration`` if present.
    """
    timings: dict[str, float] = {}

    def timed(stage: StageName, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        out = runner.run(stage, feeds)
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
        return out

    feeds = {k: np.ascontiguousarray(v) for k, v in encoder_inputs.items()}
    lengths = np.asarray(feeds["lengths"], dtype=np.int64)
    batch = lengths.shape[0]
    noises = [regulator.RequestNoise(int(s)) for s in seeds]
    tensors: dict[str, np.ndarray] = dict(timed("encoder", feeds))
    enc, x_mask, g = tensors["enc"], tensors["x_mask"], tensors["g"]

    ratios = _per_item(sdp_ratio, batch)
    if skip_sdp and runner.has("duration_dp_only") and not ratios.any():
        logw = timed("duration_dp_only", {"enc": enc, "x_mask": x_mask, "g": g})["logw"]
    else:
        start = time.perf_counter()
        sdp_noise = regulator.batch_sdp_noise(noises, lengths, noise_scale_w, max_tokens=enc.shape[2])
        timings["regulate"] = time.perf_counter() - start
        tensors["sdp_noise"] = sdp_noise
        logw = timed(
            "duration", {"enc": enc, "x_mask": x_mask, "g": g, "sdp_noise": sdp_noise, "sdp_ratio": ratios}
        )["logw"]
    tensors["logw"] = logw

    start = time.perf_counter()
    durations = regulator.durations_from_logw(logw, x_mask, length_scale)
    m_frames, logs_frames, y_mask, y_lengths = regulator.expand_by_durations(
        durations, tensors["m_p"], tensors["logs_p"]
    )
    eps = regulator.batch_prior_eps(noises, m_frames.shape[1], y_lengths, max_frames=m_frames.shape[2])
    z_p = regulator.sample_prior(m_frames, logs_frames, eps, noise_scale, y_mask)
    timings["regulate"] = timings.get("regulate", 0.0) + time.perf_counter() - start
    tensors.update(z_p=z_p, y_mask=y_mask)

    z = timed("flow", {"z_p": z_p, "y_mask": y_mask, "g": g})["z"]
    tensors["z"] = z
    audio = timed("decoder", {"z": z, "y_mask": y_mask, "g": g})["audio"]
    return PipelineResult(audio=audio, y_lengths=y_lengths, durations=durations, tensors=tensors, timings=timings)
