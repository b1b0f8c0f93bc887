"""gRPC synthesis against the real engine: unary == streaming == in-process engine, chunking, first audio
before the unary call returns, encodings, ListVoices, metrics."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from grpc_support import RunningServer, ids_request, open_engine, phone_ids
from vitsrt.audio import Encoding, encode_samples, finalize_wav, float_to_pcm16, wav_bytes
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
from vitsrt.serve.grpc.client import TtsClient
from vitsrt.serve.grpc.server import ServerConfig

LONG = 300  # tokens: ~6.6 s of audio on the fixture voice, ten streamed chunks


@pytest.fixture(scope="module")
def engine(fixture_voice):
    engine = open_engine(fixture_voice)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine):
    with RunningServer(engine, ServerConfig(port=0, metrics_port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with TtsClient(server.target, timeout=60) as client:
        client.wait_ready()
        yield client


def _in_process(engine, tokens: int, seed: int) -> np.ndarray:
    request = SynthesisRequest(phonemes=PhonemeIds(**phone_ids(tokens, seed)), seed=seed)
    return np.concatenate([chunk.audio for chunk in engine.stream(request)])


def test_list_voices(client, engine):
    reply = client.list_voices()
    assert reply.default_voice == engine.default_voice == "tiny"
    (voice,) = reply.voices
    info = engine.voices["tiny"]
    assert (voice.name, voice.sample_rate, tuple(voice.speakers), tuple(voice.languages), voice.frontend) == (
        info.name, info.sample_rate, info.speakers, info.languages, info.frontend)
    assert voice.sample_rate == 44100 and list(voice.speakers) == ["alice", "bob"]


def test_unary_and_streaming_give_identical_pcm(client, engine):
    unary = client.call_unary(ids_request(LONG, seed=7))
    streamed = client.call_streaming(ids_request(LONG, seed=7))
    assert unary.encoding is streamed.encoding is Encoding.PCM_S16LE
    assert unary.sample_rate == streamed.sample_rate == 44100
    assert len(unary.data) > 44100 * 2 * 5  # > 5 s of audio
    assert streamed.data == unary.data
    assert streamed.chunks > 1
    # ... and both are exactly the in-process engine's audio, encoded.
    assert unary.data == float_to_pcm16(_in_process(engine, LONG, seed=7)).tobytes()


def test_negative_control_another_seed_gives_other_pcm(client):
    first = client.call_unary(ids_request(60, seed=7)).data
    other = client.call_unary(ids_request(60, seed=8)).data
    assert first != other
    assert len(first) == len(client.call_unary(ids_request(60, seed=7)).data)


def test_float32_stream_is_the_engines_float_audio(client, engine):
    streamed = client.call_streaming(ids_request(120, seed=3, encoding=Encoding.FLOAT32LE))
    assert streamed.encoding is Encoding.FLOAT32LE
    assert streamed.data == encode_samples(_in_process(engine, 120, seed=3), Encoding.FLOAT32LE)


def test_wav_stream_has_header_first_and_equals_unary_wav(client, engine):
    chunks = list(client.chunks(ids_request(120, seed=5, encoding=Encoding.WAV)))
    assert len(chunks) > 1 and chunks[0].audio[:4] == b"RIFF" and all(c.audio[:4] != b"RIFF" for c in chunks[1:])
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].is_last
    assert not any(c.is_last for c in chunks[:-1])
    unary = client.call_unary(ids_request(120, seed=5, encoding=Encoding.WAV))
    joined = b"".join(c.audio for c in chunks)
    assert finalize_wav(joined) == unary.data == wav_bytes(_in_process(engine, 120, seed=5), 44100)


def test_first_chunk_arrives_before_the_unary_call_returns(client):
    client.call_unary(ids_request(LONG, seed=11))  # warm-up at this length
    unary_seconds, first_audio_seconds = [], []
    for _ in range(3):
        unary_seconds.append(client.call_unary(ids_request(LONG, seed=11)).total_seconds)
        streamed = client.call_streaming(ids_request(LONG, seed=11))
        first_audio_seconds.append(streamed.first_audio_seconds)
        assert streamed.chunks > 1
    assert statistics.median(first_audio_seconds) < statistics.median(unary_seconds), (
        first_audio_seconds, unary_seconds)


def test_metrics_report_requests_latency_and_engine_state(client, server):
    client.call_streaming(ids_request(40, seed=1))
    assert server.metric("vitsrt_requests_total", method="SynthesizeStream") >= 1
    assert server.metric("vitsrt_time_to_first_audio_seconds_count", method="SynthesizeStream") >= 1
    assert server.metric("vitsrt_request_latency_seconds_count", method="Synthesize") >= 1
    assert server.metric("vitsrt_active_streams") == 0
    assert server.metric("vitsrt_engine_active_streams") == 0
    assert server.metric("vitsrt_engine_queue_depth", stage="decode") == 0
    assert server.metric("vitsrt_engine_batches_total", stage="decode", size="1") >= 1
    assert server.metric("vitsrt_audio_seconds_total", method="SynthesizeStream") > 0
