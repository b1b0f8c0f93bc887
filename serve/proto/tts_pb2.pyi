from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    PCM_S16LE: _ClassVar[AudioEncoding]
    FLOAT32LE: _ClassVar[AudioEncoding]
    WAV: _ClassVar[AudioEncoding]
    MULAW: _ClassVar[AudioEncoding]
    ALAW: _ClassVar[AudioEncoding]
    MP3: _ClassVar[AudioEncoding]
    OPUS: _ClassVar[AudioEncoding]
    AAC: _ClassVar[AudioEncoding]
    FLAC: _ClassVar[AudioEncoding]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
PCM_S16LE: AudioEncoding
FLOAT32LE: AudioEncoding
WAV: AudioEncoding
MULAW: AudioEncoding
ALAW: AudioEncoding
MP3: AudioEncoding
OPUS: AudioEncoding
AAC: AudioEncoding
FLAC: AudioEncoding

class ListVoicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Voice(_message.Message):
    __slots__ = ("name", "sample_rate", "speakers", "languages", "frontend")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_FIELD_NUMBER: _ClassVar[int]
    name: str
    sample_rate: int
    speakers: _containers.RepeatedScalarFieldContainer[str]
    languages: _containers.RepeatedScalarFieldContainer[str]
    frontend: str
    def __init__(self, name: _Optional[str] = ..., sample_rate: _Optional[int] = ..., speakers: _Optional[_Iterable[str]] = ..., languages: _Optional[_Iterable[str]] = ..., frontend: _Optional[str] = ...) -> None: ...

class ListVoicesResponse(_message.Message):
    __slots__ = ("voices", "default_voice")
    VOICES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VOICE_FIELD_NUMBER: _ClassVar[int]
    voices: _containers.RepeatedCompositeFieldContainer[Voice]
    default_voice: str
    def __init__(self, voices: _Optional[_Iterable[_Union[Voice, _Mapping]]] = ..., default_voice: _Optional[str] = ...) -> None: ...

class PhonemeInput(_message.Message):
    __slots__ = ("phone_ids", "tone_ids", "language_ids")
    PHONE_IDS_FIELD_NUMBER: _ClassVar[int]
    TONE_IDS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    phone_ids: _containers.RepeatedScalarFieldContainer[int]
    tone_ids: _containers.RepeatedScalarFieldContainer[int]
    language_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, phone_ids: _Optional[_Iterable[int]] = ..., tone_ids: _Optional[_Iterable[int]] = ..., language_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("voice", "speaker", "text", "phonemes", "language", "length_scale", "noise_scale", "noise_scale_w", "sdp_ratio", "seed", "encoding", "sample_rate", "normalize_text", "timestamps", "emotion", "speakers", "speaker_curve")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PHONEMES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_SCALE_FIELD_NUMBER: _ClassVar[int]
    NOISE_SCALE_FIELD_NUMBER: _ClassVar[int]
    NOISE_SCALE_W_FIELD_NUMBER: _ClassVar[int]
    SDP_RATIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_TEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_CURVE_FIELD_NUMBER: _ClassVar[int]
    voice: str
    speaker: str
    text: str
    phonemes: PhonemeInput
    language: str
    length_scale: float
    noise_scale: float
    noise_scale_w: float
    sdp_ratio: float
    seed: int
    encoding: AudioEncoding
    sample_rate: int
    normalize_text: bool
    timestamps: bool
    emotion: EmotionPrompt
    speakers: _containers.RepeatedCompositeFieldContainer[SpeakerWeight]
    speaker_curve: _containers.RepeatedCompositeFieldContainer[SpeakerCurvePoint]
    def __init__(self, voice: _Optional[str] = ..., speaker: _Optional[str] = ..., text: _Optional[str] = ..., phonemes: _Optional[_Union[PhonemeInput, _Mapping]] = ..., language: _Optional[str] = ..., length_scale: _Optional[float] = ..., noise_scale: _Optional[float] = ..., noise_scale_w: _Optional[float] = ..., sdp_ratio: _Optional[float] = ..., seed: _Optional[int] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate: _Optional[int] = ..., normalize_text: _Optional[bool] = ..., timestamps: _Optional[bool] = ..., emotion: _Optional[_Union[EmotionPrompt, _Mapping]] = ..., speakers: _Optional[_Iterable[_Union[SpeakerWeight, _Mapping]]] = ..., speaker_curve: _Optional[_Iterable[_Union[SpeakerCurvePoint, _Mapping]]] = ...) -> None: ...

class SpeakerWeight(_message.Message):
    __slots__ = ("speaker", "weight")
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    speaker: str
    weight: float
    def __init__(self, speaker: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class SpeakerCurvePoint(_message.Message):
    __slots__ = ("position", "speakers")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    position: float
    speakers: _containers.RepeatedCompositeFieldContainer[SpeakerWeight]
    def __init__(self, position: _Optional[float] = ..., speakers: _Optional[_Iterable[_Union[SpeakerWeight, _Mapping]]] = ...) -> None: ...

class EmotionPrompt(_message.Message):
    __slots__ = ("text", "audio", "embedding")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    text: str
    audio: bytes
    embedding: EmotionEmbedding
    def __init__(self, text: _Optional[str] = ..., audio: _Optional[bytes] = ..., embedding: _Optional[_Union[EmotionEmbedding, _Mapping]] = ...) -> None: ...

class EmotionEmbedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("audio", "sample_rate", "encoding", "duration_seconds")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    sample_rate: int
    encoding: AudioEncoding
    duration_seconds: float
    def __init__(self, audio: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("audio", "sample_rate", "encoding", "index", "is_last", "sentence_index", "words", "phonemes")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IS_LAST_FIELD_NUMBER: _ClassVar[int]
    SENTENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    PHONEMES_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    sample_rate: int
    encoding: AudioEncoding
    index: int
    is_last: bool
    sentence_index: int
    words: _containers.RepeatedCompositeFieldContainer[WordTimestamp]
    phonemes: _containers.RepeatedCompositeFieldContainer[PhonemeTimestamp]
    def __init__(self, audio: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[AudioEncoding, str]] = ..., index: _Optional[int] = ..., is_last: _Optional[bool] = ..., sentence_index: _Optional[int] = ..., words: _Optional[_Iterable[_Union[WordTimestamp, _Mapping]]] = ..., phonemes: _Optional[_Iterable[_Union[PhonemeTimestamp, _Mapping]]] = ...) -> None: ...

class WordTimestamp(_message.Message):
    __slots__ = ("text", "start_sample", "end_sample")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_sample: int
    end_sample: int
    def __init__(self, text: _Optional[str] = ..., start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ...) -> None: ...

class PhonemeTimestamp(_message.Message):
    __slots__ = ("id", "symbol", "start_sample", "end_sample")
    ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    id: int
    symbol: str
    start_sample: int
    end_sample: int
    def __init__(self, id: _Optional[int] = ..., symbol: _Optional[str] = ..., start_sample: _Optional[int] = ..., end_sample: _Optional[int] = ...) -> None: ...
