"""vitsrt.audio formats and rates: G.711 companding, soxr resampling per stream, MP3 / Ogg Opus / ADTS AAC /
FLAC through PyAV. Every output is decoded by an independent reader (libsndfile via soundfile, libavcodec via
PyAV) and compared with the PCM it came from; each check has a negative control that must fail it."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from vitsrt.audio import (
    Encoding,
    Resampler,
    StreamEncoder,
    alaw_decode,
    alaw_encode,
    decode_pcm,
    encode_samples,
    encode_utterance,
    float_to_pcm16,
    mulaw_decode,
    mulaw_encode,
    output_rate,
    resample,
)

av = pytest.importorskip("av")
pytest.importorskip("soxr")

SOURCE_RATE = 22050
CUTS = [1, 700, 701, 3000, 9000, 9001, 20000]  # uneven chunks, including 1-sample and empty ones
ALL_INT16 = np.arange(-32768, 32768).astype(np.int16)
MULAW_CLIP = 32635  # μ-law's largest encodable magnitude; beyond it the error is the clipping, not the step


def speechlike(rate: int, seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A voiced-speech stand-in: a gliding 120-200 Hz pitch with harmonics to ~3 kHz, syllable-rate envelope,
    a little noise. Tonal enough that lossy codecs at speech bit rates keep correlation well above 0.99."""
    t = np.arange(int(rate * seconds)) / rate
    pitch = 160 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    envelope = 0.55 - 0.45 * np.cos(2 * np.pi * 4 * t)
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.003
    return (0.35 * envelope * voiced / 2.0 + noise).astype(np.float32)


def chunked(encoder: StreamEncoder, samples: np.ndarray) -> list[bytes]:
    return [encoder.encode(part) for part in np.array_split(samples, CUTS)] + [encoder.finish()]


# ----- G.711 -----

def mulaw_half_step(codes: np.ndarray) -> np.ndarray:
    """Half the quantisation step of each μ-law code's segment, in int16 units: 4 << segment (4 .. 512)."""
    return 4 << ((~codes.astype(np.int32) >> 4) & 0x07)


def alaw_half_step(codes: np.ndarray) -> np.ndarray:
    """Half the A-law step: segments 0 and 1 step 16, each further segment doubles (8 .. 512)."""
    segment = ((codes.astype(np.int32) ^ 0x55) >> 4) & 0x07
    return 8 << np.maximum(segment - 1, 0)


G711 = {
    Encoding.MULAW: (mulaw_encode, mulaw_decode, mulaw_half_step, "ULAW"),
    Encoding.ALAW: (alaw_encode, alaw_decode, alaw_half_step, "ALAW"),
}


@pytest.mark.parametrize("encoding", list(G711))
def test_g711_every_int16_within_half_a_step(encoding):
    encode, decode, half_step, _ = G711[encoding]
    values = ALL_INT16[np.abs(ALL_INT16.astype(np.int32)) <= MULAW_CLIP] if encoding is Encoding.MULAW else ALL_INT16
    codes = encode(values)
    error = np.abs(decode(codes).astype(np.int32) - values)
    assert np.all(error <= half_step(codes)), int(np.max(error - half_step(codes)))
    assert int(error.max()) == 512  # the top segment's half step: the bound is tight, not loose


@pytest.mark.parametrize("encoding", list(G711))
def test_g711_decoder_agrees_with_libsndfile(encoding):
    _, decode, _, subtype = G711[encoding]
    codes = np.arange(256, dtype=np.uint8)
    theirs, _ = soundfile.read(io.BytesIO(codes.tobytes()), format="RAW", subtype=subtype, samplerate=8000,
                               channels=1, dtype="int16")
    assert np.array_equal(decode(codes), theirs)


def test_negative_control_g711_laws_are_not_interchangeable():
    codes = mulaw_encode(ALL_INT16)
    error = np.abs(alaw_decode(codes).astype(np.int32) - ALL_INT16)
    assert not np.all(error <= alaw_half_step(codes))


@pytest.mark.parametrize("encoding", list(G711))
def test_8khz_g711_stream_decodes_to_the_resampled_pcm(encoding):
    _, _, half_step, subtype = G711[encoding]
    samples = speechlike(SOURCE_RATE)
    encoder = StreamEncoder(encoding, SOURCE_RATE, 8000)
    assert encoder.sample_rate == 8000
    data = b"".join(chunked(encoder, samples))
    reference = float_to_pcm16(resample(samples, SOURCE_RATE, 8000)).astype(np.int32)
    decoded, _ = soundfile.read(io.BytesIO(data), format="RAW", subtype=subtype, samplerate=8000, channels=1,
                                dtype="int16")
    assert len(decoded) == len(reference) == round(len(samples) * 8000 / SOURCE_RATE)
    codes = np.frombuffer(data, np.uint8)
    # Bound: per sample, half the step of the segment its code is in (the signal peaks below μ-law's clip).
    assert np.all(np.abs(decoded - reference) <= half_step(codes))
    assert np.allclose(decode_pcm(data, encoding) * 32767, decoded, atol=1e-3)
    shifted = np.roll(reference, 1)  # negative control: one sample late must break the same bound
    assert not np.all(np.abs(decoded - shifted) <= half_step(codes))


