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


# ----- over gRPC: encoding and sample_rate against the real engine -----

TOKENS = 120  # ~2.6 s of audio on the fixture voice (44.1 kHz), a few streamed chunks


@pytest.fixture(scope="module")
def server(fixture_voice):
    from grpc_support import RunningServer, open_engine
    from vitsrt.serve.grpc.server import ServerConfig

    engine = open_engine(fixture_voice)
    try:
        with RunningServer(engine, ServerConfig(port=0)) as running:
            yield running
    finally:
        engine.close()


@pytest.fixture(scope="module")
def client(server):
    from vitsrt.serve.grpc.client import TtsClient

    with TtsClient(server.target, timeout=60) as client:
        client.wait_ready()
        yield client


def _request(seed: int, encoding: Encoding, sample_rate: int | None = None):
    from grpc_support import ids_request

    request = ids_request(TOKENS, seed, encoding=encoding)
    if sample_rate is not None:
        request.sample_rate = sample_rate
    return request


def _float_reference(client, seed: int) -> np.ndarray:
    """The engine's float samples for `seed` at the voice's rate (FLOAT32LE is exact)."""
    received = client.call_streaming(_request(seed, Encoding.FLOAT32LE))
    assert received.sample_rate == 44100
    return received.samples


def test_proto_enum_matches_encoding():
    from vitsrt.serve.proto import tts_pb2

    wire = {value.name: value.number for value in tts_pb2.AudioEncoding.DESCRIPTOR.values}
    assert wire == {"AUDIO_ENCODING_UNSPECIFIED": 0, **{encoding.name: encoding.value for encoding in Encoding}}


def test_grpc_mulaw_at_8khz(client):
    from vitsrt.audio import mulaw_decode, resample

    chunks = list(client.chunks(_request(3, Encoding.MULAW, 8000)))
    assert len(chunks) > 1 and {chunk.sample_rate for chunk in chunks} == {8000}
    streamed = b"".join(chunk.audio for chunk in chunks)
    unary = client.call_unary(_request(3, Encoding.MULAW, 8000))
    assert unary.sample_rate == 8000 and unary.data == streamed
    reference = float_to_pcm16(resample(_float_reference(client, 3), 44100, 8000)).astype(np.int32)
    decoded, _ = soundfile.read(io.BytesIO(streamed), format="RAW", subtype="ULAW", samplerate=8000, channels=1,
                                dtype="int16")
    assert np.array_equal(decoded, mulaw_decode(np.frombuffer(streamed, np.uint8)))
    # Per sample within half a μ-law step of its segment (4 << segment), as in test_audio_formats.
    half_step = 4 << ((~np.frombuffer(streamed, np.uint8).astype(np.int32) >> 4) & 0x07)
    assert len(decoded) == len(reference) and np.all(np.abs(decoded - reference) <= half_step)
    assert not np.all(np.abs(decoded - np.roll(reference, 1)) <= half_step)  # negative control


CODEC_CASES = [(Encoding.MP3, None, 44100), (Encoding.OPUS, 16000, 16000), (Encoding.OPUS, None, 48000),
               (Encoding.AAC, 24000, 24000), (Encoding.FLAC, 22050, 22050)]


@pytest.mark.parametrize(("encoding", "sample_rate", "expected_rate"), CODEC_CASES)
def test_grpc_codec_stream_equals_unary_and_decodes(client, encoding, sample_rate, expected_rate):
    """Streamed chunks == unary == encoding the engine's float samples here (byte for byte), and the bytes decode
    to that audio's length and rate. How close each codec keeps the waveform is test_audio_formats' job: the
    fixture voice's random-weight output is noise-like (12 % of its energy above 8 kHz), which speech-rate lossy
    codecs do not keep sample for sample."""
    pytest.importorskip("av")
    from test_audio_formats import decode_with_pyav

    from vitsrt.audio import encode_utterance, resample

    chunks = list(client.chunks(_request(4, encoding, sample_rate)))
    assert {chunk.sample_rate for chunk in chunks} == {expected_rate} and chunks[-1].is_last
    streamed = b"".join(chunk.audio for chunk in chunks)
    unary = client.call_unary(_request(4, encoding, sample_rate))
    reference = _float_reference(client, 4)
    local, local_rate = encode_utterance(reference, encoding, 44100, sample_rate)
    assert unary.sample_rate == local_rate == expected_rate
    assert unary.data == streamed == local
    other, _ = encode_utterance(_float_reference(client, 5), encoding, 44100, sample_rate)
    assert other != local  # negative control: another seed's audio gives other bytes
    decoded, decoded_rate, _, _ = decode_with_pyav(streamed)
    expected_seconds = len(reference) / 44100
    # Codec padding (encoder delay, last frame) adds at most a few frames: under 0.1 s.
    assert abs(len(decoded) / decoded_rate - expected_seconds) < 0.1
    if encoding is Encoding.FLAC:
        pcm = float_to_pcm16(resample(reference, 44100, expected_rate))
        assert np.array_equal(np.rint(decoded * 32768).astype(np.int16), pcm)


@pytest.mark.parametrize(("field", "value"), [("sample_rate", 7999), ("sample_rate", 48001), ("sample_rate", 0),
                                              ("sample_rate", -16000), ("encoding", 7), ("encoding", 99)])
def test_grpc_bad_format_fields_are_invalid_and_the_server_still_serves(client, field, value):
    import grpc

    request = _request(5, Encoding.PCM_S16LE)
    setattr(request, field, value)
    for call in (client.call_unary, client.call_streaming):
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and field in caught.value.details()
    served = client.call_unary(_request(5, Encoding.PCM_S16LE, 48000))
    assert served.sample_rate == 48000 and len(served.data) > 2 * 48000


def test_cli_client_sample_rate(server, tmp_path, capsys):
    from grpc_support import phone_ids
    from vitsrt.cli import main

    ids = ",".join(map(str, phone_ids(TOKENS, 6)["phone_ids"]))
    target = server.target
    out = tmp_path / "x.wav"
    assert main(["-q", "client", "--ids", ids, "--server", target, "--sample-rate", "16000", "-o", str(out)]) == 0
    data, rate = soundfile.read(out, dtype="int16")
    assert rate == 16000 and len(data) > 16000
    assert main(["-q", "client", "--ids", ids, "--server", target, "--sample-rate", "96000"]) == 2
    assert "sample-rate: 96000 Hz is outside 8000..48000" in capsys.readouterr().err
