"""The engine's public request/result types (what the gRPC server, the CLI and the benchmarks speak)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vitsrt.errors import InputError, NotFoundError, clip, name_list
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


MAX_BLEND_SPEAKERS = 256  # weights in one blend (a name may repeat: its weights add up)
MAX_CURVE_POINTS = 256
MAX_WEIGHT = 1e6  # weights are relative (70 and 30 is 0.7 and 0.3); bounded so that sums stay finite


class SpeakerWeight(BaseModel):
    """One speaker's share of a speaker blend: a speaker of the voice and a weight >= 0. A blend's weights are
    normalised to sum 1; a speaker named twice gets the sum of its weights."""

    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(min_length=1, max_length=256)
    weight: float


class BlendPoint(BaseModel):
    """A speaker blend at one position of the utterance (0: its first frame, 1: its last); speakers a point does
    not name weigh 0 there."""

    model_config = ConfigDict(extra="forbid")

    position: float
    speakers: list[SpeakerWeight] = Field(min_length=1, max_length=MAX_BLEND_SPEAKERS)


def _check_weights(where: str, weights: Sequence[SpeakerWeight]) -> None:
    for item in weights:
        if not 0 <= item.weight <= MAX_WEIGHT:  # NaN fails too
            raise InputError(where, f"speaker {clip(item.speaker)} has weight {item.weight!r} (weights are 0..1e6)")
    if not any(item.weight > 0 for item in weights):
        raise InputError(where, "every weight is zero; give at least one speaker a weight above 0")


def _check_curve(points: Sequence[BlendPoint]) -> None:
    last = -math.inf
    for point in points:
        if not (math.isfinite(point.position) and 0.0 <= point.position <= 1.0):
            raise InputError("speaker_curve", f"position {point.position!r} is outside 0..1")
        if point.position <= last:
            raise InputError("speaker_curve", f"positions must increase; {point.position!r} follows {last!r}")
        last = point.position
        _check_weights("speaker_curve", point.speakers)


def parse_speaker_weights(text: str, where: str = "speakers") -> list[SpeakerWeight]:
    """``"slt:0.7,rms:0.3"`` -> its weights (checked when a request is made of them); InputError naming `where`
    for a part that is not NAME:WEIGHT. Names with ',' or a final ':' cannot be written this way."""
    weights = []
    for part in text.split(","):
        name, colon, value = part.strip().rpartition(":")
        if not colon or not name:
            raise InputError(where, f"{clip(part.strip())} is not NAME:WEIGHT (e.g. 'slt:0.7,rms:0.3')")
        try:
            weights.append(SpeakerWeight(speaker=name, weight=float(value)))
        except ValueError:
            raise InputError(where, f"weight {clip(value)} of speaker {clip(name)} is not a number") from None
    return weights


def parse_speaker_curve(text: str) -> list[BlendPoint]:
    """``"0=slt:1;0.5=slt:0.5,rms:0.5;1=rms:1"`` (POSITION=NAME:WEIGHT,... per point, points separated by ';') ->
    its points; InputError ("speaker_curve") for a malformed point."""
    points = []
    for part in text.split(";"):
        position, equals, blend = part.strip().partition("=")
        if not equals:
            raise InputError("speaker_curve", f"{clip(part.strip())} is not POSITION=NAME:WEIGHT,...")
        try:
            at = float(position)
        except ValueError:
            raise InputError("speaker_curve", f"position {clip(position)} is not a number") from None
        points.append(BlendPoint(position=at, speakers=parse_speaker_weights(blend, "speaker_curve")))
    return points


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
    # A blend of the voice's speakers (multi-speaker VITS voices) instead of one `speaker`: the speaker vector is
    # the weighted sum of theirs (weights normalised to sum 1). `speakers`: one blend for the whole utterance.
    # `speaker_curve`: blends at positions 0..1 of the utterance, interpolated linearly per frame (the flow and
    # decoder take a vector per frame; the encoder and duration predictor the blend's mean over the sentence).
    speakers: list[SpeakerWeight] = Field(default_factory=list, max_length=MAX_BLEND_SPEAKERS)
    speaker_curve: list[BlendPoint] = Field(default_factory=list, max_length=MAX_CURVE_POINTS)

    @model_validator(mode="after")
    def _one_input(self) -> SynthesisRequest:
        if (self.text is None) == (self.phonemes is None):
            raise InputError("input", "give exactly one of text or phonemes")
        if sum(map(bool, (self.speaker, self.speakers, self.speaker_curve))) > 1:
            raise InputError("speakers", "give at most one of speaker, speakers (a blend) or speaker_curve")
        if self.speakers:
            _check_weights("speakers", self.speakers)
        _check_curve(self.speaker_curve)
        return self

    def blend_points(self) -> list[BlendPoint]:
        """The request's speaker blend as curve points (a static blend is one point); [] without a blend."""
        if self.speakers:
            return [BlendPoint(position=0.0, speakers=self.speakers)]
        return list(self.speaker_curve)


