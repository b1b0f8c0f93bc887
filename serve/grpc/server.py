"""The `vitsrt.v1.TextToSpeech` gRPC server: grpc.aio over the engine's asyncio streams.

What a platform team needs from it, and where each lives:

* status codes: `InputError` -> INVALID_ARGUMENT (message names the field), `NotFoundError` -> NOT_FOUND,
  `OverloadedError` or the server's own stream limit -> RESOURCE_EXHAUSTED, bad token -> UNAUTHENTICATED
  (`auth.py`), oversized request -> RESOURCE_EXHAUSTED, request not received within `request_timeout` or a
  call running past `max_call_seconds` -> DEADLINE_EXCEEDED, a call refused or ended by shutdown ->
  UNAVAILABLE, anything unexpected -> INTERNAL with a generic message (details go to the log, not to the
  caller). Every non-OK status is counted in `vitsrt_errors_total`; status messages and log lines are capped
  at `MAX_DETAILS_CHARS` so a client-sent string is never echoed whole;
* the three RPCs are registered as request-*streaming* handlers that read their one request themselves: with
  gRPC's unary handlers the request is read before any application code runs, so a client that opens a call
  and never completes its request would hold it forever; here the read is bounded by `request_timeout`, and
  its size is checked here so that refusals are counted (gRPC's own receive limit is set to twice
  `max_message_bytes` as a backstop; a refusal by that backstop is counted too). A connection that never
  completes its HTTP/2 handshake is closed by gRPC after `request_timeout` (`grpc.server_handshake_timeout_ms`);
* a vanished client or an expired deadline cancels the handler task; the engine stream is consumed inside
  `contextlib.aclosing`, so the cancellation reaches the engine, which drops the stream from its queues;
* requests arrive as raw bytes and are parsed here, so malformed protobuf (e.g. invalid UTF-8 in a string
  field) is INVALID_ARGUMENT rather than the INTERNAL a failing gRPC deserializer would produce;
* health (`grpc.health.v1`) is SERVING once the port is bound and NOT_SERVING from the moment shutdown
  starts; reflection is on so `grpcurl` works without the .proto;
* graceful shutdown: NOT_SERVING, an optional drain delay (load balancers notice), then `server.stop(grace)`:
  no new RPCs, in-flight streams get `grace` seconds to finish, then are cancelled; shutdown returns only
  once every cancelled handler has finished, so nothing is left for asyncio to cancel at exit (which gRPC
  would log as an ERROR traceback per call); the number of calls cancelled is logged as one WARNING;
* settings that cannot work (swapped or unreadable TLS files, a busy port) are refused by `check_setup`
  before the engine is opened, with one-line `ServerSetupError`s (gRPC core would print its own lines);
* Prometheus metrics (`metrics.py`) on their own HTTP port, behind the same bearer token when one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import signal
import socket
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.audio import Encoding, StreamEncoder, encode_utterance
from vitsrt.errors import InputError, NotFoundError, OverloadedError, VitsrtError
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.timestamps import rescale
from vitsrt.serve.engine.types import AudioChunk
from vitsrt.serve.grpc.auth import BearerTokenInterceptor
from vitsrt.serve.grpc.convert import request_from_proto, sample_rate_from_proto, voice_to_proto
from vitsrt.serve.grpc.metrics import ServerMetrics
from vitsrt.serve.proto import tts_pb2

logger = logging.getLogger(__name__)

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name
AUTH_TOKEN_ENV = "VITSRT_AUTH_TOKEN"
MAX_DETAILS_CHARS = 300  # longest status message / logged reason; client-sent strings inside are cut to fit
_T = TypeVar("_T")


class ServerSetupError(VitsrtError):
    """A server setting that cannot work (TLS files, a busy port, a bad limit); `vitsrt serve` exits 2."""


class Refused(VitsrtError):
    """A call the server itself ends with `code` (timeouts, size limit, shutdown)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class _NoRequest(Refused):
    """The request stream ended without a message: a client that sent none, or gRPC's own receive limit
    refused an oversized one (then gRPC has already ended the call, see `TtsServicer._fail`)."""

    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, "request: no request message was sent")


def capped(text: str, limit: int = MAX_DETAILS_CHARS) -> str:
    """`text` on one line and at most about `limit` characters: status messages and log lines may carry
    client-sent strings (a 900 KB voice name), which must not be echoed whole nor forge extra log lines."""
    flat = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(flat) <= limit:
        return flat
    kept = limit - 20
    return f"{flat[:kept]}…(+{len(flat) - kept} chars)"


