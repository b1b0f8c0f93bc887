"""CLAP emotion prompts at serve time (Bert-VITS2 2.2): the exported towers' manifest, the text tokenizer and the
audio features, with numpy and ``tokenizers`` only (no torch, no transformers).

Bert-VITS2 2.2 conditions its text encoder on one 512-dim CLAP embedding per request (laion/clap-htsat-fused):
of a reference clip (the audio tower) or of a text prompt such as "Happy" (the text tower). ``vitsrt export
--clap DIR`` (:mod:`vitsrt.export.clap`) writes a content-addressed directory ``clap/<key>/`` with

* ``text.onnx``: ``input_ids``, ``attention_mask`` ``[B, N]`` int64 -> ``embedding [B, 512]`` (L2-normalised
  ``text_projection`` of the text tower's pooled output: transformers' ``get_text_features``);
* ``audio.onnx``: ``input_features [B, 4, frames, mel]`` float32 -> ``embedding [B, 512]`` (``get_audio_features``
  with the fusion branch always on, as upstream's one-clip calls always have it);
* ``tokenizer.json`` (the model's byte-level BPE, ``<s> ... </s>`` included), ``mel_filters.npy`` (the feature
  extractor's filter bank) and ``clap.json`` (:class:`ClapManifest`).

:func:`audio_features` is ClapFeatureExtractor's ``truncation="fusion"``, ``padding="repeatpad"`` path in numpy
(framing, periodic Hann window, FFT rounded to complex64 as transformers stores it, power spectrum, mel filters,
dB). A clip up to ``max_samples`` (10 s at 48 kHz) is tiled ``int(max/len)`` times, zero-padded to 10 s and its
log-mel stacked four times. For a longer clip upstream takes three RANDOM 10 s crops (global numpy RNG) beside a
bilinear shrink of the whole mel, so its features are not reproducible; here the crops are the first, the
middle and the last 10 s of the clip (deterministic), the shrink is the same bilinear resize.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vitsrt.errors import InputError, VitsrtError, clip
from vitsrt.files import read_small_text
from vitsrt.text.bert import MAX_SMALL_FILE_BYTES, BertTokenizer, SpecialToken, batch_feeds

__all__ = [
    "AUDIO_GRAPH",
    "CLAP_FORMAT",
    "FUSED_COPIES",
    "MANIFEST_NAME",
    "MEL_FILTERS_NAME",
    "OUTPUT_NAME",
    "TEXT_GRAPH",
    "TOKENIZER_NAME",
    "ClapManifest",
    "ClapTokenizer",
    "audio_features",
    "decode_clip",
    "log_mel",
    "read_clap_manifest",
    "read_mel_filters",
]

CLAP_FORMAT = "vitsrt-clap"
TEXT_GRAPH = "text.onnx"
AUDIO_GRAPH = "audio.onnx"
TOKENIZER_NAME = "tokenizer.json"
MEL_FILTERS_NAME = "mel_filters.npy"
MANIFEST_NAME = "clap.json"
OUTPUT_NAME = "embedding"
FUSED_COPIES = 4  # the audio tower's input: the global mel and three local ones
_MEL_FLOOR = 1e-10  # transformers' mel_floor and power_to_db's min_value
MAX_CLIP_SECONDS = 120.0  # a reference clip longer than this is refused (its mel is computed whole)


class ClapManifest(BaseModel):
    """``clap.json``: what was exported and how its inputs are made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["vitsrt-clap"] = CLAP_FORMAT
    format_version: Literal[1] = 1
    key: str = Field(pattern=r"^[0-9a-f]{64}$")  # sha256 of the source files and export options
    source_name: str  # the source directory's name (informational)
    embedding_dim: int = Field(ge=1)  # projection_dim: the width of both towers' output
    # The feature extractor (ClapFeatureExtractor's preprocessor_config.json).
    sampling_rate: int = Field(gt=0)
    fft_window_size: int = Field(ge=2)
    hop_length: int = Field(ge=1)
    max_samples: int = Field(ge=1)
    num_mel_bins: int = Field(ge=1)
    frames: int = Field(ge=1)  # max_samples // hop_length + 1: the audio graph's fixed time axis
    # The tokenizer.
    max_tokens: int = Field(ge=2)  # ids of one prompt at most, <s> and </s> included
    pad: SpecialToken
    unk: SpecialToken
    opset: int
    files: dict[str, str]  # file name -> sha256 of text.onnx, audio.onnx, tokenizer.json, mel_filters.npy


def read_clap_manifest(clap_dir: str | os.PathLike[str]) -> ClapManifest:
    """The :class:`ClapManifest` of an exported CLAP directory; VitsrtError with one line if unusable."""
    path = Path(clap_dir) / MANIFEST_NAME
    text = read_small_text(path, MAX_SMALL_FILE_BYTES)
    try:
        return ClapManifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        shown = clip(os.fspath(path), 200)
        raise VitsrtError(f"{shown}: not a vitsrt CLAP manifest ({where}: {first['msg']})") from None