def test_g711_is_sample_wise():
    samples = speechlike(8000)
    for encoding in G711:
        assert len(encode_samples(samples, encoding)) == len(samples)
        streamed = b"".join(chunked(StreamEncoder(encoding, 8000), samples))
        assert streamed == encode_samples(samples, encoding)


# ----- resampling -----

@pytest.mark.parametrize(("source", "target"), [(22050, 8000), (44100, 16000), (22050, 48000), (24000, 24000)])
def test_streamed_resampling_equals_one_shot(source, target):
    samples = speechlike(source)
    resampler = Resampler(source, target)
    streamed = np.concatenate([resampler.process(p) for p in np.array_split(samples, CUTS)] + [resampler.flush()])
    whole = resample(samples, source, target)
    assert len(streamed) == len(whole) == round(len(samples) * target / source)
    # Stated tolerance 1e-6 (soxr's stream is in fact chunking-invariant: the difference is 0).
    assert np.max(np.abs(streamed - whole)) <= 1e-6


def test_resampling_keeps_the_tone():
    tone = np.sin(2 * np.pi * 1000 * np.arange(22050) / 22050).astype(np.float32)
    out = resample(tone, 22050, 16000)
    expected = np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 16000)
    middle = slice(200, -200)  # away from the filter's edges
    assert np.max(np.abs(out[middle] - expected[middle])) < 1e-3
    wrong = np.sin(2 * np.pi * 1000 * np.arange(len(out)) / 22050)  # negative control: rate not converted
    assert np.max(np.abs(out[middle] - wrong[middle])) > 0.5


# ----- codec formats -----

def decode_with_pyav(data: bytes, container: str | None = None) -> tuple[np.ndarray, int, str, str]:
    with av.open(io.BytesIO(data), format=container) as reader:
        stream = reader.streams.audio[0]
        frames = [frame.to_ndarray().astype(np.float32).reshape(-1) for frame in reader.decode(stream)]
        scale = 32768.0 if stream.codec_context.format.name.startswith("s16") else 1.0
        return np.concatenate(frames) / scale, stream.rate, reader.format.name, stream.codec_context.name


def aligned_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int = 4096) -> float:
    """Correlation coefficient after shifting `decoded` by its best lag within ±max_lag (codec delay). A
    decoded stream that does not cover 95 % of the reference after the shift scores 0."""
    size = 1 << int(np.ceil(np.log2(len(decoded) + len(reference))))
    cross = np.fft.irfft(np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(cross[lags])])
    d, r = (decoded[lag:], reference) if lag >= 0 else (decoded, reference[-lag:])
    overlap = min(len(d), len(r))
    if overlap < 0.95 * len(reference):
        return 0.0
    return float(np.corrcoef(d[:overlap], r[:overlap])[0, 1])


CODEC_CASES = [
    # encoding, target rate, expected output rate, container, decoder
    (Encoding.MP3, None, 22050, "mp3", "mp3float"),
    (Encoding.MP3, 16000, 16000, "mp3", "mp3float"),
    (Encoding.OPUS, None, 24000, "ogg", "opus"),  # 22050 is not an Opus rate: raised to 24000
    (Encoding.OPUS, 8000, 8000, "ogg", "opus"),
    (Encoding.AAC, None, 22050, "aac", "aac"),  # PyAV names the ADTS demuxer "aac"
    (Encoding.AAC, 48000, 48000, "aac", "aac"),
    (Encoding.FLAC, None, 22050, "flac", "flac"),
    (Encoding.FLAC, 8000, 8000, "flac", "flac"),
]


