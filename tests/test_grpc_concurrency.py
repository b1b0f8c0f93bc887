"""Many clients at once, clients that leave, deadlines and capacity limits, over a real server + engine."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from grpc_support import HOLDING_CLIENT, RunningServer, ids_request, open_engine
from vitsrt.audio import Encoding
from vitsrt.serve.grpc.client import TtsClient
from vitsrt.serve.grpc.server import ServerConfig

# Batch invariance bound of the engine (ARCHITECTURE.md): an item decoded in a padded batch equals the item
# decoded alone to 1e-4. Streams batched with 31 others are compared to their solo runs with it.
BATCH_TOLERANCE = 1e-4
MIXED_LENGTHS = [5, 9, 16, 24, 33, 48, 64, 80, 100, 120, 150, 20, 40, 60, 90, 12]


@pytest.fixture(scope="module")
def engine(fixture_voice):
    engine = open_engine(fixture_voice)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine):
    with RunningServer(engine, ServerConfig(port=0, metrics_port=0, max_concurrent_streams=64)) as running:
        yield running


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _all_at_once(call, jobs: list) -> list:
    """`call(job)` for every job from its own thread, all released together (so the server batches them)."""
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        return call(job)

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def _float_stream(client: TtsClient, tokens: int, seed: int) -> np.ndarray:
    return client.call_streaming(ids_request(tokens, seed, encoding=Encoding.FLOAT32LE)).samples


def test_32_concurrent_streams_each_equal_solo(server):
    jobs = [(MIXED_LENGTHS[i % len(MIXED_LENGTHS)], 100 + i) for i in range(32)]
    with TtsClient(server.target, timeout=120) as client:
        solo = [_float_stream(client, tokens, seed) for tokens, seed in jobs]
        together = _all_at_once(lambda job: _float_stream(client, *job), jobs)
    batched = server.engine.stats()["batch_sizes"]["decode"]
    assert max(batched) > 1, "the concurrent streams were never batched together"
    for (tokens, seed), alone, crowd in zip(jobs, solo, together, strict=True):
        assert len(crowd) == len(alone) > 0, (tokens, seed)
        assert np.max(np.abs(crowd - alone)) <= BATCH_TOLERANCE, (tokens, seed)
    # Negative control: the comparison does separate two requests of equal length (noise_scale leaves the
    # durations alone and changes the audio).
    with TtsClient(server.target, timeout=60) as client:
        tokens, seed = jobs[3]
        changed = client.call_streaming(ids_request(tokens, seed, noise_scale=0.3, encoding=Encoding.FLOAT32LE))
    assert len(changed.samples) == len(solo[3])
    assert np.max(np.abs(changed.samples - solo[3])) > 10 * BATCH_TOLERANCE


def test_client_cancel_mid_stream_frees_the_stream_and_spares_others(server):
    cancelled_before = server.metric("vitsrt_errors_total", method="SynthesizeStream", code="CANCELLED") or 0
    with TtsClient(server.target, timeout=120, options=HOLDING_CLIENT) as client:
        expected = _float_stream(client, 150, seed=5)
        with ThreadPoolExecutor(1) as pool:
            neighbour = pool.submit(_float_stream, client, 150, 5)
            chunks = client.chunks(ids_request(600, seed=6))
            first = next(chunks)
            assert not first.is_last
            chunks.close()  # the client goes away mid-stream (RPC cancelled)
            survivor = neighbour.result(60)
    assert np.max(np.abs(survivor - expected)) <= BATCH_TOLERANCE and len(survivor) == len(expected)
    assert _wait_for(lambda: server.metric("vitsrt_active_streams") == 0)
    assert _wait_for(lambda: server.engine.stats()["active_streams"] == 0)
    assert sum(server.engine.stats()["queue_depths"].values()) == 0
    assert server.metric("vitsrt_errors_total", method="SynthesizeStream", code="CANCELLED") == cancelled_before + 1


def test_deadline_cancels_the_engine_stream(server):
    with TtsClient(server.target, timeout=0.15) as client:
        client.wait_ready()
        with pytest.raises(grpc.RpcError) as caught:
            client.call_streaming(ids_request(600, seed=8))
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert _wait_for(lambda: server.engine.stats()["active_streams"] == 0)
    assert _wait_for(lambda: server.metric("vitsrt_active_streams") == 0)
    with TtsClient(server.target, timeout=60) as client:  # and the server carries on
        assert client.call_unary(ids_request(20, seed=1)).duration_seconds > 0


def test_server_stream_limit_answers_resource_exhausted(engine):
    with RunningServer(engine, ServerConfig(port=0, max_concurrent_streams=1)) as server, \
            TtsClient(server.target, timeout=60, options=HOLDING_CLIENT) as client:
        held = client.chunks(ids_request(600, seed=2))
        next(held)  # one stream in progress
        with pytest.raises(grpc.RpcError) as caught:
            client.call_unary(ids_request(10, seed=1))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "concurrent streams" in caught.value.details()
        held.close()
        assert _wait_for(lambda: server.server.servicer.active == 0)
        assert client.call_unary(ids_request(10, seed=1)).duration_seconds > 0


def test_engine_overload_answers_resource_exhausted(fixture_voice):
    engine = open_engine(fixture_voice, max_active_streams=1)
    try:
        with RunningServer(engine, ServerConfig(port=0, max_concurrent_streams=8)) as server, \
                TtsClient(server.target, timeout=60, options=HOLDING_CLIENT) as client:
            held = client.chunks(ids_request(600, seed=2))
            next(held)
            with pytest.raises(grpc.RpcError) as caught:
                client.call_streaming(ids_request(10, seed=1))
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            held.close()
            assert _wait_for(lambda: engine.stats()["active_streams"] == 0)
            assert client.call_streaming(ids_request(10, seed=1)).chunks >= 1
    finally:
        engine.close()


# What the proto promises for `seed` (SynthesizeRequest.seed): bit-identical alone; in shared batches float
# samples within 1e-6 and PCM16 within one step; durations never change.
SEED_FLOAT_BOUND = 1e-6


def test_same_seed_guarantee_as_the_proto_states(server):
    jobs = [(MIXED_LENGTHS[i % len(MIXED_LENGTHS)], 300 + i) for i in range(16)]

    def both(client: TtsClient, tokens: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        pcm = client.call_streaming(ids_request(tokens, seed, encoding=Encoding.PCM_S16LE)).samples
        return pcm, _float_stream(client, tokens, seed)

    with TtsClient(server.target, timeout=120) as client:
        solo = [both(client, *job) for job in jobs]
        again = both(client, *jobs[5])
        together = _all_at_once(lambda job: both(client, *job), jobs)
    assert np.array_equal(again[0], solo[5][0]) and np.array_equal(again[1], solo[5][1])  # alone: bit-identical
    for (pcm, floats), (crowd_pcm, crowd_floats) in zip(solo, together, strict=True):
        assert len(crowd_pcm) == len(pcm) and len(crowd_floats) == len(floats) > 0
        assert np.max(np.abs(crowd_floats - floats)) <= SEED_FLOAT_BOUND
        assert np.max(np.abs(crowd_pcm.astype(np.int32) - pcm.astype(np.int32))) <= 1
