"""The HTTP door (vitsrt.serve.http) against real clients: OpenAI's own Python SDK and httpx, over TCP on 127.0.0.1,
with the real engine on the shipped default voice and uvicorn on a free port. No mocks.

What is checked: the SDK's speech call (plain and `with_streaming_response`) streams `pcm` that equals the
engine's own output for the same request and seed, byte for byte (so the OpenAI name mapping, the speed mapping
and the seed extension are what the docs say); wav and SSE carry the same samples; the compressed formats are
what their names say; 30+ bad requests get the right 4xx with OpenAI's error body and the server keeps serving;
a client that goes away cancels its engine stream; time to the first body byte is measured against the
engine's own time to first audio; `vitsrt serve` runs gRPC, HTTP and Wyoming on one engine and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import REPO_ROOT
from grpc_support import read_until
from http_support import RunningDoor

pytest.importorskip("fastapi", reason="the HTTP door needs the 'http' extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the HTTP door needs the 'http' extra (fastapi, uvicorn)")
pytest.importorskip("phonemizer", reason="the default voice's IPA front end needs the 'ipa' extra")
openai = pytest.importorskip("openai", reason="the OpenAI SDK is a test dependency of the HTTP door")
httpx = pytest.importorskip("httpx")

TOKEN = "h77p-t0ken"
TEXT = "The little boat is near the old bridge. It will leave at noon."
MAX_TEXT = 400
REQUEST_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.voices import default_voice_dir

    options = EngineOptions(threads=1, max_batch=8, max_wait_ms=2.0, max_text_chars=MAX_TEXT)
    engine = Engine.open([default_voice_dir()], options=options)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine: Any) -> Iterator[RunningDoor]:
    running = RunningDoor(engine, auth_token=TOKEN, request_timeout=REQUEST_TIMEOUT, max_request_bytes=64 * 1024)
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(server: RunningDoor) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0, timeout=60)


def engine_pcm(engine: Any, **fields: Any) -> bytes:
    """What the engine itself streams for a request, as 16-bit PCM."""
    from vitsrt.audio import Encoding, encode_samples
    from vitsrt.serve.engine.types import SynthesisRequest

    pieces = [chunk.audio for chunk in engine.stream(SynthesisRequest(**fields))]
    return encode_samples(np.concatenate(pieces), Encoding.PCM_S16LE)


# --- 1. The OpenAI SDK gets the engine's audio ---------------------------------------------------------------------

# (OpenAI voice or speaker, speed) -> (speaker, length_scale) the engine is asked for; the default voice's own
# length_scale is 1.0, so length_scale = 1/speed. "echo" is OpenAI's 5th name: speaker 4 mod 4 = awb.
MAPPINGS = [("kal", None, "kal", None), ("alloy", 2.0, "awb", 0.5), ("echo", 0.5, "awb", 2.0),
            ("nova", None, "slt", None), ("vitsrt-default/rms", 1.25, "rms", 0.8)]


@pytest.mark.parametrize(("voice", "speed", "speaker", "length_scale"), MAPPINGS, ids=[m[0] for m in MAPPINGS])
def test_sdk_streams_pcm_equal_to_the_engine(client, engine, voice, speed, speaker, length_scale):
    extra = {} if speed is None else {"speed": speed}
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice=voice, input=TEXT, response_format="pcm", extra_body={"seed": 11}, **extra) as reply:
        assert reply.headers["content-type"] == "audio/pcm" and reply.headers["x-sample-rate"] == "16000"
        assert reply.headers.get("transfer-encoding") == "chunked" and "content-length" not in reply.headers
        assert reply.headers["x-voice"] == f"vitsrt-default/{speaker}"
        received = b"".join(reply.iter_bytes())
    expected = engine_pcm(engine, text=TEXT, speaker=speaker, seed=11, length_scale=length_scale)
    assert len(received) > 16000 and received == expected


def test_sdk_plain_call_wav_and_model_by_voice_name(client, engine):
    import soundfile

    reply = client.audio.speech.create(model="vitsrt-default", voice="slt", input=TEXT, response_format="wav",
                                       extra_body={"seed": 5})
    samples, rate = soundfile.read(io.BytesIO(reply.content), dtype="int16")
    expected = np.frombuffer(engine_pcm(engine, text=TEXT, speaker="slt", seed=5), dtype="<i2")
    assert rate == 16000 and np.array_equal(samples, expected)


def test_sse_events_carry_the_same_audio(server, engine):
    body = {"model": "gpt-4o-mini-tts", "voice": "kal", "input": TEXT, "response_format": "pcm", "seed": 3,
            "stream_format": "sse", "instructions": "Speak cheerfully."}  # instructions: accepted and ignored
    reply = httpx.post(f"{server.url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {TOKEN}"},
                       timeout=60)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in reply.text.split("\n\n") if line.startswith("data: ")]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"} and len(events) > 2
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] == len(TEXT)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert audio == engine_pcm(engine, text=TEXT, speaker="kal", seed=3)


MAGIC = {"mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3"), "opus": (b"OggS",), "aac": (b"\xff\xf1", b"\xff\xf9"),
         "flac": (b"fLaC",)}


@pytest.mark.parametrize("response_format", list(MAGIC))
def test_compressed_formats(client, response_format):
    pytest.importorskip("av", reason="compressed formats need the 'formats' extra (PyAV)")
    reply = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.",
                                       response_format=response_format)
    assert reply.content.startswith(MAGIC[response_format]) and len(reply.content) > 500


def test_mp3_is_the_default_format(client):
    pytest.importorskip("av", reason="compressed formats need the 'formats' extra (PyAV)")
    reply = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.")
    assert reply.response.headers["content-type"] == "audio/mpeg" and reply.content.startswith(MAGIC["mp3"])


def test_sample_rate_extension_resamples(client, engine):
    pytest.importorskip("soxr", reason="resampling needs the 'formats' extra (soxr)")
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="kal", input=TEXT, response_format="pcm",
            extra_body={"seed": 2, "sample_rate": 24000}) as reply:
        assert reply.headers["x-sample-rate"] == "24000"
        received = b"".join(reply.iter_bytes())
    native = engine_pcm(engine, text=TEXT, speaker="kal", seed=2)
    assert abs(len(received) / len(native) - 1.5) < 0.01


def test_listings_health_and_metrics(server, client):
    models = client.models.list()
    ids = [model.id for model in models.data]
    assert ids == ["vitsrt-default", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"]
    assert client.models.retrieve("tts-1").id == "tts-1"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    voices = httpx.get(f"{server.url}/v1/audio/voices", headers=auth).json()
    (voice,) = voices["data"]
    assert voices["default_voice"] == "vitsrt-default" and voice["speakers"] == ["awb", "kal", "rms", "slt"]
    assert voice["languages"] == ["en"] and voice["sample_rate"] == 16000 and voice["openai_voices"]["ash"] == "kal"
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}  # no token needed for probes
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    metrics = httpx.get(f"{server.url}/metrics", headers=auth).text
    assert re.search(r'vitsrt_requests_total\{method="http:speech"\} [1-9]', metrics), metrics
    assert "vitsrt_engine_queue_depth" in metrics


# --- 2. Bad requests: the right 4xx, OpenAI's error body, and the server keeps serving ----------------------------

GOOD = {"model": "tts-1", "input": "Hello.", "voice": "alloy", "response_format": "pcm"}


def _with(**changes: Any) -> dict[str, Any]:
    body = {**GOOD, **changes}
    return {key: value for key, value in body.items() if value is not ...}


def _json(body: Any) -> dict[str, Any]:
    return {"content": json.dumps(body).encode(), "headers": {"Content-Type": "application/json"}}


# name -> (method, path, request kwargs for httpx, status, param or None, code or None)
BAD = {
    "no token": ("POST", "/v1/audio/speech", {**_json(GOOD), "token": None}, 401, None, "invalid_api_key"),
    "wrong token": ("POST", "/v1/audio/speech", {**_json(GOOD), "token": "nope"}, 401, None, "invalid_api_key"),
    "basic auth": ("POST", "/v1/audio/speech", {**_json(GOOD), "token": None,
                                                "auth": f"Basic {base64.b64encode(b'a:b').decode()}"}, 401, None, None),
    "models without token": ("GET", "/v1/models", {"token": None}, 401, None, "invalid_api_key"),
    "not JSON": ("POST", "/v1/audio/speech", {"content": b"{model: tts-1"}, 400, None, "invalid_json"),
    "not UTF-8": ("POST", "/v1/audio/speech", {"content": b"\xff\xfe{}"}, 400, None, "invalid_json"),
    "JSON array": ("POST", "/v1/audio/speech", _json([GOOD]), 400, None, "invalid_json"),
    "deeply nested": ("POST", "/v1/audio/speech", {"content": b"[" * 30_000 + b"]" * 30_000}, 400, None,
                      "invalid_json"),
    "empty body": ("POST", "/v1/audio/speech", {"content": b""}, 400, None, "invalid_json"),
    "missing input": ("POST", "/v1/audio/speech", _json(_with(input=...)), 400, "input", None),
    "missing model": ("POST", "/v1/audio/speech", _json(_with(model=...)), 400, "model", None),
    "missing voice": ("POST", "/v1/audio/speech", _json(_with(voice=...)), 400, "voice", None),
    "input not a string": ("POST", "/v1/audio/speech", _json(_with(input=42)), 400, "input", None),
    "empty input": ("POST", "/v1/audio/speech", _json(_with(input="")), 400, "input", None),
    "blank input": ("POST", "/v1/audio/speech", _json(_with(input=" \n\t ")), 400, "input", None),
    "input over the limit": ("POST", "/v1/audio/speech", _json(_with(input="a" * (MAX_TEXT + 1))), 400, "input",
                             "string_above_max_length"),
    "nothing pronounceable": ("POST", "/v1/audio/speech", _json(_with(input="...!!! ???")), 400, "input", None),
    "body over the byte limit": ("POST", "/v1/audio/speech", _json(_with(input="a" * 70_000)), 413, None,
                                 "request_too_large"),
    "negative speed": ("POST", "/v1/audio/speech", _json(_with(speed=-1)), 400, "speed", None),
    "zero speed": ("POST", "/v1/audio/speech", _json(_with(speed=0)), 400, "speed", None),
    "speed above 4": ("POST", "/v1/audio/speech", _json(_with(speed=4.5)), 400, "speed", None),
    "speed as text": ("POST", "/v1/audio/speech", _json(_with(speed="fast")), 400, "speed", None),
    "speed NaN": ("POST", "/v1/audio/speech", {"content": json.dumps(_with(speed=float("nan"))).encode()}, 400,
                  "speed", None),
    "speed true": ("POST", "/v1/audio/speech", _json(_with(speed=True)), 400, "speed", None),
    "unknown format": ("POST", "/v1/audio/speech", _json(_with(response_format="ogg")), 400, "response_format",
                       None),
    "unknown stream format": ("POST", "/v1/audio/speech", _json(_with(stream_format="ws")), 400, "stream_format",
                              None),
    "unknown voice": ("POST", "/v1/audio/speech", _json(_with(voice="zorro")), 400, "voice", "invalid_value"),
    "huge voice name": ("POST", "/v1/audio/speech", _json(_with(voice="v" * 20_000)), 400, "voice", None),
    "voice object without id": ("POST", "/v1/audio/speech", _json(_with(voice={"name": "x"})), 400, "voice", None),
    "unknown VOICE/": ("POST", "/v1/audio/speech", _json(_with(voice="nobody/awb")), 400, "voice", None),
    "unknown /SPEAKER": ("POST", "/v1/audio/speech", _json(_with(voice="vitsrt-default/zed")), 400, "voice", None),
    "unknown model": ("POST", "/v1/audio/speech", _json(_with(model="tts-9")), 404, "model", "model_not_found"),
    "unknown field": ("POST", "/v1/audio/speech", _json(_with(temperature=0.5)), 400, "temperature", None),
    "negative seed": ("POST", "/v1/audio/speech", _json(_with(seed=-1)), 400, "seed", None),
    "seed past 64 bits": ("POST", "/v1/audio/speech", _json(_with(seed=2**64)), 400, "seed", None),
    "fractional seed": ("POST", "/v1/audio/speech", _json(_with(seed=1.5)), 400, "seed", None),
    "sample rate too low": ("POST", "/v1/audio/speech", _json(_with(sample_rate=1000)), 400, "sample_rate", None),
    "unknown language": ("POST", "/v1/audio/speech", _json(_with(language="xx")), 400, "language", None),
    "audio over the budget": ("POST", "/v1/audio/speech", _json(_with(input=" ".join(["word"] * 60) + ".",
                                                                      speed=0.25)), 413, "input",
                              "request_too_large"),
    "GET on speech": ("GET", "/v1/audio/speech", {}, 405, None, "method_not_allowed"),
    "PUT on models": ("PUT", "/v1/models", {}, 405, None, "method_not_allowed"),
    "unknown URL": ("GET", "/v1/audio/transcriptions", {}, 404, None, "unknown_url"),
    "unknown model id": ("GET", "/v1/models/tts-9", {}, 404, "model", "model_not_found"),
}


def _send(server: RunningDoor, method: str, path: str, options: dict[str, Any]) -> Any:
    options = dict(options)
    token = options.pop("token", TOKEN)
    headers = {**options.pop("headers", {})}
    if "auth" in options:
        headers["Authorization"] = options.pop("auth")
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **options)


@pytest.mark.parametrize(("name", "case"), BAD.items(), ids=list(BAD))
def test_bad_request_gets_an_openai_error(server, name, case):
    method, path, options, status, param, code = case
    reply = _send(server, method, path, options)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert len(error["message"]) < 600  # client-sent strings are clipped, never echoed whole
    assert error["type"] == ("invalid_request_error" if status < 429 else "server_error")
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    if status == 401:
        assert reply.headers["www-authenticate"].startswith("Bearer")


def test_server_still_serves_after_the_bad_requests(server, client, engine):
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="kal", input="Still here.",
                                                            response_format="pcm", extra_body={"seed": 1}) as reply:
        assert b"".join(reply.iter_bytes()) == engine_pcm(engine, text="Still here.", speaker="kal", seed=1)
    metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert re.search(r'vitsrt_errors_total\{code="400",method="http:speech"\} [1-9]', metrics), metrics


def test_slow_body_gets_408(server):
    with socket.create_connection(("127.0.0.1", server.door.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
        started = time.monotonic()
        reply = conn.recv(4096)
        elapsed = time.monotonic() - started
        while b"request_timeout" not in reply and (more := conn.recv(4096)):  # the body may come in a 2nd packet
            reply += more
    assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply
    assert REQUEST_TIMEOUT * 0.8 < elapsed < REQUEST_TIMEOUT + 5


def test_stream_limit_gets_503_with_retry_after(engine):
    full = RunningDoor(engine, max_concurrent_streams=0)
    try:
        reply = httpx.post(f"{full.url}/v1/audio/speech", json=GOOD, timeout=30)
    finally:
        full.close()
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert reply.json()["error"]["code"] == "server_overloaded"


def test_a_client_that_goes_away_cancels_its_engine_stream(server, engine):
    # ~100 s of audio (speed 0.25): the engine is still working on it for seconds after the first window.
    long_text = " ".join([TEXT] * 6)
    with httpx.Client(timeout=30) as http, http.stream(
            "POST", f"{server.url}/v1/audio/speech", json=_with(input=long_text, speed=0.25),
            headers={"Authorization": f"Bearer {TOKEN}"}) as reply:
        assert reply.status_code == 200
        pieces = reply.iter_raw()  # held: a dropped iterator closes the response (that is the next step)
        next(pieces)
        assert engine.stats()["active_streams"] == 1
        left = time.monotonic()
    while engine.stats()["active_streams"] and time.monotonic() < left + 10:
        time.sleep(0.02)
    assert engine.stats()["active_streams"] == 0 and time.monotonic() - left < 1.5


def test_failure_after_the_first_audio_cuts_the_stream(server):
    """A budget refusal found at a later sentence (its durations are known only then): the status is sent
    already, so an `audio` body ends without its final chunk (the client sees an error, not a short file) and
    an `sse` stream ends with an `error` event."""
    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.voices import default_voice_dir

    small = Engine.open([default_voice_dir()], options=EngineOptions(threads=1, max_audio_seconds=8.0))
    door = RunningDoor(small)
    body = _with(input=" ".join([TEXT] * 4), seed=4)  # ~2.5 s a sentence: the 4th passes the 8 s budget
    try:
        with (pytest.raises(httpx.RemoteProtocolError),
              httpx.stream("POST", f"{door.url}/v1/audio/speech", json=body, timeout=60) as reply):
            assert reply.status_code == 200
            for _ in reply.iter_raw():
                pass
        events = httpx.post(f"{door.url}/v1/audio/speech", json={**body, "stream_format": "sse"}, timeout=60).text
        still = httpx.post(f"{door.url}/v1/audio/speech", json=GOOD, timeout=60)
    finally:
        door.close()
        small.close()
    last = json.loads(events.strip().split("\n\n")[-1][len("data: "):])
    assert last["type"] == "error" and last["error"]["code"] == "request_too_large", last
    assert "speech.audio.delta" in events and still.status_code == 200


def test_stop_lets_a_stream_in_flight_finish(engine):
    """SIGTERM's path for the HTTP door: not ready at once, no new connections, the stream in flight runs to
    its end within the grace period."""
    door = RunningDoor(engine, grace_seconds=20.0, drain_seconds=0.3)
    body = _with(input=" ".join([TEXT] * 3), voice="rms", seed=6)
    try:
        with httpx.stream("POST", f"{door.url}/v1/audio/speech", json=body, timeout=60) as reply:
            pieces = reply.iter_raw()
            received = [next(pieces)]
            stopping = asyncio.run_coroutine_threadsafe(door.door.stop(), door.loop)
            time.sleep(0.1)
            assert httpx.get(f"{door.url}/readyz").status_code == 503  # draining: still answering, not ready
            received.extend(pieces)
        stopping.result(30)
    finally:
        door.loop.call_soon_threadsafe(door.loop.stop)
        door.thread.join(10)
    assert b"".join(received) == engine_pcm(engine, text=body["input"], speaker="rms", seed=6)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{door.url}/healthz")


# --- 3. Time to first byte over HTTP vs the engine's own time to first audio --------------------------------------

def test_first_body_byte_follows_the_first_decode_window(server, engine):
    """Interleaved runs of the same request and seed; the HTTP door must send the first window as soon as the
    engine has it, not the whole utterance (three sentences: buffering would show as ~3x the engine's time)."""
    from vitsrt.serve.engine.types import SynthesisRequest

    text = " ".join([TEXT, "A third sentence closes this request."])
    body = _with(input=text, voice="kal", seed=9)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    http_ms, engine_ms, total_ms = [], [], []
    with httpx.Client(timeout=30) as http:
        for _ in range(6):
            started = time.perf_counter()
            with http.stream("POST", f"{server.url}/v1/audio/speech", json=body, headers=headers) as reply:
                pieces = reply.iter_raw()
                next(pieces)
                http_ms.append((time.perf_counter() - started) * 1000)
                for _ in pieces:
                    pass
            started = time.perf_counter()
            chunks = engine.stream(SynthesisRequest(text=text, speaker="kal", seed=9))
            next(chunks)
            engine_ms.append((time.perf_counter() - started) * 1000)
            for _ in chunks:
                pass
            total_ms.append((time.perf_counter() - started) * 1000)
    http_median, engine_median = statistics.median(http_ms), statistics.median(engine_ms)
    print(f"\nfirst audio, median of 6 interleaved: HTTP first body byte {http_median:.1f} ms "
          f"(min {min(http_ms):.1f}), engine {engine_median:.1f} ms (min {min(engine_ms):.1f}); "
          f"whole utterance in the engine {statistics.median(total_ms):.1f} ms")
    assert http_median < engine_median + 100  # the door adds parsing, one loop hop and one TCP write
    assert http_median < 0.7 * statistics.median(total_ms)


# --- 4. `vitsrt serve`: every door on one engine, one SIGTERM -----------------------------------------------------

def _serve(*flags: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "vitsrt.cli", "serve", "--threads", "1", *flags]
    return subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def test_serve_runs_grpc_http_and_wyoming_on_one_engine():
    from vitsrt.serve.grpc.client import TtsClient

    process = _serve("--grpc-port", "0", "--http-port", "0", "--wyoming-port", "0", "--auth-token", TOKEN)
    log: list[str] = []
    try:
        grpc_port = int(read_until(process, r"serving \S+ on [\d.]+:(\d+)", log).group(1))
        http_port = int(read_until(process, r"HTTP door on [\d.]+:(\d+)", log).group(1))
        wyoming_port = int(read_until(process, r"Wyoming door listening on [\d.]+:(\d+)", log).group(1))
        with TtsClient(f"127.0.0.1:{grpc_port}", token=TOKEN, timeout=30) as grpc_client:
            assert grpc_client.list_voices().default_voice == "vitsrt-default"
        reply = httpx.post(f"http://127.0.0.1:{http_port}/v1/audio/speech", json=GOOD, timeout=30,
                           headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 200 and len(reply.content) > 1000
        with socket.create_connection(("127.0.0.1", wyoming_port), timeout=10):
            pass
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        rest = "".join(log) + process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert "HTTP door stopped" in rest and "server stopped" in rest and "Wyoming door stopped" in rest
    assert "Traceback" not in rest and "ERROR" not in rest


def test_serve_http_only_and_refused_setups():
    process = _serve("--http-port", "0")
    log: list[str] = []
    try:
        http_port = int(read_until(process, r"HTTP door on [\d.]+:(\d+)", log).group(1))
        assert httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200
        assert not any("serving vitsrt-default" in line for line in log)  # no gRPC door without --grpc-port
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = str(busy.getsockname()[1])
            refusals = [subprocess.run([sys.executable, "-m", "vitsrt.cli", "serve", *flags], cwd=REPO_ROOT,
                                       capture_output=True, text=True, timeout=60)
                        for flags in (["--http-port", taken], ["--grpc-port", "5199", "--http-port", "5199"])]
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    for result, mention in zip(refusals, ("--http-port", "also the --grpc-port"), strict=True):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and mention in lines[0], result.stderr
