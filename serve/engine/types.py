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

    @model_validator(mode="after")
    def _one_input(self) -> SynthesisRequest:
        if (self.text is None) == (self.phonemes is None):
            raise InputError("input", "give exactly one of text or phonemes")
        return self


@dataclass
class AudioChunk:
    """A piece of a stream: float32 mono samples in [-1, 1]."""

    audio: np.ndarray
    sample_rate: int
    index: int
    is_last: bool
    sentence_index: int = 0
    timings: dict[str, float] | None = None  # on the last chunk: seconds per stage spent on this request


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 mono
    sample_rate: int
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds spent for this request

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
