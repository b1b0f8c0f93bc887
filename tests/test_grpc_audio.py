"""vitsrt.audio: sample-wise encodings (chunked == whole), WAV headers readable by common readers; over gRPC:
the encoding and sample_rate fields (formats themselves: tests/test_audio_formats.py)."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
import soundfile

from vitsrt.audio import (
    STREAMING_WAV_SIZE,
    WAV_HEADER_BYTES,
    Encoding,
    StreamEncoder,
    decode_pcm,
    encode_samples,
    finalize_wav,
    float_to_pcm16,
    wav_bytes,
    wav_header,
)


@pytest.fixture
def samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(5000) * 0.4).astype(np.float32)


def test_pcm16_rounds_and_clips():
    values = np.array([0.0, 1.0, -1.0, 1.5, -2.0, 0.5, 1e-5, -1e-5], np.float32)
    assert float_to_pcm16(values).tolist() == [0, 32767, -32767, 32767, -32767, 16384, 0, 0]
    assert float_to_pcm16(values).dtype == np.dtype("<i2")


def test_encode_roundtrip(samples):
    assert np.array_equal(decode_pcm(encode_samples(samples, Encoding.FLOAT32LE), Encoding.FLOAT32LE), samples)
    back = decode_pcm(encode_samples(samples, Encoding.PCM_S16LE), Encoding.PCM_S16LE)
    assert np.max(np.abs(back - np.clip(samples, -1, 1))) <= 0.5 / 32767 + 1e-7


@pytest.mark.parametrize("encoding", [encoding for encoding in Encoding if not encoding.is_codec])
def test_chunked_stream_equals_whole(samples, encoding):
    encoder = StreamEncoder(encoding, 44100)
    pieces = [encoder.encode(part) for part in np.array_split(samples, [1, 700, 701, 3000])]
    streamed = b"".join(pieces)
    if encoding is Encoding.WAV:
        assert pieces[0][:4] == b"RIFF" and all(p[:4] != b"RIFF" for p in pieces[1:])
        assert finalize_wav(streamed) == wav_bytes(samples, 44100)
    else:
        assert streamed == encode_samples(samples, encoding)


def test_negative_control_different_audio_differs(samples):
    other = samples.copy()
    other[100] += 0.01
    assert encode_samples(other, Encoding.PCM_S16LE) != encode_samples(samples, Encoding.PCM_S16LE)


def test_streaming_wav_header_is_readable_as_is(samples):
    encoder = StreamEncoder(Encoding.WAV, 22050)
    stream = encoder.encode(samples[:1000]) + encoder.encode(samples[1000:])
    assert struct.unpack("<I", stream[4:8])[0] == STREAMING_WAV_SIZE
    assert struct.unpack("<I", stream[40:44])[0] == STREAMING_WAV_SIZE
    data, rate = soundfile.read(io.BytesIO(stream), dtype="int16")
    assert rate == 22050 and np.array_equal(data, float_to_pcm16(samples))
    with wave.open(io.BytesIO(stream)) as reader:
        assert np.array_equal(np.frombuffer(reader.readframes(10**9), "<i2"), float_to_pcm16(samples))


def test_complete_wav(samples):
    data = wav_bytes(samples, 16000)
    assert len(data) == WAV_HEADER_BYTES + 2 * len(samples)
    assert data[:WAV_HEADER_BYTES] == wav_header(16000, 2 * len(samples))
    read, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 16000 and np.array_equal(read, float_to_pcm16(samples))


def test_wire_numbers_and_bad_input():
    assert Encoding.from_wire(0) is Encoding.PCM_S16LE and Encoding.from_wire(3) is Encoding.WAV
    assert [encoding.value for encoding in Encoding] == [1, 2, 3, 4, 5, 10, 11, 12, 13]
    for unused in (6, 7, 8, 9, 14, -1):
        with pytest.raises(ValueError):
            Encoding.from_wire(unused)
    with pytest.raises(ValueError):
        encode_samples(np.zeros((2, 3), np.float32), Encoding.PCM_S16LE)
    with pytest.raises(ValueError):
        finalize_wav(b"not a wav")