def read_mel_filters(clap_dir: str | os.PathLike[str], manifest: ClapManifest) -> np.ndarray:
    """The stored mel filter bank, float64 [fft_window_size // 2 + 1, num_mel_bins]."""
    path = Path(clap_dir) / MEL_FILTERS_NAME
    shown = clip(os.fspath(path), 200)
    try:
        filters = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VitsrtError(f"{shown}: cannot be read as a numpy array ({type(exc).__name__})") from None
    want = (manifest.fft_window_size // 2 + 1, manifest.num_mel_bins)
    if filters.shape != want or not np.issubdtype(filters.dtype, np.floating):
        raise VitsrtError(f"{shown}: a {filters.dtype} {list(filters.shape)} array, expected float {list(want)}")
    return filters.astype(np.float64, copy=False)


class ClapTokenizer:
    """The text tower's tokenizer (a ``tokenizers`` file): prompt -> ids with ``<s> ... </s>``; batch feeds."""

    def __init__(self, clap_dir: str | os.PathLike[str], manifest: ClapManifest):
        self.manifest = manifest
        self._tokenizer = BertTokenizer(Path(clap_dir) / TOKENIZER_NAME, max_tokens=manifest.max_tokens,
                                        pad_id=manifest.pad.id, unk_id=manifest.unk.id)

    def encode(self, prompt: str) -> np.ndarray:
        """1-D int64 ids; TooManyIdsError past the model's position limit."""
        return self._tokenizer.encode(prompt)[0]

    def feeds(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """``input_ids`` (right-padded with the pad id) and ``attention_mask`` for a batch of prompts."""
        return batch_feeds([self.encode(p) for p in prompts], ("input_ids", "attention_mask"),
                           pad_id=self.manifest.pad.id)


def _frames(padded: np.ndarray, size: int, hop: int) -> np.ndarray:
    count = 1 + (padded.size - size) // hop
    view = np.lib.stride_tricks.as_strided(padded, shape=(count, size),
                                           strides=(padded.strides[0] * hop, padded.strides[0]), writeable=False)
    return view


def log_mel(samples: np.ndarray, manifest: ClapManifest, mel_filters: np.ndarray) -> np.ndarray:
    """The dB mel spectrogram [frames, mel] of a mono clip (float64), as transformers' ``spectrogram`` with
    ``center=True`` (reflect padding), a periodic Hann window, power 2, ``mel_floor`` 1e-10 and ``log_mel="dB"``
    (reference 1, no dynamic-range cut)."""
    size, hop = manifest.fft_window_size, manifest.hop_length
    padded = np.pad(np.asarray(samples, dtype=np.float64), size // 2, mode="reflect")
    window = np.hanning(size + 1)[:-1]
    spectrum = np.fft.rfft(_frames(padded, size, hop) * window, axis=1).astype(np.complex64)  # stored as complex64
    power = np.abs(spectrum, dtype=np.float64) ** 2
    mel = np.maximum(_MEL_FLOOR, power @ mel_filters)
    return 10.0 * np.log10(mel)


def _bilinear_rows(mel: np.ndarray, rows: int) -> np.ndarray:
    """``mel`` [n, m] resized to [rows, m] along its first axis with half-pixel centres (torch's bilinear with
    align_corners=False; the second axis keeps its size, so it is not resampled)."""
    n = mel.shape[0]
    source = np.maximum((np.arange(rows) + 0.5) * (n / rows) - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    weight = (source - low)[:, None]
    return mel[low] * (1.0 - weight) + mel[high] * weight


def audio_features(samples: np.ndarray, manifest: ClapManifest, mel_filters: np.ndarray) -> np.ndarray:
    """The audio tower's input for one mono clip at ``manifest.sampling_rate``: float32 [4, frames, mel]."""
    wave = np.asarray(samples, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise InputError("emotion.audio", "the reference clip is empty")
    limit = manifest.max_samples
    chunk = manifest.frames
    if wave.size <= limit:
        if wave.size < limit:
            wave = np.tile(wave, limit // wave.size)
            wave = np.pad(wave, (0, limit - wave.size))
        mel = log_mel(wave, manifest, mel_filters)
        return np.stack([mel] * FUSED_COPIES).astype(np.float32)
    mel = log_mel(wave, manifest, mel_filters)
    total = mel.shape[0]
    if total == chunk:  # longer than 10 s by less than a hop: the whole mel, as upstream
        return np.stack([mel] * FUSED_COPIES).astype(np.float32)
    last = total - chunk
    starts = (0, last // 2, last)  # upstream: one random start in each third of 0..last
    crops = [mel[s : s + chunk] for s in starts]
    return np.stack([_bilinear_rows(mel, chunk), *crops]).astype(np.float32)


def decode_clip(data: bytes, target_rate: int, max_seconds: float = MAX_CLIP_SECONDS) -> np.ndarray:
    """A reference clip sent as an audio file's bytes (anything libsndfile reads: WAV, FLAC, Ogg) -> float32 mono
    at `target_rate` (channels averaged; another rate is resampled with soxr, the ``formats`` extra)."""
    import soundfile

    from vitsrt.audio import resample

    try:
        data_array, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError("emotion.audio", f"is not a readable audio file ({clip(first, 80)})") from None
    if data_array.size == 0:
        raise InputError("emotion.audio", "the reference clip is empty")
    if data_array.shape[0] > max_seconds * rate:
        raise InputError("emotion.audio", f"the reference clip is longer than {max_seconds:g} s")
    mono = data_array.mean(axis=1, dtype=np.float32) if data_array.shape[1] > 1 else data_array[:, 0]
    if not np.isfinite(mono).all():
        raise InputError("emotion.audio", "the reference clip holds NaN or infinite samples")
    if int(rate) == target_rate:
        return np.ascontiguousarray(mono)
    return np.ascontiguousarray(resample(mono, int(rate), target_rate), dtype=np.float32)
