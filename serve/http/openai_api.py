"""OpenAI's `POST /v1/audio/speech` request, its errors, and how its names map onto vitsrt voices.

Mapping choices (README and the module docs of `vitsrt.serve.http` repeat them for users):

* `model`: a vitsrt voice name; "tts-1", "tts-1-hd", "gpt-4o-mini-tts" and "gpt-4o-mini-tts-2025-12-15" are
  aliases of the server's default voice (the first `-v`), so clients written for OpenAI work unchanged.
* `voice`: a speaker of the model's voice, or "VOICE/SPEAKER" (any voice), or one of OpenAI's voice names,
  which map onto the model's speakers in order: the i-th name of `OPENAI_VOICES` is speaker i modulo the
  number of speakers (a speaker really called "alloy" wins over the mapping). `{"id": ...}` is read as the
  plain string. A speaker blend "slt:0.7,rms:0.3" (or "VOICE/slt:0.7,rms:0.3") speaks with the weighted sum of
  those speakers' vectors, weights normalised to sum 1 (a speaker whose name is the whole string wins).
* `speed` (0.25-4.0, OpenAI's range): length_scale = the voice's own length_scale / speed, so 1.0 is the
  voice's trained pace and 2.0 is twice as fast. Unset = the voice's pace.
* `instructions` (gpt-4o-mini-tts's style prompt): for a Bert-VITS2 2.2 voice exported with its CLAP towers it is
  the request's emotion text prompt (e.g. "Happy"); every other voice accepts and ignores it (no prompt to
  steer, and refusing it would break clients that always send one).
* `response_format` defaults to mp3 as OpenAI's does; `pcm` is signed 16-bit little-endian mono at the voice's
  own rate (OpenAI's pcm is 24 kHz: ask for that with the `sample_rate` extension); the rate is in the
  `X-Sample-Rate` response header either way.
* vitsrt extensions (OpenAI's SDK sends them with `extra_body`): `seed` (same seed, same audio), `language`,
  `sample_rate` (resample the output), `normalize_text` (false: no reading of numbers, dates, abbreviations),
  `timestamps` (with `stream_format` "sse": `speech.timestamps` events with word and phoneme spans in samples),
  `emotion` (a text prompt for a 2.2 voice; wins over `instructions`; other voices refuse it with a 400).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vitsrt.audio import Encoding
from vitsrt.errors import InputError, clip, name_list
from vitsrt.serve.engine.types import (
    MAX_EMOTION_PROMPT_CHARS,
    SpeakerWeight,
    VoiceInfo,
    parse_speaker_weights,
)

MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15")
# OpenAI's built-in voice names in the order its API reference lists them; position = speaker index.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar")
# response_format -> the Encoding member that produces it (looked up by name, so a vitsrt.audio without one of
# them refuses that format with a 400 instead of failing at import).
FORMAT_ENCODINGS = {"mp3": "MP3", "opus": "OPUS", "aac": "AAC", "flac": "FLAC", "wav": "WAV", "pcm": "PCM_S16LE"}
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                 "wav": "audio/wav", "pcm": "audio/pcm"}
_STATUS_TYPES = {401: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}


class ApiError(Exception):
    """A refusal in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with `status`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = _STATUS_TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class VoiceRef(BaseModel):
    """OpenAI's custom-voice form `{"id": "..."}`; read as the plain string."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str


class SpeechRequest(BaseModel):
    """The request body. Strict: a number given as a string, or an unknown field, is a 400 as at OpenAI."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str
    input: str
    voice: str | VoiceRef
    instructions: str | None = None  # a 2.2 voice's emotion prompt, else ignored (see the module docs)
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float | None = Field(None, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    # vitsrt extensions
    seed: int | None = Field(None, ge=0, lt=2**64)
    language: str = ""
    sample_rate: int | None = Field(None, ge=8000, le=48000)
    normalize_text: bool = True  # false: numbers, dates, abbreviations reach the phonemiser as written
    timestamps: bool = False  # sse only: word/phoneme spans as `speech.timestamps` events
    emotion: str | None = Field(None, min_length=1, max_length=MAX_EMOTION_PROMPT_CHARS)  # 2.2 voices' text prompt

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice

    @property
    def emotion_field(self) -> str:
        """The field an emotion prompt comes from (and its errors name): `emotion` when given, else `instructions`."""
        return "emotion" if self.emotion is not None else "instructions"

    def emotion_prompt(self, takes_prompt: bool) -> str | None:
        """The prompt: `emotion` for any voice (the engine refuses it where there is no emotion input), else
        `instructions` for a voice that `takes_prompt` (a 2.2 voice with its CLAP text tower), else none."""
        if self.emotion is not None:
            return self.emotion
        return (self.instructions or None) if takes_prompt else None


def _validation_message(error: dict[str, Any]) -> tuple[str, str]:
    """(param, message) for pydantic's first complaint, worded as OpenAI words the common ones."""
    loc = [str(part) for part in error["loc"] if part not in ("str", "VoiceRef")]  # union member names
    param = ".".join(loc) or "body"
    if error["type"] == "missing":
        return param, f"Missing required parameter: '{param}'."
    if error["type"] == "extra_forbidden":
        return param, f"Unrecognized request argument supplied: {clip(param)}"
    return param, f"Invalid value for '{param}': {error['msg']}"


def parse_speech_request(payload: object) -> SpeechRequest:
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return SpeechRequest.model_validate(payload)
    except ValidationError as exc:
        param, message = _validation_message(exc.errors()[0])
        raise ApiError(400, message, param=param, code="invalid_value") from None


def resolve_model(model: str, voices: dict[str, VoiceInfo], default_voice: str) -> str:
    """The vitsrt voice a `model` names (404 model_not_found otherwise, as OpenAI answers)."""
    if model in voices:
        return model
    if model in MODEL_ALIASES:
        return default_voice
    raise ApiError(404, f"The model {clip(model)} does not exist; available: "
                   f"{name_list([*voices, *MODEL_ALIASES])}", param="model", code="model_not_found")


def openai_voice_map(info: VoiceInfo) -> dict[str, str]:
    """OpenAI voice name -> speaker of `info`, speakers taken in order and repeated when there are fewer."""
    if not info.speakers:
        return {}
    return {name: info.speakers[i % len(info.speakers)] for i, name in enumerate(OPENAI_VOICES)}


def _blend(given: str, voice: str, info: VoiceInfo) -> list[SpeakerWeight] | None:
    """The weights of a speaker blend "NAME:WEIGHT,..." of `info`'s speakers; None when `given` is not one
    (no ':'); 400 for a malformed one or an unknown name (the weights' ranges are the engine request's)."""
    if ":" not in given:
        return None
    try:
        weights = parse_speaker_weights(given, "voice")
    except InputError as exc:
        raise ApiError(400, f"voice {clip(given)}: {exc}", param="voice", code="invalid_value") from None
    unknown = [w.speaker for w in weights if w.speaker not in info.speakers]
    if unknown:
        raise ApiError(400, f"voice {clip(given)}: voice {clip(voice)} has no speaker {clip(unknown[0])}; "
                       f"available: {name_list(list(info.speakers))}", param="voice", code="invalid_value")
    return weights


def resolve_voice(given: str, model_voice: str, model: str,
                  voices: dict[str, VoiceInfo]) -> tuple[str, str, list[SpeakerWeight]]:
    """(voice, speaker, blend weights) for the request's `voice` field: a speaker and no weights, or for a blend
    the blend's text and its weights; 400 invalid_value naming the choices otherwise."""
    info = voices[model_voice]
    if "/" in given:
        voice, _, speaker = given.partition("/")
        if voice not in voices:
            raise ApiError(400, f"voice {clip(given)}: no voice {clip(voice)}; available: {name_list(list(voices))}",
                           param="voice", code="invalid_value")
        if model in voices and voice != model:
            raise ApiError(400, f"voice {clip(given)} belongs to voice {clip(voice)}, but model is {clip(model)}",
                           param="voice", code="invalid_value")
        if speaker in voices[voice].speakers:
            return voice, speaker, []
        blend = _blend(speaker, voice, voices[voice])
        if blend is None:
            raise ApiError(400, f"voice {clip(given)}: voice {clip(voice)} has no speaker {clip(speaker)}; "
                           f"available: {name_list(list(voices[voice].speakers))}", param="voice",
                           code="invalid_value")
        return voice, speaker, blend
    if given in info.speakers:
        return model_voice, given, []
    mapped = openai_voice_map(info).get(given)
    if mapped is not None:
        return model_voice, mapped, []
    blend = _blend(given, model_voice, info)
    if blend is not None:
        return model_voice, given, blend
    raise ApiError(400, f"voice {clip(given)} is not a speaker of {clip(model_voice)}; available: "
                   f"{name_list([*info.speakers, *OPENAI_VOICES])}, VOICE/SPEAKER or a blend "
                   "SPEAKER:WEIGHT,...", param="voice",
                   code="invalid_value")


def encoding_for(response_format: str) -> Encoding:
    """The Encoding for a response_format; 400 when this build's vitsrt.audio cannot produce it."""
    found = Encoding.__members__.get(FORMAT_ENCODINGS[response_format])
    if found is None:
        available = [name for name, member in FORMAT_ENCODINGS.items() if member in Encoding.__members__]
        raise ApiError(400, f"response_format {response_format!r} is not available on this server; available: "
                       f"{', '.join(available)}", param="response_format", code="unsupported_format")
    return found
