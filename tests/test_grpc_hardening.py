"""Hardening of the gRPC server process: clean shutdown logs, one-line set-up errors, bounded calls (a request
that never arrives, a call that runs too long, a handshake that never finishes), the auth token kept out of
`ps` and guarding /metrics, counted size refusals, capped status messages. Real servers, real sockets."""

from __future__ import annotations

import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from conftest import REPO_ROOT
from grpc_support import HOLDING_CLIENT, RunningServer, ServerProcess, ids_request, open_engine
from vitsrt.serve.grpc.client import TtsClient, build_request

SYNTHESIZE = "/vitsrt.v1.TextToSpeech/Synthesize"
STREAM = "/vitsrt.v1.TextToSpeech/SynthesizeStream"
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the quiet river bank."] * 30)  # 420 words


@pytest.fixture(scope="module")
def engine(fixture_voice):
    engine = open_engine(fixture_voice)
    yield engine
    engine.close()


@pytest.fixture
def processes():
    started: list[ServerProcess] = []
    yield started
    for process in started:
        process.close()


def _serve(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitsrt.cli", "serve", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def _http_status(port: int, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


# --- 1. SIGTERM during long streams: clean log lines, exit 0 ---------------------------------------------------


def test_sigterm_during_long_streams_logs_no_traceback(processes):
    server = ServerProcess(None, "--grace", "1")  # the shipped default voice speaks text
    processes.append(server)
    channel = grpc.insecure_channel(server.target)
    stream = channel.unary_stream(STREAM)
    first_chunks = threading.Barrier(5)

    def read_slowly() -> grpc.StatusCode | None:
        call = stream(build_request(LONG_TEXT).SerializeToString(), timeout=120)
        try:
            for index, _chunk in enumerate(call):
                if index == 0:
                    first_chunks.wait(60)
                time.sleep(0.3)
        except grpc.RpcError as exc:
            return exc.code()
        return None

    try:
        with ThreadPoolExecutor(4) as pool:
            readers = [pool.submit(read_slowly) for _ in range(4)]
            first_chunks.wait(60)
            server.process.send_signal(signal.SIGTERM)
            codes = [reader.result(60) for reader in readers]
    finally:
        channel.close()
    log = server.rest_of_log()
    assert server.process.returncode == 0, log
    assert "Traceback" not in log and "ERROR" not in log, log
    assert re.search(r"WARNING .*shutdown: 4 call\(s\) still running after the 1\.0s grace were cancelled", log), log
    assert all(code is not None for code in codes), codes  # the streams really were cut short


def test_max_audio_seconds_reaches_the_engine(fixture_voice, processes):
    server = ServerProcess(fixture_voice, "--max-audio-seconds", "0.5")
    processes.append(server)
    with TtsClient(server.target, timeout=60) as client:
        assert client.call_unary(ids_request(12, seed=1)).duration_seconds < 0.5  # short requests pass
        with pytest.raises(grpc.RpcError) as caught:
            client.call_streaming(ids_request(600, seed=4))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "0.5 s" in caught.value.details()


# --- 2. Set-up errors: one line, exit 2 ---------------------------------------------------------------------------


def _self_signed(directory, name: str = "server"):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    return cert, key


def _setup_case(case: str, tmp_path, listener: socket.socket) -> list[str]:
    busy = str(listener.getsockname()[1])
    if case == "busy port":
        return ["--port", busy]
    if case == "busy metrics port":
        return ["--port", "0", "--metrics-port", busy]
    if case == "missing token file":
        return ["--port", "0", "--auth-token-file", str(tmp_path / "absent")]
    cert, key = _self_signed(tmp_path)
    if case == "swapped cert and key":
        return ["--port", "0", "--tls-cert", str(key), "--tls-key", str(cert)]
    if case == "missing cert file":
        return ["--port", "0", "--tls-cert", str(tmp_path / "absent.pem"), "--tls-key", str(key)]
    other_cert, _ = _self_signed(tmp_path, "other")
    return ["--port", "0", "--tls-cert", str(other_cert), "--tls-key", str(key)]  # key of another certificate


SETUP_CASES = {
    "busy port": "already in use",
    "busy metrics port": "--metrics-port",
    "missing token file": "--auth-token-file",
    "swapped cert and key": "swapped",
    "missing cert file": "cannot read",
    "key of another cert": "does not match",
}


@pytest.mark.parametrize(("case", "mention"), SETUP_CASES.items(), ids=list(SETUP_CASES))
def test_unusable_setup_is_one_line_and_exit_2(fixture_voice, tmp_path, case, mention):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        result = _serve("-v", str(fixture_voice), *_setup_case(case, tmp_path, listener))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("vitsrt serve: error:"), result.stderr
    assert mention in lines[0], lines[0]


def test_negative_control_a_free_port_and_matching_tls_pair_start(fixture_voice, tmp_path, processes):
    cert, key = _self_signed(tmp_path)
    server = ServerProcess(fixture_voice, "--tls-cert", str(cert), "--tls-key", str(key))
    processes.append(server)
    assert "(TLS)" in server.banner


# --- 3. Bounded calls ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_timeouts(engine):
    from vitsrt.serve.grpc.server import ServerConfig

    config = ServerConfig(port=0, metrics_port=0, request_timeout=1.0, max_call_seconds=4.0)
    with RunningServer(engine, config) as running:
        yield running


def _never_sends(stop: threading.Event):
    stop.wait(60)  # the request iterator blocks: headers are sent, the request message never is
    yield from ()


@pytest.mark.parametrize(("path", "method"), [(SYNTHESIZE, "Synthesize"), (STREAM, "SynthesizeStream")])
def test_request_that_never_arrives_ends_with_deadline_exceeded(quick_timeouts, path, method):
    before = quick_timeouts.metric("vitsrt_errors_total", method=method, code="DEADLINE_EXCEEDED") or 0
    stop = threading.Event()
    with TtsClient(quick_timeouts.target, timeout=30) as client:
        started = time.monotonic()
        if path == SYNTHESIZE:
            call = client.channel.stream_unary(path).future(_never_sends(stop), timeout=30)
        else:
            call = client.channel.stream_stream(path)(_never_sends(stop), timeout=30)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(lambda: call.result() if path == SYNTHESIZE else list(call))
            assert client.call_unary(ids_request(12, seed=1)).duration_seconds > 0  # others are still served
            with pytest.raises(grpc.RpcError) as caught:
                waiting.result(20)
        stop.set()
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "request timeout of 1 s" in caught.value.details()
    assert time.monotonic() - started < 10
    assert quick_timeouts.metric("vitsrt_errors_total", method=method, code="DEADLINE_EXCEEDED") == before + 1


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _literal(name: str, value: str) -> bytes:
    """HPACK 'literal header field without indexing, new name', no Huffman (short strings only)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def _frames_until_stream_ends(sock: socket.socket, timeout: float) -> tuple[str, float]:
    """Read HTTP/2 frames until stream 1 ends (trailers with END_STREAM, RST_STREAM) or the connection closes."""
    started, buffer = time.monotonic(), b""
    sock.settimeout(timeout)
    while True:
        data = sock.recv(65536)
        if not data:
            return "connection closed", time.monotonic() - started
        buffer += data
        while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
            length, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            buffer = buffer[9 + length:]
            if kind == 0x4 and not flags & 0x1:  # the server's SETTINGS: acknowledge them
                sock.sendall(_frame(0x4, 0x1, 0, b""))
            if stream == 1 and (kind == 0x3 or (kind == 0x1 and flags & 0x1)):
                return "RST_STREAM" if kind == 0x3 else "trailers", time.monotonic() - started


def test_half_sent_request_message_is_ended_within_the_request_timeout(quick_timeouts):
    """A raw HTTP/2 client sends the call's headers and 10 of the 100 bytes its message announces, then waits."""
    before = quick_timeouts.metric("vitsrt_errors_total", method="SynthesizeStream", code="DEADLINE_EXCEEDED") or 0
    headers = b"".join(_literal(name, value) for name, value in (
        (":method", "POST"), (":scheme", "http"), (":path", STREAM), (":authority", quick_timeouts.target),
        ("content-type", "application/grpc"), ("te", "trailers")))
    with socket.create_connection(("127.0.0.1", quick_timeouts.server.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(0x4, 0, 0, b"")
                     + _frame(0x1, 0x4, 1, headers)  # HEADERS, END_HEADERS, no END_STREAM
                     + _frame(0x0, 0, 1, b"\x00" + (100).to_bytes(4, "big") + b"\x0a" * 10))  # DATA, incomplete
        with TtsClient(quick_timeouts.target, timeout=30) as client:  # served meanwhile
            assert client.call_streaming(ids_request(12, seed=1)).chunks >= 1
        ending, took = _frames_until_stream_ends(sock, timeout=15)
    assert ending in ("trailers", "RST_STREAM") and took < 8, (ending, took)
    counted = quick_timeouts.metric_reaches("vitsrt_errors_total", before + 1, method="SynthesizeStream",
                                            code="DEADLINE_EXCEEDED")
    assert counted == before + 1


def test_connection_that_never_handshakes_is_closed(quick_timeouts):
    with socket.create_connection(("127.0.0.1", quick_timeouts.server.port), timeout=10) as sock:
        sock.settimeout(15)
        started = time.monotonic()
        while sock.recv(65536):  # the server's SETTINGS, then EOF: gRPC closes it after the handshake timeout
            pass
    assert time.monotonic() - started < 8


def test_call_running_past_max_call_seconds_is_ended(quick_timeouts):
    before = quick_timeouts.metric("vitsrt_errors_total", method="SynthesizeStream", code="DEADLINE_EXCEEDED") or 0
    channel = grpc.insecure_channel(quick_timeouts.target, options=HOLDING_CLIENT)  # the stream stays in flight
    try:
        call = channel.unary_stream(STREAM)(ids_request(600, seed=4).SerializeToString(), timeout=60)
        next(call)
        started = time.monotonic()
        time.sleep(5)  # past the 4 s limit, without reading
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
    finally:
        channel.close()
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "limit of 4 s" in caught.value.details()
    assert time.monotonic() - started < 30
    assert quick_timeouts.metric("vitsrt_errors_total", method="SynthesizeStream", code="DEADLINE_EXCEEDED") \
        == before + 1
    assert quick_timeouts.metric("vitsrt_active_streams") == 0


# --- 4. The auth token: out of `ps`, guarding /metrics ------------------------------------------------------------


def test_help_names_the_safe_ways_to_pass_a_token():
    text = " ".join(_serve("--help").stdout.split())
    assert "--auth-token-file" in text and "$VITSRT_AUTH_TOKEN" in text
    assert "visible to other local users" in text


def test_token_file_on_a_public_host_warns_and_guards_metrics(fixture_voice, tmp_path, processes):
    token_file = tmp_path / "token"
    token_file.write_text("f1le-t0ken\n")
    server = ServerProcess(fixture_voice, "--host", "0.0.0.0", "--auth-token-file", str(token_file),
                           "--metrics-port", "0")
    processes.append(server)
    warnings = [line for line in server.log if line.startswith("WARNING")]
    assert len(warnings) == 1 and "plaintext" in warnings[0], server.log
    assert "f1le-t0ken" not in " ".join(server.process.args)  # not on the command line, so not in `ps`
    metrics_port = int(re.search(r"metrics on :(\d+)", server.banner).group(1))
    assert _http_status(metrics_port) == 401
    assert _http_status(metrics_port, "wrong") == 401
    assert _http_status(metrics_port, "f1le-t0ken") == 200
    with TtsClient(server.target, token="f1le-t0ken", timeout=30) as client:
        assert client.list_voices().default_voice == "tiny"
    with TtsClient(server.target, timeout=30) as anonymous, pytest.raises(grpc.RpcError) as caught:
        anonymous.list_voices()
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_token_from_the_environment_on_loopback_does_not_warn(fixture_voice, processes):
    server = ServerProcess(fixture_voice, "--metrics-port", "0", "--metrics-host", "127.0.0.1",
                           env={"VITSRT_AUTH_TOKEN": "env-t0ken"})
    processes.append(server)
    assert not any(line.startswith("WARNING") for line in server.log), server.log
    with TtsClient(server.target, token="env-t0ken", timeout=30) as client:
        assert client.list_voices().default_voice == "tiny"
    metrics_port = int(re.search(r"metrics on :(\d+)", server.banner).group(1))
    assert _http_status(metrics_port) == 401 and _http_status(metrics_port, "env-t0ken") == 200


def test_metrics_can_be_left_open_on_purpose(engine):
    from vitsrt.serve.grpc.server import ServerConfig

    config = ServerConfig(port=0, metrics_port=0, metrics_host="127.0.0.1", auth_token="s3cret", metrics_auth=False)
    with RunningServer(engine, config) as server:
        assert _http_status(server.server.metrics_port) == 200


# --- 5. Oversized requests are counted ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_messages(engine):
    from vitsrt.serve.grpc.server import ServerConfig

    with RunningServer(engine, ServerConfig(port=0, metrics_port=0, max_message_bytes=1000)) as running:
        yield running


def _errors(server: RunningServer, method: str) -> float:
    return server.metric("vitsrt_errors_total", method=method, code="RESOURCE_EXHAUSTED") or 0


@pytest.mark.parametrize("size", [1500, 5000], ids=["over the limit", "over gRPC's own backstop"])
def test_oversized_request_is_refused_and_counted(small_messages, size):
    payload = build_request("a" * size).SerializeToString()
    with TtsClient(small_messages.target, timeout=30) as client:
        for path, method in ((SYNTHESIZE, "Synthesize"), (STREAM, "SynthesizeStream")):
            before = small_messages.metric("vitsrt_errors_total", method=method, code="RESOURCE_EXHAUSTED") or 0
            call = client.channel.unary_unary(path) if path == SYNTHESIZE else client.channel.unary_stream(path)
            with pytest.raises(grpc.RpcError) as caught:
                reply = call(payload, timeout=30)
                if path == STREAM:
                    list(reply)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in caught.value.details()
            # Over gRPC's own limit the client has its status before the server's handler has counted the call
            # (it learns of the refusal from the stream ending): give the count a moment to land.
            deadline = time.monotonic() + 5
            while _errors(small_messages, method) != before + 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _errors(small_messages, method) == before + 1, method
        assert client.call_unary(ids_request(12, seed=1)).duration_seconds > 0


# --- 6. Client-sent strings are capped in status messages and log lines -------------------------------------------


def test_huge_voice_name_gets_a_short_not_found(quick_timeouts, caplog):
    with caplog.at_level(logging.INFO, logger="vitsrt"), TtsClient(quick_timeouts.target, timeout=30) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.call_unary(ids_request(20, 1, voice="v" * 900_000))
        assert client.call_streaming(ids_request(12, seed=1)).chunks >= 1
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert len(caught.value.details()) < 400, len(caught.value.details())
    server_lines = [record.getMessage() for record in caplog.records if record.name.startswith("vitsrt.serve")]
    assert server_lines and max(map(len, server_lines)) < 400


def test_capped_keeps_short_text_and_cuts_long_text():
    from vitsrt.serve.grpc.server import capped

    assert capped("voice 'x' not found") == "voice 'x' not found"
    assert capped("a\nb") == "a\\nb"  # no forged log lines
    long = capped("v" * 900_000)
    assert len(long) < 320 and long.endswith("chars)")
