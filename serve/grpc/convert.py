"""Translation between the wire messages (`vitsrt.v1`) and the engine's request/result types.

All validation that can be phrased as "field X is wrong" ends up as `InputError(field, ...)`, which the
server maps to INVALID_ARGUMENT with the field in the message; nothing here talks gRPC.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from vitsrt.audio import Encoding
from vitsrt.errors import InputError
from vitsrt.sampling import Sampling
from vitsrt.serve.engine.types import (
    BlendPoint,
    EmotionPrompt,
    PhonemeIds,
    SpeakerWeight,
    SynthesisRequest,
    VoiceInfo,
)
from vitsrt.serve.proto import tts_pb2
from vitsrt.text.normalize import check_text_length

MAX_NAME_CHARS = 256  # SpeakerWeight.speaker's limit

# Output rates a request may ask for: telephone (8 kHz) to 48 kHz, the range every supported codec covers.
SAMPLE_RATE_RANGE = (8000, 48000)


def encoding_from_wire(value: int) -> Encoding:
    try:
        return Encoding.from_wire(value)
    except ValueError:
        known = ", ".join(f"{encoding.name}={encoding.value}" for encoding in Encoding)
        raise InputError("encoding", f"unknown AudioEncoding {value} (known: {known})") from None


def sample_rate_from_proto(message: tts_pb2.SynthesizeRequest) -> int | None:
    """The requested output rate; None when unset (the voice's rate). InputError outside SAMPLE_RATE_RANGE."""
    if not message.HasField("sample_rate"):
        return None
    low, high = SAMPLE_RATE_RANGE
    if not low <= message.sample_rate <= high:
        raise InputError("sample_rate", f"{message.sample_rate} Hz is outside {low}..{high}")
    return message.sample_rate


def request_from_proto(message: tts_pb2.SynthesizeRequest, max_text_chars: int) -> tuple[SynthesisRequest, Encoding]:
    """The engine request and the wanted encoding; InputError naming the field if anything is off.

    `max_text_chars` bounds text length (characters), cheap to check here before any work is queued. The
    number of phoneme ids has one limit, the engine's `max_phonemes`, checked by the voice's front end at
    admission (also before any work is queued).
    """
    encoding = encoding_from_wire(message.encoding)
    which = message.WhichOneof("input")
    text: str | None = None
    phonemes: PhonemeIds | None = None
    if which == "text":
        text = check_text_length(message.text, max_text_chars)  # early: the engine's own check, before queueing
    elif which == "phonemes":
        ids = message.phonemes
        if not ids.phone_ids:
            raise InputError("phonemes.phone_ids", "is empty")
        for name in ("tone_ids", "language_ids"):
            given = len(getattr(ids, name))
            if given and given != len(ids.phone_ids):
                raise InputError(f"phonemes.{name}", f"has {given} ids, phone_ids has {len(ids.phone_ids)}")
        phonemes = PhonemeIds(phone_ids=list(ids.phone_ids), tone_ids=list(ids.tone_ids) or None,
                              language_ids=list(ids.language_ids) or None)
    else:
        raise InputError("input", "set text or phonemes")
    # The proto's optional scalars carry the SynthesisRequest field names: the sampling values and the seed.
    optional = {name: getattr(message, name)
                for name in (*Sampling.model_fields, "seed", "normalize_text", "timestamps") if message.HasField(name)}
    try:
        request = SynthesisRequest(voice=message.voice, speaker=message.speaker, text=text, phonemes=phonemes,
                                   language=message.language, emotion=emotion_from_proto(message),
                                   speakers=_weights(message.speakers, "speakers"), speaker_curve=_curve(message),
                                   **optional)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "request"
        raise InputError(field, first["msg"]) from None
    return request, encoding


def _weights(items: Iterable[tts_pb2.SpeakerWeight], where: str) -> list[SpeakerWeight]:
    """A blend's weights; InputError naming `where` for a bad speaker name (the request checks the weights)."""
    for item in items:
        if not 0 < len(item.speaker) <= MAX_NAME_CHARS:
            raise InputError(where, f"a speaker name is empty or longer than {MAX_NAME_CHARS} characters")
    return [SpeakerWeight(speaker=item.speaker, weight=item.weight) for item in items]


def _curve(message: tts_pb2.SynthesizeRequest) -> list[BlendPoint]:
    points = []
    for point in message.speaker_curve:
        if not point.speakers:
            raise InputError("speaker_curve", f"the point at {point.position:g} names no speakers")
        points.append(BlendPoint(position=point.position, speakers=_weights(point.speakers, "speaker_curve")))
    return points


def emotion_from_proto(message: tts_pb2.SynthesizeRequest) -> EmotionPrompt | None:
    """The request's emotion prompt (Bert-VITS2 2.2 voices); None when unset; InputError naming the field
    (``emotion.text``, ...) when it is empty or out of range."""
    if not message.HasField("emotion"):
        return None
    which = message.emotion.WhichOneof("source")
    if which is None:
        raise InputError("emotion", "set one of text, audio or embedding")
    value = list(message.emotion.embedding.values) if which == "embedding" else getattr(message.emotion, which)
    try:
        return EmotionPrompt(**{which: value})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"emotion.{which}", first["msg"]) from None


def voice_to_proto(info: VoiceInfo) -> tts_pb2.Voice:
    return tts_pb2.Voice(name=info.name, sample_rate=info.sample_rate, speakers=list(info.speakers),
                         languages=list(info.languages), frontend=info.frontend)
