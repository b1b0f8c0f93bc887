"""Audio encodings for the wire and for files, without torch: float32 samples -> bytes.

The engine produces float32 mono samples in [-1, 1]. Clients ask for one of three encodings
(`Encoding`): raw signed 16-bit PCM, raw float32, or WAV. Encoding is sample-wise, so encoding a stream
chunk by chunk and concatenating the bytes gives exactly the bytes of encoding the whole utterance at once
(what makes streaming and unary results comparable byte for byte).

WAV in a stream: the first chunk carries a 44-byte RIFF header whose RIFF size and data size fields are
0xFFFFFFFF, because the length is unknown when the header must be sent. That is the convention ffmpeg,
sox and libsndfile accept for "data runs to end of stream"; the alternative (0) makes several readers
think the file is empty. `finalize_wav` rewrites the two sizes once the whole stream has been received.
"""

from __future__ import annotations

import enum
import io
import struct
import wave

import numpy as np

__all__ = [
    "STREAMING_WAV_SIZE",
    "WAV_HEADER_BYTES",
    "Encoding",
    "StreamEncoder",
    "decode_pcm",
    "encode_samples",
    "finalize_wav",
    "float_to_pcm16",
    "wav_bytes",
    "wav_header",
]

WAV_HEADER_BYTES = 44
STREAMING_WAV_SIZE = 0xFFFFFFFF
_PCM16_SCALE = 32767.0


class Encoding(enum.IntEnum):
    """Wire encodings; the values equal the proto's `AudioEncoding` numbers (0 means PCM_S16LE)."""

    PCM_S16LE = 1
    FLOAT32LE = 2
    WAV = 3

    @classmethod
    def from_wire(cls, value: int) -> Encoding:
        """The encoding for a proto enum number; 0 (unspecified) is PCM_S16LE. ValueError if unknown."""
        if value == 0:
            return cls.PCM_S16LE
        return cls(value)


def _as_mono_float32(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples (1-D), got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16, clipping out-of-range values and rounding to nearest (symmetric scale)."""
    scaled = np.clip(_as_mono_float32(samples), -1.0, 1.0) * _PCM16_SCALE
    return np.rint(scaled).astype("<i2")


def encode_samples(samples: np.ndarray, encoding: Encoding) -> bytes:
    """Raw sample bytes for PCM_S16LE / WAV (the data part) or FLOAT32LE; no header."""
    if encoding is Encoding.FLOAT32LE:
        return _as_mono_float32(samples).astype("<f4", copy=False).tobytes()
    return float_to_pcm16(samples).tobytes()


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
    """Raw PCM_S16LE / FLOAT32LE bytes back to float32 samples (the inverse of `encode_samples`)."""
    if encoding is Encoding.FLOAT32LE:
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    if encoding is Encoding.WAV:
        raise ValueError("decode WAV with finalize_wav + the wave module; this takes raw sample bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _PCM16_SCALE


class StreamEncoder:
    """Encodes one stream's chunks: WAV gets its header in front of the first chunk, the rest is raw data."""

    def __init__(self, encoding: Encoding, sample_rate: int):
        self.encoding = encoding
        self.sample_rate = sample_rate
        self._header_sent = False

    def encode(self, samples: np.ndarray) -> bytes:
        payload = encode_samples(samples, self.encoding)
        if self.encoding is Encoding.WAV and not self._header_sent:
            self._header_sent = True
            return wav_header(self.sample_rate) + payload
        return payload
