"""`vitsrt serve` as a process: start-up health, graceful SIGTERM (NOT_SERVING while draining, in-flight
streams finish), `vitsrt client`, and no torch anywhere on the serving path."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import REPO_ROOT
from grpc_support import HOLDING_CLIENT, ServerProcess, ids_request, phone_ids, scrape
from vitsrt.serve.grpc.client import TtsClient

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def server_process(fixture_voice):
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        started.append(ServerProcess(fixture_voice, *flags))
        return started[-1]

    yield start
    for process in started:
        process.close()


def _health(client: TtsClient, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=5).status


def test_sigterm_drains_with_not_serving_and_finishes_in_flight_streams(server_process):
    server = server_process("--drain", "1.0", "--grace", "30")
    with TtsClient(server.target, timeout=60, options=HOLDING_CLIENT) as client:
        assert _health(client) == SERVING and _health(client, "vitsrt.v1.TextToSpeech") == SERVING
        expected = client.call_unary(ids_request(600, seed=4)).data
        chunks = client.chunks(ids_request(600, seed=4))
        first = next(chunks)
        server.process.send_signal(signal.SIGTERM)
        with ThreadPoolExecutor(1) as pool:
            rest = pool.submit(lambda: list(chunks))
            deadline = time.monotonic() + 5
            while _health(client) != NOT_SERVING and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _health(client) == NOT_SERVING
            in_flight = int(server.wait_for(r"shutting down: .* (\d+) calls in flight").group(1))
            received = [first, *rest.result(60)]
    assert in_flight == 1
    assert received[-1].is_last and b"".join(c.audio for c in received) == expected  # the stream ran to its end
    assert server.process.wait(30) == 0
    server.wait_for(r"server stopped")


def test_grace_period_expiry_cancels_streams_and_exits(server_process):
    import grpc

    from vitsrt.serve.proto import tts_pb2_grpc

    server = server_process("--grace", "0.3", "--metrics-port", "0")
    metrics_port = int(re.search(r"metrics on :(\d+)", server.banner).group(1))
    channel = grpc.insecure_channel(server.target, options=HOLDING_CLIENT)  # the call stays in flight
    try:
        call = tts_pb2_grpc.TextToSpeechStub(channel).SynthesizeStream(ids_request(600, seed=4), timeout=60)
        next(call)
        time.sleep(0.5)
        assert scrape(metrics_port, "vitsrt_active_streams") == 1
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    finally:
        channel.close()
    assert caught.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert time.monotonic() - started < 15  # grace, then the engine finishes its current step and closes


def test_cli_client_writes_wav_and_reports_timings(server_process, tmp_path):
    server = server_process()
    ids = ",".join(map(str, phone_ids(80, seed=2)["phone_ids"]))
    tones = ",".join(map(str, phone_ids(80, seed=2)["tone_ids"]))
    outputs = {}
    for mode in ("unary", "stream"):
        out = tmp_path / f"{mode}.wav"
        result = subprocess.run(
            [sys.executable, "-m", "vitsrt.cli", "client", "--server", server.target, "--ids", ids, "--tones", tones,
             "--seed", "2", "-o", str(out), *(["--stream"] if mode == "stream" else [])],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert re.search(r"time to first audio [\d.]+ ms", result.stdout), result.stdout
        assert re.search(r"real-time factor [\d.]+", result.stdout), result.stdout
        outputs[mode], rate = soundfile.read(out, dtype="int16")
        assert rate == 44100 and len(outputs[mode]) > 0
    assert np.array_equal(outputs["unary"], outputs["stream"])
    refused = subprocess.run([sys.executable, "-m", "vitsrt.cli", "client", "--server", server.target, "hello"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr and "text" in refused.stderr


_LEAK_CHECK = """
leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
assert not leaked, leaked
"""


def test_serving_path_never_imports_torch(fixture_voice):
    code = f"""
import asyncio, sys
from vitsrt.cli import build_parser
import vitsrt.commands.serve, vitsrt.commands.client
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.grpc.client import TtsClient, build_request
from vitsrt.serve.grpc.server import ServerConfig, TtsServer
build_parser()

async def main():
    engine = Engine.open([{str(fixture_voice)!r}], options=EngineOptions(threads=1))
    server = TtsServer(engine, ServerConfig(port=0, metrics_port=0))
    port = await server.start()
    def call():
        with TtsClient(f"127.0.0.1:{{port}}") as client:
            return client.call_streaming(build_request(phone_ids=[0, 5, 0, 9, 0], seed=1)).chunks
    assert await asyncio.to_thread(call) >= 1
    await server.shutdown(grace=1)
    engine.close()

asyncio.run(main())
""" + _LEAK_CHECK
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_negative_control_a_torch_module_would_be_seen():
    code = ("import sys, types\nsys.modules['torch.nn'] = types.ModuleType('torch.nn')\n" + _LEAK_CHECK)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "torch.nn" in result.stderr
