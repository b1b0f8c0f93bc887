"""Audio encodings for the wire and for files, without torch: float32 samples -> bytes, at a chosen rate.

The engine produces float32 mono samples in [-1, 1] at the voice's rate. Clients ask for an `Encoding` and
optionally another sample rate. `StreamEncoder` does both for one stream, chunk by chunk: it resamples
(`Resampler`) and encodes, keeping the state of both between chunks; `finish()` returns the tail (the
resampler's last samples, the codec's last frames and the container's trailer).

Resampling is soxr's streaming interface, which is chunking-invariant: an utterance fed chunk by chunk
gives the same samples as fed whole (tests/test_audio_formats.py). The price is a few milliseconds of
filter delay: the first chunks come out a little shorter and the flush returns the rest.

Two kinds of encoding:

* Sample-wise (PCM_S16LE, FLOAT32LE, WAV, MULAW, ALAW): each sample becomes a fixed number of bytes, so
  encoding a stream chunk by chunk and concatenating the bytes gives exactly the bytes of encoding the
  whole utterance at once (what makes streaming and unary results comparable byte for byte). MULAW and
  ALAW are G.711 companding (one byte a sample, numpy below), headerless as telephony carries them.
* Codec formats (MP3, OPUS in Ogg, AAC in ADTS, FLAC) go through PyAV (libavcodec). The encoder re-frames
  its input into fixed-size codec frames, so the bytes depend only on the sample sequence, not on how it
  was chunked. Each `encode` returns the complete codec frames (and container pages) ready so far; the
  container is written to an unseekable sink, so nothing is patched afterwards and the concatenated
  bytes are a playable file (no Xing header in MP3, FLAC's STREAMINFO without total length / MD5).

WAV in a stream: the first chunk carries a 44-byte RIFF header whose RIFF size and data size fields are
0xFFFFFFFF, because the length is unknown when the header must be sent. That is the convention ffmpeg,
sox and libsndfile accept for "data runs to end of stream"; the alternative (0) makes several readers
think the file is empty. `finalize_wav` rewrites the two sizes once the whole stream has been received.

PyAV and soxr are optional (`pip install 'vitsrt[formats]'`) and imported only when a stream needs them:
the raw encodings at the voice's own rate work without either.
"""

from __future__ import annotations

import enum
import importlib
import io
import struct
import types
import wave
from dataclasses import dataclass

import numpy as np

from vitsrt.errors import VitsrtError

__all__ = [
    "CODEC_RATES",
    "FORMATS_EXTRA",
    "STREAMING_WAV_SIZE",
    "WAV_HEADER_BYTES",
    "Encoding",
    "FormatsUnavailableError",
    "Resampler",
    "StreamEncoder",
    "alaw_decode",
    "alaw_encode",
    "decode_pcm",
    "encode_samples",
    "encode_utterance",
    "finalize_wav",
    "float_to_pcm16",
    "mulaw_decode",
    "mulaw_encode",
    "output_rate",
    "require",
    "resample",
    "wav_bytes",
    "wav_header",
]

WAV_HEADER_BYTES = 44
STREAMING_WAV_SIZE = 0xFFFFFFFF
_PCM16_SCALE = 32767.0
FORMATS_EXTRA = "pip install 'vitsrt[formats]'"


# ----- optional packages and resampling (soxr) -----
# soxr's "high quality": ~-100 dB stop band, far below 16-bit quantisation, at a few ms of delay.
_SOXR_QUALITY = "HQ"


class FormatsUnavailableError(VitsrtError):
    """An output format or a sample-rate change needs an optional package that is not installed."""