class ServerConfig(BaseModel):
    """Everything `vitsrt serve` is told, built once: network, limits, shutdown, and the engine's options."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 50051  # 0 = pick a free port (see TtsServer.port)
    # Largest request accepted. Legit requests are small (5000 chars of text is < 20 KiB); the limit keeps a
    # hostile client from making the server buffer megabytes before the text limit could even be checked.
    max_message_bytes: int = 1 << 20
    # Largest response sent (a long unary WAV); gRPC's default send limit is unbounded, keep it finite.
    max_send_message_bytes: int = 256 << 20
    max_concurrent_streams: int = 64  # synthesis RPCs (unary and streaming) in flight at once
    auth_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_port: int | None = None  # None = no metrics endpoint; 0 = a free port
    # Default: same as host (a Prometheus on another machine can scrape it); 127.0.0.1 keeps it local.
    metrics_host: str | None = None
    metrics_auth: bool = True  # with auth_token set, /metrics requires it too (HTTP 401 otherwise)
    grace_seconds: float = 10.0
    drain_seconds: float = 0.0
    # A call whose request has not fully arrived within this many seconds ends with DEADLINE_EXCEEDED; also
    # bounds connections that never finish their HTTP/2 handshake.
    request_timeout: float = 10.0
    max_call_seconds: float = 600.0  # any call still running after this ends with DEADLINE_EXCEEDED
    # The engine `run_server` opens (text and ids limits, audio budget, batching, windows). A server built
    # around an engine someone else opened (TtsServer(engine, ...)) reads the limits from that engine.
    engine: EngineOptions = Field(default_factory=EngineOptions)

    @property
    def receive_limit(self) -> int:
        """gRPC's own receive limit: a backstop above max_message_bytes, which the servicer checks itself."""
        return 2 * self.max_message_bytes


def _encode_chunk(encoder: StreamEncoder, samples: np.ndarray, last: bool) -> bytes:
    """One chunk's bytes; the last chunk also carries the encoder's tail (resampler flush, codec frames)."""
    data = encoder.encode(samples)
    return data + encoder.finish() if last else data


