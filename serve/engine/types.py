"""The engine's public request/result types (what the gRPC server, the CLI and the benchmarks speak)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vitsrt.errors import InputError


class PhonemeIds(BaseModel):
    """Ids sent directly by the caller (the `ids` front end); tone/language default to zeros."""

    model_config = ConfigDict(extra="forbid")

    phone_ids: list[int]
    tone_ids: list[int] | None = None
    language_ids: list[int] | None = None


class SynthesisRequest(BaseModel):
    """One utterance to synthesise. Empty voice/speaker = the engine's defaults; None scales = the voice's."""

    model_config = ConfigDict(extra="forbid")

    voice: str = ""
    speaker: str = ""
    text: str | None = None
    phonemes: PhonemeIds | None = None
    language: str = ""
    length_scale: float | None = None
    noise_scale: float | None = None
    noise_scale_w: float | None = None
    sdp_ratio: float | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**64)

    @model_validator(mode="after")
    def _one_input(self) -> SynthesisRequest:
        if (self.text is None) == (self.phonemes is None):
            raise InputError("input", "give exactly one of text or phonemes")
        return self

    @field_validator("length_scale", "noise_scale", "noise_scale_w", "sdp_ratio")
    @classmethod
    def _finite(cls, value: float | None, info) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise InputError(info.field_name, f"must be a finite number, got {value}")
        if value < 0 or (info.field_name == "length_scale" and value == 0):
            raise InputError(info.field_name, f"must be {'> 0' if info.field_name == 'length_scale' else '>= 0'}")
        if info.field_name == "sdp_ratio" and value > 1:
            raise InputError(info.field_name, "must be between 0 and 1")
        return value


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
