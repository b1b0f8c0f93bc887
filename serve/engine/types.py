"""The engine's public request/result types (what the gRPC server, the CLI and the benchmarks speak)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vitsrt.errors import InputError
from vitsrt.sampling import SamplingOverrides


class PhonemeIds(BaseModel):
    """Ids sent directly by the caller (the `ids` front end); tone/language default to zeros."""

    model_config = ConfigDict(extra="forbid")

    phone_ids: list[int]
    tone_ids: list[int] | None = None
    language_ids: list[int] | None = None


MAX_EMOTION_PROMPT_CHARS = 500
MAX_EMOTION_AUDIO_BYTES = 32 << 20  # ~3 min of 48 kHz PCM16 mono


class EmotionPrompt(BaseModel):
    """Bert-VITS2 2.2 voices: the emotion to speak with, as CLAP embeds it (upstream's emotion prompt). Exactly one of
    ``text`` (a prompt for CLAP's text tower, e.g. "Happy"), ``audio`` (a reference clip: an audio file's bytes,
    WAV/FLAC/Ogg at any rate, resampled to 48 kHz) or ``embedding`` (a ready CLAP embedding, e.g. what
    ``vitsrt clap-features`` writes). Text and audio need a voice exported with its CLAP towers."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=MAX_EMOTION_PROMPT_CHARS)
    audio: bytes | None = Field(default=None, min_length=1, max_length=MAX_EMOTION_AUDIO_BYTES)
    embedding: list[float] | None = Field(default=None, min_length=1, max_length=8192)

    @model_validator(mode="after")
    def _one_source(self) -> EmotionPrompt:
        if sum(value is not None for value in (self.text, self.audio, self.embedding)) != 1:
            raise InputError("emotion", "give exactly one of text, audio or embedding")
        return self


class SynthesisRequest(SamplingOverrides):  # type: ignore[misc, valid-type]
    """One utterance to synthesise. Empty voice/speaker = the engine's defaults; unset sampling values (the
    fields of vitsrt.sampling.Sampling, range-checked there) = the voice's."""

    model_config = ConfigDict(extra="forbid")

    voice: str = ""
    speaker: str = ""
    text: str | None = None
    phonemes: PhonemeIds | None = None
    language: str = ""
    # Read numbers, money, dates, times, abbreviations, URLs as a person would (vitsrt.text.expand) before
    # phonemising; False hands the text to the phonemiser as written.
    normalize_text: bool = True
    seed: int | None = Field(default=None, ge=0, lt=2**64)
    # Word and phoneme spans on the chunks (AudioChunk.words/phonemes). Off by default: they cost a little
    # host work and message size per chunk that most callers do not want.
    timestamps: bool = False
    # Bert-VITS2 2.2 voices: the emotion prompt (None: the voice's default prompt, else a zero embedding).
    emotion: EmotionPrompt | None = None

    @model_validator(mode="after")
    def _one_input(self) -> SynthesisRequest:
        if (self.text is None) == (self.phonemes is None):
            raise InputError("input", "give exactly one of text or phonemes")
        return self


@dataclass(frozen=True)
class PhonemeTimestamp:
    """One id of the input and the samples it lasts: [start_sample, end_sample) from the stream's first sample.
    `symbol` is the front end's name for the id (pad/BOS/EOS markers included; empty for raw ids input)."""

    id: int
    symbol: str
    start_sample: int
    end_sample: int


@dataclass(frozen=True)
class WordTimestamp:
    """One spoken word and its samples [start_sample, end_sample) from the stream's first sample: from its first
    phoneme's start to its last phoneme's end (silence and pause marks around it are outside)."""

    text: str
    start_sample: int
    end_sample: int


@dataclass
class AudioChunk:
    """A piece of a stream: float32 mono samples in [-1, 1].

    With `SynthesisRequest.timestamps`, `phonemes` and `words` hold the spans that START inside this chunk
    (start_sample in [first sample of the chunk, one past its last)); a span may end in a later chunk. The last
    chunk of a sentence also takes the sentence's zero-length spans at its very end. So every span comes
    exactly once, with the audio where it begins, and a client can cut text at the last word whose end_sample
    it has played. Phoneme spans cover every id, markers included, so they tile the audio without gaps.
    """

    audio: np.ndarray
    sample_rate: int
    index: int
    is_last: bool
    sentence_index: int = 0
    timings: dict[str, float] | None = None  # on the last chunk: seconds per stage spent on this request
    words: list[WordTimestamp] = field(default_factory=list)
    phonemes: list[PhonemeTimestamp] = field(default_factory=list)


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 mono
    sample_rate: int
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds spent for this request
    words: list[WordTimestamp] = field(default_factory=list)  # with SynthesisRequest.timestamps, as on chunks
    phonemes: list[PhonemeTimestamp] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    sample_rate: int
    speakers: tuple[str, ...]
    languages: tuple[str, ...]
    frontend: str