def _timestamps_to_proto(chunk: AudioChunk, rate: int) -> dict[str, Any]:
    """The chunk's word/phoneme spans as AudioChunk fields, positions at the output `rate`."""
    if not (chunk.words or chunk.phonemes):
        return {}
    words = rescale(chunk.words, chunk.sample_rate, rate)
    phonemes = rescale(chunk.phonemes, chunk.sample_rate, rate)
    return {
        "words": [tts_pb2.WordTimestamp(text=w.text, start_sample=w.start_sample, end_sample=w.end_sample)
                  for w in words],
        "phonemes": [tts_pb2.PhonemeTimestamp(id=p.id, symbol=p.symbol, start_sample=p.start_sample,
                                              end_sample=p.end_sample) for p in phonemes],
    }


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status for an engine/validation error."""
    if isinstance(exc, Refused):
        return exc.code
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, OverloadedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL


class TtsServicer:
    """The three RPCs. Each synthesis call holds one slot of `max_concurrent_streams` while it runs."""

    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics):
        self._engine = engine
        self._config = config
        self._metrics = metrics
        self._active = 0
        self._tasks: set[asyncio.Task[Any]] = set()  # handler tasks not yet finished (shutdown waits for them)
        self.closing = False  # set by shutdown: new calls get UNAVAILABLE, failures count as shutdown's doing
        self.cancelled_at_shutdown = 0

    @property
    def active(self) -> int:
        return self._active

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        # Single-threaded (the event loop), so a plain counter is race-free.
        if self._active >= self._config.max_concurrent_streams:
            raise OverloadedError(f"server is at its limit of {self._config.max_concurrent_streams} "
                                  "concurrent streams; retry later")
        self._active += 1
        self._metrics.active_streams.inc()
        try:
            yield
        finally:
            self._active -= 1
            self._metrics.active_streams.dec()

    async def wait_finished(self, timeout: float) -> int:
        """Wait until every handler task has finished (cancelling those still running after `timeout`);
        returns how many had to be cancelled here."""
        pending = {task for task in self._tasks if not task.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return len(pending)

    async def _read_request(self, context: grpc.aio.ServicerContext) -> bytes:
        # Bounded: a client that opens a call and never completes its request must not hold it forever.
        try:
            async with asyncio.timeout(self._config.request_timeout):
                raw = await context.read()
        except TimeoutError:
            raise Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "request: not received within the server's "
                          f"request timeout of {self._config.request_timeout:g} s") from None
        if raw is grpc.aio.EOF:
            raise _NoRequest()
        if len(raw) > self._config.max_message_bytes:
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request: message of {len(raw)} bytes is larger "
                          f"than max ({self._config.max_message_bytes} bytes)")
        return raw

    def _parse(self, raw: bytes) -> tuple[Any, Encoding, int | None]:
        """The engine request, the output encoding and the requested output rate (None: the voice's)."""
        message = tts_pb2.SynthesizeRequest()
        try:
            message.ParseFromString(raw)
        except DecodeError as exc:
            raise InputError("request", f"not a valid SynthesizeRequest ({exc})") from None
        request, encoding = request_from_proto(message, self._engine.options.max_text_chars)
        return request, encoding, sample_rate_from_proto(message)

    async def _call(self, method: str, context: grpc.aio.ServicerContext,
                    body: Callable[[bytes], Awaitable[_T]]) -> _T | None:
        """Run one RPC: count it, read its request, run `body(request bytes)` within `max_call_seconds`, and
        turn every failure into a counted status. Returns None only when the call already has its status."""
        self._metrics.requests.labels(method).inc()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        limit = asyncio.timeout(self._config.max_call_seconds)
        try:
            if self.closing:
                raise Refused(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another instance")
            async with limit:
                return await body(await self._read_request(context))
        except asyncio.CancelledError:
            self._record_cancel(method, context)
            raise
        except Exception as exc:
            await self._fail(context, method, self._explain(exc, limit))
        return None

    def _explain(self, exc: Exception, limit: asyncio.Timeout) -> Exception:
        """The error to report for `exc`: the server's own limits and shutdown get their own status."""
        if isinstance(exc, TimeoutError) and limit.expired():
            return Refused(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"call ran past the server's limit of {self._config.max_call_seconds:g} s")
        if self.closing and not isinstance(exc, VitsrtError):
            # e.g. a write into a call that shutdown has just cancelled: not a bug, nothing to trace.
            return Refused(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        return exc

    async def _fail(self, context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
        code = status_for(exc)
        if code is grpc.StatusCode.INTERNAL and not isinstance(exc, VitsrtError):
            # The traceback without the exception's own text, which may hold client-sent strings.
            logger.error("%s failed: %s: %s\n%s", method, type(exc).__name__, capped(str(exc)),
                         "".join(traceback.format_tb(exc.__traceback__)).rstrip())
            message = "internal error (see server log)"
        else:
            message = capped(str(exc))
        try:
            await context.abort(code, message)
        except grpc.aio.AbortError:
            self._metrics.errors.labels(method, code.name).inc()
            logger.info("%s refused: %s: %s", method, code.name, message)
            raise
        except Exception:
            # gRPC had already ended the call. Returning lets gRPC finish it quietly (it sees the recorded abort).
            self._record_ended_by_grpc(method, exc)

    def _record_ended_by_grpc(self, method: str, exc: Exception) -> None:
        if isinstance(exc, _NoRequest):
            # The one way a call ends before its request arrives: gRPC's receive limit refused the message.
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            logger.info("%s refused: %s: request larger than gRPC's receive limit (%d bytes)", method, code.name,
                        self._config.receive_limit)
        else:
            code = grpc.StatusCode.CANCELLED
            logger.info("%s ended before its status could be sent (%s)", method, capped(str(exc)))
        self._metrics.errors.labels(method, code.name).inc()

    def _record_cancel(self, method: str, context: grpc.aio.ServicerContext) -> None:
        # The handler task was cancelled: the client went away, its deadline passed, or shutdown's grace ran out.
        remaining = context.time_remaining()
        code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        self._metrics.errors.labels(method, code).inc()
        if self.closing:
            self.cancelled_at_shutdown += 1
        logger.info("%s %s%s; its engine stream was closed", method, code.lower(),
                    " by shutdown" if self.closing else "")

    async def list_voices(self, _requests: object, context: grpc.aio.ServicerContext) -> Any:
        async def body(_raw: bytes) -> tts_pb2.ListVoicesResponse:
            voices = [voice_to_proto(info) for _, info in sorted(self._engine.voices.items())]
            return tts_pb2.ListVoicesResponse(voices=voices, default_voice=self._engine.default_voice)

        return await self._call("ListVoices", context, body)

    async def synthesize(self, _requests: object, context: grpc.aio.ServicerContext) -> Any:
        return await self._call("Synthesize", context, self._synthesize)

    async def _synthesize(self, raw: bytes) -> tts_pb2.SynthesizeResponse:
        started = time.perf_counter()
        request, encoding, target_rate = self._parse(raw)
        pieces: list[np.ndarray] = []
        sample_rate = 0
        with self._slot():
            # The engine's asyncio stream, not the blocking synthesize(): the event loop stays free and a
            # cancelled call cancels the engine work the same way a cancelled stream does.
            async with contextlib.aclosing(self._engine.astream(request)) as chunks:
                async for chunk in chunks:
                    pieces.append(chunk.audio)
                    sample_rate = chunk.sample_rate
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        # The same StreamEncoder as a stream (resample, encode, finish), in a worker thread: a codec over a
        # whole utterance takes milliseconds that other calls on this event loop should not wait for.
        data, out_rate = await asyncio.to_thread(encode_utterance, audio, encoding, sample_rate, target_rate)
        duration = len(audio) / sample_rate if sample_rate else 0.0
        self._metrics.latency.labels("Synthesize").observe(time.perf_counter() - started)
        self._metrics.audio_seconds.labels("Synthesize").inc(duration)
        return tts_pb2.SynthesizeResponse(audio=data, sample_rate=out_rate, encoding=encoding.value,
                                          duration_seconds=duration)

    async def synthesize_stream(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        await self._call("SynthesizeStream", context, lambda raw: self._synthesize_stream(raw, context))

    async def _synthesize_stream(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        # Written with context.write rather than as an async generator: a cancellation then always lands
        # in this frame (awaiting the engine or the write), where `aclosing` closes the engine stream.
        method = "SynthesizeStream"
        started = time.perf_counter()
        request, encoding, target_rate = self._parse(raw)
        with self._slot():
            encoder: StreamEncoder | None = None
            samples = 0
            sample_rate = 0
            async with contextlib.aclosing(self._engine.astream(request)) as chunks:
                async for chunk in chunks:
                    if encoder is None:
                        encoder = StreamEncoder(encoding, chunk.sample_rate, target_rate)
                        self._metrics.time_to_first_audio.labels(method).observe(time.perf_counter() - started)
                    samples += len(chunk.audio)
                    sample_rate = chunk.sample_rate
                    data = await asyncio.to_thread(_encode_chunk, encoder, chunk.audio, chunk.is_last)
                    await context.write(tts_pb2.AudioChunk(
                        audio=data, sample_rate=encoder.sample_rate,
                        encoding=encoding.value, index=chunk.index, is_last=chunk.is_last,
                        sentence_index=chunk.sentence_index, **_timestamps_to_proto(chunk, encoder.sample_rate)))
        self._metrics.latency.labels(method).observe(time.perf_counter() - started)
        if sample_rate:
            self._metrics.audio_seconds.labels(method).inc(samples / sample_rate)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """Request-streaming handlers over raw bytes: each reads its single request itself (bounded by
        `request_timeout`, size-checked, parsed in the servicer) and sends serialized replies. On the wire a
        request-streaming method is indistinguishable from a unary one, so unary clients call them as usual."""
        handlers = {
            "ListVoices": grpc.stream_unary_rpc_method_handler(
                self.list_voices, response_serializer=tts_pb2.ListVoicesResponse.SerializeToString),
            "Synthesize": grpc.stream_unary_rpc_method_handler(
                self.synthesize, response_serializer=tts_pb2.SynthesizeResponse.SerializeToString),
            "SynthesizeStream": grpc.stream_stream_rpc_method_handler(
                self.synthesize_stream, response_serializer=tts_pb2.AudioChunk.SerializeToString),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def _read_pem(path: Path, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ServerSetupError(f"{flag} {path}: cannot read it ({exc.strerror or exc})") from None


_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = re.compile(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----")


def check_tls(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """The (key, cert) PEM pair for gRPC, or None without TLS; a one-line ServerSetupError when the files
    are missing, swapped, not PEM, encrypted, or do not belong together (gRPC would fail with core logs)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ServerSetupError("give both --tls-cert and --tls-key")
    cert_pem, key_pem = _read_pem(cert, "--tls-cert"), _read_pem(key, "--tls-key")
    if _CERT_MARK not in cert_pem and _KEY_MARK.search(cert_pem) and _CERT_MARK in key_pem:
        raise ServerSetupError(f"--tls-cert {cert} holds a private key and --tls-key {key} a certificate; "
                               "are the two swapped?")
    if _CERT_MARK not in cert_pem:
        raise ServerSetupError(f"--tls-cert {cert}: no PEM certificate in it ('{_CERT_MARK.decode()}')")
    if b"ENCRYPTED PRIVATE KEY" in key_pem:
        raise ServerSetupError(f"--tls-key {key}: the key is encrypted; gRPC needs an unencrypted PEM key")
    if not _KEY_MARK.search(key_pem):
        raise ServerSetupError(f"--tls-key {key}: no PEM private key in it ('-----BEGIN PRIVATE KEY-----')")
    try:  # the stdlib's OpenSSL checks that the key belongs to the certificate
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        raise ServerSetupError(f"--tls-key {key} does not match --tls-cert {cert}, or one of them is damaged "
                               f"({exc.reason or exc})") from None
    return key_pem, cert_pem


def check_port_free(host: str, port: int, flag: str) -> None:
    """A ServerSetupError unless `host:port` can be listened on: gRPC core would print 'Failed to bind'
    lines of its own to stderr before Python sees the failure."""
    if not 0 <= port <= 65535:
        raise ServerSetupError(f"{flag} {port}: not a port number (0-65535)")
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerSetupError(f"cannot resolve host {host} ({exc.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no conflict
            try:
                probe.bind(address)
            except OSError as exc:
                raise ServerSetupError(f"{flag} {port}: cannot listen on {host}:{port} ({exc.strerror})") from None


def check_setup(config: ServerConfig) -> tuple[bytes, bytes] | None:
    """Refuse settings that cannot work, each with one line, before anything is opened; returns the TLS pair."""
    for name in ("request_timeout", "max_call_seconds"):
        if not getattr(config, name) > 0:
            raise ServerSetupError(f"{name.replace('_', '-')} must be positive, not {getattr(config, name)}")
    pair = check_tls(config.tls_cert, config.tls_key)
    check_port_free(config.host, config.port, "--port")
    if config.metrics_port is not None:
        if config.metrics_port == config.port != 0:
            raise ServerSetupError(f"--metrics-port {config.metrics_port} is also the gRPC --port")
        check_port_free(config.metrics_host or config.host, config.metrics_port, "--metrics-port")
    return pair


class TtsServer:
    """A started-on-demand grpc.aio server around one engine. The engine stays owned by the caller."""

    def __init__(self, engine: Engine, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.engine = engine
        self.metrics = ServerMetrics(engine.stats)
        self.servicer = TtsServicer(engine, self.config, self.metrics)
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._stopping = False

    def _count_unauthenticated(self, method: str) -> None:
        self.metrics.errors.labels(method.rsplit("/", 1)[-1], grpc.StatusCode.UNAUTHENTICATED.name).inc()

    def _build(self) -> grpc.aio.Server:
        config = self.config
        interceptors = []
        if config.auth_token:
            interceptors.append(BearerTokenInterceptor(config.auth_token, on_reject=self._count_unauthenticated))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", config.receive_limit),
                ("grpc.max_send_message_length", config.max_send_message_bytes),
                ("grpc.so_reuseport", 0),
                # A connection that never finishes its HTTP/2 handshake is closed after the request timeout.
                ("grpc.server_handshake_timeout_ms", max(1, int(config.request_timeout * 1000))),
            ],
        )
        server.add_generic_rpc_handlers((self.servicer.generic_handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        return server

    def _bind(self, server: grpc.aio.Server, tls: tuple[bytes, bytes] | None) -> int:
        host = self.config.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6
        address = f"{host}:{self.config.port}"
        try:
            if tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
        except RuntimeError as exc:  # taken between check_port_free and here
            raise ServerSetupError(f"cannot listen on {address} ({exc})") from None
        if port == 0:
            raise ServerSetupError(f"cannot listen on {address}")
        return port

    def _serve_metrics(self) -> None:
        config = self.config
        if config.metrics_port is None:
            return
        token = config.auth_token if config.metrics_auth else None
        try:
            self.metrics_port = self.metrics.serve_http(config.metrics_port, config.metrics_host or config.host,
                                                        token=token)
        except OSError as exc:
            raise ServerSetupError(f"--metrics-port {config.metrics_port}: cannot listen ({exc.strerror})") from None

    def _warn_plaintext_token(self, tls: bool) -> None:
        if self.config.auth_token and not tls and not _is_loopback(self.config.host):
            logger.warning("the auth token travels in plaintext: TLS is off and %s is not a loopback address; "
                           "use --tls-cert/--tls-key", self.config.host)

    async def start(self) -> int:
        """Bind, start serving, mark health SERVING; returns the bound port."""
        config = self.config
        tls = check_setup(config)
        server = self._build()
        port = self._bind(server, tls)
        self._serve_metrics()
        await server.start()
        self._server, self.port = server, port
        for name in ("", SERVICE_NAME):  # "" = the server as a whole
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._warn_plaintext_token(tls is not None)
        logger.info("serving %s on %s:%d (%s%s)%s", ", ".join(sorted(self.engine.voices)), config.host, port,
                    "TLS" if tls else "plaintext", ", token auth" if config.auth_token else "",
                    f", metrics on :{self.metrics_port}" if self.metrics_port is not None else "")
        return port

    async def shutdown(self, grace: float | None = None, drain: float | None = None) -> None:
        """NOT_SERVING, wait `drain` seconds (still serving), then stop accepting and give in-flight calls
        `grace` seconds before cancelling them. Returns once every handler has finished. Safe to call twice."""
        if self._server is None or self._stopping:
            return
        self._stopping = True
        grace = self.config.grace_seconds if grace is None else grace
        drain = self.config.drain_seconds if drain is None else drain
        await self.health.enter_graceful_shutdown()
        logger.info("shutting down: health NOT_SERVING, drain %.1fs, grace %.1fs, %d calls in flight",
                    drain, grace, self.servicer.active)
        if drain > 0:
            await asyncio.sleep(drain)
        self.servicer.closing = True
        await self._server.stop(grace)
        # gRPC's stop returns once the calls are cancelled in its core, before their Python handlers have run
        # their cancellation; left pending, asyncio would cancel them at exit and gRPC log each as an ERROR.
        forced = await self.servicer.wait_finished(timeout=10.0)
        await _let_grpc_tasks_finish()
        cancelled = self.servicer.cancelled_at_shutdown
        if cancelled:
            logger.warning("shutdown: %d call(s) still running after the %.1fs grace were cancelled%s", cancelled,
                           grace, f" ({forced} by the server after 10 s)" if forced else "")
        self.metrics.close()
        self._server = None
        logger.info("server stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def _let_grpc_tasks_finish(rounds: int = 100) -> None:
    """Yield to the loop until gRPC's per-call wrapper tasks (named "rpc_task" by grpc.aio) have seen their
    handler finish; bounded, and a no-op for gRPC versions that name them otherwise."""
    for _ in range(rounds):
        if not any(task.get_name() == "rpc_task" and not task.done() for task in asyncio.all_tasks()):
            return
        await asyncio.sleep(0.01)


async def serve_until_signal(engine: Engine, config: ServerConfig,
                             signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Run a gRPC server until one of `signals` arrives, then shut down gracefully: the gRPC door alone in
    `vitsrt.serve.doors.serve_doors`, which runs several doors on one loop (`vitsrt serve`)."""
    from vitsrt.serve.doors import GrpcDoor, serve_doors  # lazy: doors imports this module

    await serve_doors([("gRPC", GrpcDoor(TtsServer(engine, config)))], signals)


def run_server(voice_dirs: Sequence[str | Path], config: ServerConfig, backend: str = "onnxruntime",
               backend_options: dict[str, Any] | None = None) -> None:
    """Open the engine on `voice_dirs`, serve gRPC until SIGTERM/SIGINT, close the engine: `run_doors` with the
    gRPC door only (`vitsrt serve` calls run_doors itself, with whichever doors its flags ask for)."""
    from vitsrt.serve.doors import ServeConfig, run_doors  # lazy: doors imports this module

    run_doors(voice_dirs, ServeConfig(server=config), backend=backend, backend_options=backend_options)
