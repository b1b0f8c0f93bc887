"""Audio clean-up for dataset preparation: mono, resample, trim silence, peak-normalise, whole frames.

numpy / scipy / soundfile only (no torch), so `vitsrt prepare` workers start quickly. Resampling
uses scipy's polyphase filter (`resample_poly`, Kaiser-windowed FIR), which for the integer
ratios between common rates (22050 <-> 44100 <-> 16000 ...) is of the same class as soxr's and
librosa's default quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf


class AudioError(Exception):
    """A file that cannot become a training example; the message is the reason shown to the user."""


@dataclass(frozen=True)
class AudioSettings:
    sampling_rate: int
    hop_length: int
    trim_db: float = 40.0  # frames this far below the loudest frame count as silence
    trim_margin_s: float = 0.05  # silence kept on each side of the speech
    peak: float = 0.95
    min_seconds: float = 0.3
    max_seconds: float = 30.0


@dataclass(frozen=True)
class CleanAudio:
    samples: np.ndarray  # float32 mono in [-1, 1], a whole number of hops long
    source_rate: int
    source_channels: int


def read_audio(path: str | Path | BinaryIO) -> tuple[np.ndarray, int]:
    """(float32 [frames, channels], rate) of a file or an open binary stream (a tar shard's member);
    unreadable or empty audio raises AudioError."""
    try:
        data, rate = sf.read(path if hasattr(path, "read") else str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioError(f"unreadable audio ({first})") from None
    if data.size == 0:
        raise AudioError("empty audio")
    return data, int(rate)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return samples
    from scipy.signal import resample_poly

    factor = gcd(source_rate, target_rate)
    return resample_poly(samples, target_rate // factor, source_rate // factor).astype(np.float32)


def trim_silence(samples: np.ndarray, rate: int, settings: AudioSettings) -> np.ndarray:
    """Cut leading and trailing stretches quieter than ``trim_db`` below the loudest 10 ms frame."""
    frame = max(1, rate // 100)
    n_frames = len(samples) // frame
    if n_frames == 0:
        return samples
    energy = np.sqrt(np.mean(samples[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > -settings.trim_db)
    margin = int(settings.trim_margin_s * rate)
    start = max(0, loud[0] * frame - margin)
    end = min(len(samples), (loud[-1] + 1) * frame + margin)
    return samples[start:end]


def clean_audio(path: str | Path | BinaryIO, settings: AudioSettings) -> CleanAudio:
    data, rate = read_audio(path)
    if not np.isfinite(data).all():
        raise AudioError("audio contains NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = resample(mono, rate, settings.sampling_rate)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak < 1e-4:
        raise AudioError("silent audio")
    mono = trim_silence(mono, settings.sampling_rate, settings)
    mono = mono * (settings.peak / float(np.max(np.abs(mono))))
    seconds = len(mono) / settings.sampling_rate
    if seconds < settings.min_seconds:
        raise AudioError(f"too short after trimming ({seconds:.2f} s < {settings.min_seconds} s)")
    if seconds > settings.max_seconds:
        raise AudioError(f"too long ({seconds:.1f} s > {settings.max_seconds} s)")
    whole = (len(mono) // settings.hop_length) * settings.hop_length
    return CleanAudio(mono[:whole].astype(np.float32), rate, data.shape[1])


def write_pcm16(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """16-bit PCM WAV, written to a temp name and renamed so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)