def require(module: str, purpose: str) -> types.ModuleType:
    """Import an optional package, or fail with one line saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FormatsUnavailableError(f"{purpose} needs the '{module}' package: {FORMATS_EXTRA}") from None


def _check_rate(name: str, rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer, got {rate!r}")
    return int(rate)


class Resampler:
    """Float32 mono from `source_rate` to `target_rate`, chunk by chunk; equal rates pass samples through."""

    def __init__(self, source_rate: int, target_rate: int):
        self.source_rate = _check_rate("source_rate", source_rate)
        self.target_rate = _check_rate("target_rate", target_rate)
        self._stream = None
        if self.source_rate != self.target_rate:
            soxr = require("soxr", f"resampling {self.source_rate} Hz to {self.target_rate} Hz")
            self._stream = soxr.ResampleStream(self.source_rate, self.target_rate, 1, dtype="float32",
                                               quality=_SOXR_QUALITY)
        self._flushed = False

    def process(self, samples: np.ndarray) -> np.ndarray:
        """The output samples that `samples` (the next piece of the stream) make available now."""
        if self._flushed:
            raise ValueError("Resampler.process after flush")
        array = np.ascontiguousarray(samples, dtype=np.float32)
        if self._stream is None or array.size == 0:
            return array
        return self._stream.resample_chunk(array)

    def flush(self) -> np.ndarray:
        """The samples still held in the filter; the stream ends here."""
        if self._flushed:
            raise ValueError("Resampler.flush called twice")
        self._flushed = True
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """A whole utterance at once (the same code path as streaming, so the two agree)."""
    resampler = Resampler(source_rate, target_rate)
    return np.concatenate([resampler.process(samples), resampler.flush()])


class Encoding(enum.IntEnum):
    """Wire encodings; the values equal the proto's `AudioEncoding` numbers (0 means PCM_S16LE).

    Sample-wise encodings are numbered from 1, codec formats from 10 (6..9 are unused)."""

    PCM_S16LE = 1
    FLOAT32LE = 2
    WAV = 3
    MULAW = 4
    ALAW = 5
    MP3 = 10
    OPUS = 11
    AAC = 12
    FLAC = 13

    @classmethod
    def from_wire(cls, value: int) -> Encoding:
        """The encoding for a proto enum number; 0 (unspecified) is PCM_S16LE. ValueError if unknown."""
        if value == 0:
            return cls.PCM_S16LE
        return cls(value)

    @property
    def is_codec(self) -> bool:
        """True for the formats encoded by PyAV (not sample-wise)."""
        return self in _CODECS


@dataclass(frozen=True)
class _CodecSpec:
    codec: str  # libavcodec encoder
    container: str  # libavformat muxer
    frame_format: str  # what we hand the encoder: "flt" (float32) or "s16" (our own PCM16 rounding)
    bit_rate: int | None  # mono speech; None = lossless
    rates: tuple[int, ...] | None  # the rates the encoder accepts (None: any)


_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_CODECS = {
    Encoding.MP3: _CodecSpec("libmp3lame", "mp3", "flt", 64_000, _MP3_RATES),
    Encoding.OPUS: _CodecSpec("libopus", "ogg", "flt", 48_000, (8000, 12000, 16000, 24000, 48000)),
    Encoding.AAC: _CodecSpec("aac", "adts", "flt", 64_000, _MP3_RATES),
    # FLAC gets int16 from float_to_pcm16, so it decodes to exactly the PCM_S16LE samples.
    Encoding.FLAC: _CodecSpec("flac", "flac", "s16", None, None),
}
CODEC_RATES = {encoding: spec.rates for encoding, spec in _CODECS.items()}
# Container options: write each packet through at once (streaming); bitexact so that the same samples give
# the same bytes (no random Ogg serial number, no library version tag), which is what lets unary and
# streamed results be compared byte for byte. Ogg pages close every 20 ms instead of the default 1 s,
# else an Ogg stream would arrive in one-second bursts.
_CONTAINER_OPTIONS = {"flush_packets": "1", "fflags": "+bitexact"}
_OGG_OPTIONS = {"page_duration": "20000"}


def output_rate(encoding: Encoding, source_rate: int, target_rate: int | None = None) -> int:
    """The rate a stream is encoded at: `target_rate` (or the source's), raised to the next rate the codec
    accepts when it accepts only some (e.g. Opus 22050 -> 24000; above the highest: the highest)."""
    rate = target_rate or source_rate
    rates = CODEC_RATES.get(encoding)
    if not rates or rate in rates:
        return rate
    higher = [candidate for candidate in rates if candidate >= rate]
    return min(higher) if higher else max(rates)


def _as_mono_float32(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, clipping out-of-range values and rounding to nearest (symmetric scale)."""
    scaled = np.clip(_as_mono_float32(samples), -1.0, 1.0) * _PCM16_SCALE
    return np.rint(scaled).astype("<i2")


# ----- G.711 (ITU-T G.711; the bit layout of the reference implementation in Sun's g711.c) -----

_MULAW_BIAS = 0x84
_MULAW_CLIP = 32635
# floor(log2(v)) for v = 0..255 (0 -> 0): the segment of a biased magnitude >> 7.
_SEGMENT_OF = np.concatenate([[0], np.floor(np.log2(np.arange(1, 256)))]).astype(np.int32)
# Upper ends of A-law's eight segments, on the 13-bit magnitude.
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def mulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> μ-law bytes (uint8). Sample-wise, so it streams without state."""
    values = np.asarray(pcm).astype(np.int32)
    sign = np.where(values < 0, 0x80, 0)
    biased = np.minimum(np.abs(values), _MULAW_CLIP) + _MULAW_BIAS  # 132 .. 32767
    segment = _SEGMENT_OF[biased >> 7]
    mantissa = (biased >> (segment + 3)) & 0x0F
    # Bits are inverted on the line (G.711), so silence is 0xFF rather than a run of zeros.
    return (~(sign | (segment << 4) | mantissa) & 0xFF).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """μ-law bytes -> int16, each code to the middle of its quantisation step."""
    code = ~np.asarray(codes).astype(np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + _MULAW_BIAS) << ((code >> 4) & 0x07)
    return np.where(code & 0x80, _MULAW_BIAS - magnitude, magnitude - _MULAW_BIAS).astype(np.int16)


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 samples -> A-law bytes (uint8), on the 13-bit value G.711 A-law is defined for."""
    values = np.asarray(pcm).astype(np.int32) >> 3
    negative = values < 0
    # One's complement for negatives (as the reference does), and even bits inverted on the line.
    magnitude = np.where(negative, -values - 1, values)
    line_mask = np.where(negative, 0x55, 0xD5)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude, side="left")
    mantissa = np.where(segment < 2, magnitude >> 1, magnitude >> segment) & 0x0F
    return (((segment << 4) | mantissa) ^ line_mask).astype(np.uint8)


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """A-law bytes -> int16, each code to the middle of its quantisation step."""
    code = np.asarray(codes).astype(np.int32) ^ 0x55
    step_base = (code & 0x0F) << 4
    segment = (code >> 4) & 0x07
    magnitude = np.where(segment == 0, step_base + 8, (step_base + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


# ----- sample-wise encodings -----

def encode_samples(samples: np.ndarray, encoding: Encoding) -> bytes:
    """Raw sample bytes for the sample-wise encodings (WAV: the data part, no header); no resampling."""
    if encoding.is_codec:
        raise ValueError(f"{encoding.name} is not sample-wise: use StreamEncoder or encode_utterance")
    if encoding is Encoding.FLOAT32LE:
        return _as_mono_float32(samples).astype("<f4", copy=False).tobytes()
    pcm = float_to_pcm16(samples)
    if encoding is Encoding.MULAW:
        return mulaw_encode(pcm).tobytes()
    if encoding is Encoding.ALAW:
        return alaw_encode(pcm).tobytes()
    return pcm.tobytes()


def wav_header(sample_rate: int, data_bytes: int = STREAMING_WAV_SIZE) -> bytes:
    """A canonical 44-byte header for mono 16-bit PCM. The default sizes mean 'unknown, read to the end'."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    riff_size = STREAMING_WAV_SIZE if data_bytes == STREAMING_WAV_SIZE else 36 + data_bytes
    channels, bits = 1, 16
    block_align = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align,
                                    block_align, bits)
            + b"data" + struct.pack("<I", data_bytes))


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete mono 16-bit WAV file (stdlib `wave`, so the sizes are filled in)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(float_to_pcm16(samples).tobytes())
    return buffer.getvalue()


def finalize_wav(stream: bytes) -> bytes:
    """Turn a streamed WAV (sizes 0xFFFFFFFF) into a strictly valid file by writing the real sizes."""
    if len(stream) < WAV_HEADER_BYTES or stream[:4] != b"RIFF" or stream[36:40] != b"data":
        raise ValueError("not a canonical 44-byte-header WAV stream")
    data_bytes = len(stream) - WAV_HEADER_BYTES
    return (stream[:4] + struct.pack("<I", 36 + data_bytes) + stream[8:40] + struct.pack("<I", data_bytes)
            + stream[WAV_HEADER_BYTES:])


def decode_pcm(data: bytes, encoding: Encoding) -> np.ndarray:
    """Raw sample-wise bytes back to float32 samples (the inverse of `encode_samples`; WAV: no header)."""
    if encoding is Encoding.FLOAT32LE:
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    if encoding is Encoding.WAV or encoding.is_codec:
        raise ValueError(f"decode {encoding.name} with a reader for its container; this takes raw sample bytes")
    if encoding is Encoding.MULAW:
        pcm = mulaw_decode(np.frombuffer(data, dtype=np.uint8))
    elif encoding is Encoding.ALAW:
        pcm = alaw_decode(np.frombuffer(data, dtype=np.uint8))
    else:
        pcm = np.frombuffer(data, dtype="<i2")
    return pcm.astype(np.float32) / _PCM16_SCALE


# ----- codec formats (PyAV) -----

class _Sink:
    """A write-only file for libavformat: no seek, so the muxer streams and never goes back to patch."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class _CodecWriter:
    """One PyAV output container + audio stream; `write` returns the bytes the muxer has produced so far."""

    def __init__(self, encoding: Encoding, sample_rate: int):
        av = require("av", f"{encoding.name} output")
        self._av = av
        self._spec = _CODECS[encoding]
        self._rate = sample_rate
        self._sink = _Sink()
        options = {**_CONTAINER_OPTIONS, **(_OGG_OPTIONS if self._spec.container == "ogg" else {})}
        self._container = av.open(self._sink, mode="w", format=self._spec.container, container_options=options)
        self._stream = self._container.add_stream(self._spec.codec, rate=sample_rate, layout="mono")
        if self._spec.bit_rate:
            self._stream.bit_rate = self._spec.bit_rate
        self._pts = 0

    def write(self, samples: np.ndarray) -> bytes:
        if samples.size:
            data = float_to_pcm16(samples) if self._spec.frame_format == "s16" else samples
            frame = self._av.AudioFrame.from_ndarray(data.reshape(1, -1), format=self._spec.frame_format,
                                                     layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._pts
            self._pts += samples.size
            self._mux(self._stream.encode(frame))
        return self._sink.take()

    def close(self) -> bytes:
        self._mux(self._stream.encode(None))  # drain the encoder's buffered frames
        self._container.close()  # trailer (e.g. Ogg's last page)
        return self._sink.take()

    def _mux(self, packets: list) -> None:
        for packet in packets:
            self._container.mux(packet)


class StreamEncoder:
    """Encodes one stream's chunks at `sample_rate` (the output rate; see `output_rate`).

    `encode(chunk)` returns the bytes ready after that chunk (WAV: the header comes in front of the first
    one; codec formats: whole frames, so possibly b"" for a short chunk); `finish()` returns the rest and
    ends the stream. The concatenation of everything returned is one playable stream/file; for sample-wise
    encodings it equals encoding the utterance at once byte for byte, and so it does for codec formats
    (PyAV re-frames the input; resampling is chunking-invariant)."""

    def __init__(self, encoding: Encoding, source_rate: int, target_rate: int | None = None):
        self.encoding = encoding
        self.source_rate = source_rate
        self.sample_rate = output_rate(encoding, source_rate, target_rate)
        self._resampler = Resampler(source_rate, self.sample_rate)
        self._codec = _CodecWriter(encoding, self.sample_rate) if encoding.is_codec else None
        self._started = False
        self._finished = False

    def encode(self, samples: np.ndarray) -> bytes:
        if self._finished:
            raise ValueError("StreamEncoder.encode after finish")
        return self._emit(self._resampler.process(_as_mono_float32(samples)))

    def finish(self) -> bytes:
        if self._finished:
            raise ValueError("StreamEncoder.finish called twice")
        tail = self._emit(self._resampler.flush())
        self._finished = True
        return tail + (self._codec.close() if self._codec is not None else b"")

    def _emit(self, samples: np.ndarray) -> bytes:
        if self.sample_rate != self.source_rate:
            # The resampling filter can overshoot a full-scale peak slightly; FLOAT32LE promises [-1, 1].
            samples = np.clip(samples, -1.0, 1.0)
        header = b""
        if not self._started:
            self._started = True
            if self.encoding is Encoding.WAV:
                header = wav_header(self.sample_rate)
        if self._codec is not None:
            return header + self._codec.write(samples)
        return header + encode_samples(samples, self.encoding)


def encode_utterance(samples: np.ndarray, encoding: Encoding, source_rate: int,
                     target_rate: int | None = None) -> tuple[bytes, int]:
    """A whole utterance as one complete file/stream and its output rate. Runs the same `StreamEncoder`
    as a stream does; WAV gets its real sizes (a strictly valid file, as `wav_bytes` writes)."""
    encoder = StreamEncoder(encoding, source_rate, target_rate)
    data = encoder.encode(samples) + encoder.finish()
    if encoding is Encoding.WAV:
        data = finalize_wav(data)
    return data, encoder.sample_rate