@pytest.mark.parametrize(("encoding", "target", "rate", "container", "decoder"), CODEC_CASES)
def test_codec_stream_decodes_to_the_pcm(encoding, target, rate, container, decoder):
    samples = speechlike(SOURCE_RATE)
    encoder = StreamEncoder(encoding, SOURCE_RATE, target)
    assert encoder.sample_rate == rate
    streamed = b"".join(chunked(encoder, samples))
    whole, whole_rate = encode_utterance(samples, encoding, SOURCE_RATE, target)
    assert whole_rate == rate
    assert streamed == whole  # the encoder re-frames, resampling is chunking-invariant: the same bytes
    decoded, decoded_rate, format_name, codec_name = decode_with_pyav(streamed)
    assert (format_name, codec_name) == (container, decoder)
    reference = resample(samples, SOURCE_RATE, rate)
    if decoded_rate != rate:  # Ogg Opus decodes at 48 kHz whatever rate it was encoded at
        assert encoding is Encoding.OPUS and decoded_rate == 48000
        decoded = resample(decoded, decoded_rate, rate)
    if encoding is Encoding.FLAC:  # lossless: exactly the PCM16 samples
        assert np.array_equal(np.rint(decoded * 32768).astype(np.int16), float_to_pcm16(reference))
    assert aligned_correlation(decoded, reference) > 0.99
    # Negative controls: the same audio backwards, or shifted by half its length (far past any codec delay),
    # fails the same check.
    assert aligned_correlation(decoded, reference[::-1].copy()) < 0.99
    assert aligned_correlation(decoded, np.roll(reference, len(reference) // 2)) < 0.99


def test_negative_control_a_format_read_as_another_fails():
    mp3, _ = encode_utterance(speechlike(SOURCE_RATE), Encoding.MP3, SOURCE_RATE)
    with pytest.raises(av.error.FFmpegError):  # the Ogg demuxer finds no page
        decode_with_pyav(mp3, container="ogg")


@pytest.mark.parametrize("encoding", [Encoding.MP3, Encoding.OPUS, Encoding.AAC, Encoding.FLAC])
def test_codec_streams_bytes_as_it_goes(encoding):
    """Most bytes leave with the chunks, not at finish(): what makes these formats usable for streaming."""
    samples = speechlike(SOURCE_RATE, seconds=3.0)
    encoder = StreamEncoder(encoding, SOURCE_RATE)
    pieces = [encoder.encode(part) for part in np.array_split(samples, 10)]
    tail = encoder.finish()
    assert all(pieces[1:])  # every 0.3 s chunk after the first already yields bytes
    assert len(tail) < 0.25 * (len(tail) + sum(map(len, pieces)))


def test_wav_stream_with_a_rate_change_reads_back():
    samples = speechlike(SOURCE_RATE)
    encoder = StreamEncoder(Encoding.WAV, SOURCE_RATE, 16000)
    data, rate = soundfile.read(io.BytesIO(b"".join(chunked(encoder, samples))), dtype="int16")
    assert rate == 16000 and np.array_equal(data, float_to_pcm16(resample(samples, SOURCE_RATE, 16000)))
    whole, whole_rate = encode_utterance(samples, Encoding.WAV, SOURCE_RATE, 16000)
    assert whole_rate == 16000 and soundfile.info(io.BytesIO(whole)).frames == len(data)


def test_resampled_float_stays_in_range():
    square = np.where(np.arange(4410) % 100 < 50, 1.0, -1.0).astype(np.float32)  # full scale: the filter rings
    assert np.max(np.abs(resample(square, 44100, 16000))) > 1.0  # control: resampling alone overshoots
    encoder = StreamEncoder(Encoding.FLOAT32LE, 44100, 16000)
    out = decode_pcm(b"".join(chunked(encoder, square)), Encoding.FLOAT32LE)
    assert len(out) == 1600 and np.max(np.abs(out)) <= 1.0


def test_output_rate_rules():
    assert output_rate(Encoding.PCM_S16LE, 44100) == 44100
    assert output_rate(Encoding.PCM_S16LE, 44100, 8000) == 8000
    assert output_rate(Encoding.OPUS, 22050) == 24000 and output_rate(Encoding.OPUS, 44100) == 48000
    assert output_rate(Encoding.MP3, 20000) == 22050 and output_rate(Encoding.FLAC, 20000) == 20000
    assert output_rate(Encoding.AAC, 44100, 9000) == 11025


def test_encoder_misuse_is_refused():
    encoder = StreamEncoder(Encoding.MP3, SOURCE_RATE)
    encoder.finish()
    with pytest.raises(ValueError):
        encoder.encode(np.zeros(10, np.float32))
    with pytest.raises(ValueError):
        encoder.finish()
    with pytest.raises(ValueError):
        encode_samples(np.zeros(10, np.float32), Encoding.OPUS)
    with pytest.raises(ValueError):
        StreamEncoder(Encoding.PCM_S16LE, 0)


def test_core_imports_and_raw_encodings_work_without_pyav_and_soxr():
    """With both packages unimportable: vitsrt.audio imports, raw encodings at the voice's rate work, and a
    codec or a rate change fails with one line naming the pip extra."""
    script = (
        "import sys\n"
        "sys.modules['av'] = None\nsys.modules['soxr'] = None\n"  # makes `import av` raise ImportError
        "import numpy as np\n"
        "from vitsrt.audio import Encoding, StreamEncoder, encode_utterance\n"
        "from vitsrt.audio import FormatsUnavailableError\n"
        "data, rate = encode_utterance(np.zeros(100, np.float32), Encoding.MULAW, 8000)\n"
        "assert len(data) == 100 and rate == 8000\n"
        "for args in ((Encoding.MP3, 22050), (Encoding.PCM_S16LE, 22050, 8000)):\n"
        "    try:\n"
        "        StreamEncoder(*args)\n"
        "    except FormatsUnavailableError as exc:\n"
        "        print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["MP3 output needs the 'av' package: pip install 'vitsrt[formats]'",
                     "resampling 22050 Hz to 8000 Hz needs the 'soxr' package: pip install 'vitsrt[formats]'"]