@dataclass(frozen=True)
class SpeakerMix:
    """A request's speaker blend resolved against a voice: speaker ids (those with a weight above 0 somewhere) and,
    per curve point, normalised weights. Weights between points are linear in the position, constant before the
    first point and after the last."""

    sids: np.ndarray  # [S] int64, distinct
    positions: np.ndarray  # [P] float64, increasing in 0..1
    weights: np.ndarray  # [P, S] float64, each row sums to 1

    @classmethod
    def resolve(cls, points: Sequence[BlendPoint], speakers: Mapping[str, int], voice: str) -> SpeakerMix:
        """NotFoundError for a name that is not one of `speakers` (the voice's name -> id table)."""
        for point in points:
            for item in point.speakers:
                if item.speaker not in speakers:
                    raise NotFoundError(f"unknown speaker {clip(item.speaker)} in the blend for voice {voice!r}; "
                                        f"available: {name_list(list(speakers))}")
        sids = sorted({speakers[item.speaker] for point in points for item in point.speakers})
        column = {sid: i for i, sid in enumerate(sids)}
        weights = np.zeros((len(points), len(sids)), dtype=np.float64)
        for row, point in enumerate(points):
            for item in point.speakers:
                weights[row, column[speakers[item.speaker]]] += item.weight
        used = weights.sum(axis=0) > 0  # a speaker weighing 0 everywhere adds exact zeros: left out
        weights = weights[:, used] / weights[:, used].sum(axis=1, keepdims=True)
        positions = np.array([point.position for point in points], dtype=np.float64)
        return cls(np.array(sids, dtype=np.int64)[used], positions, weights)

    def at(self, positions: np.ndarray) -> np.ndarray:
        """[N, S] weights at `positions` [N] (a constant stretch of the curve gives its weights exactly)."""
        return np.stack([np.interp(positions, self.positions, self.weights[:, s]) for s in range(len(self.sids))],
                        axis=1)

    def mean(self, start: float, end: float) -> np.ndarray:
        """[S] mean weights over positions [start, end] (exact for the piecewise-linear curve; a curve constant
        there gives its weights exactly)."""
        inner = self.positions[(self.positions > start) & (self.positions < end)]
        breaks = np.concatenate([[start], inner, [end]])
        values = self.at(breaks)
        if end <= start:
            return values[0]
        rise = values - values[0]  # zero where the curve is flat, so a flat stretch adds nothing to round
        area = ((rise[1:] + rise[:-1]) * np.diff(breaks)[:, None]).sum(axis=0) / 2
        return values[0] + area / (end - start)

    def frames(self, start: float, end: float, count: int) -> np.ndarray:
        """[count, S] weights of `count` frames spread evenly over positions [start, end] (each at its centre)."""
        centres = start + (end - start) * (np.arange(count, dtype=np.float64) + 0.5) / count
        return self.at(centres)


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
