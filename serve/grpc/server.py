"""The `vitsrt.v1.TextToSpeech` gRPC server: grpc.aio over the engine's asyncio streams.

What a platform team needs from it, and where each lives:

* status codes: `InputError` -> INVALID_ARGUMENT (message names the field), `NotFoundError` -> NOT_FOUND,
  `OverloadedError` or the server's own stream limit -> RESOURCE_EXHAUSTED, bad token -> UNAUTHENTICATED
  (`auth.py`), oversized request -> RESOURCE_EXHAUSTED (gRPC's receive limit), anything unexpected ->
  INTERNAL with a generic message (details go to the log, not to the caller);
* a vanished client or an expired deadline cancels the handler task; the engine stream is consumed inside
  `contextlib.aclosing`, so the cancellation reaches the engine, which drops the stream from its queues;
* requests arrive as raw bytes and are parsed here, so malformed protobuf (e.g. invalid UTF-8 in a string
  field) is INVALID_ARGUMENT rather than the INTERNAL a failing gRPC deserializer would produce;
* health (`grpc.health.v1`) is SERVING once the port is bound and NOT_SERVING from the moment shutdown
  starts; reflection is on so `grpcurl` works without the .proto;
* graceful shutdown: NOT_SERVING, an optional drain delay (load balancers notice), then `server.stop(grace)`:
  no new RPCs, in-flight streams get `grace` seconds to finish, then are cancelled;
* Prometheus metrics (`metrics.py`) on their own HTTP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vitsrt.audio import Encoding, StreamEncoder, encode_samples, wav_bytes
from vitsrt.errors import InputError, NotFoundError, OverloadedError, VitsrtError
from vitsrt.serve.grpc.auth import BearerTokenInterceptor
from vitsrt.serve.grpc.convert import request_from_proto, voice_to_proto
from vitsrt.serve.grpc.metrics import ServerMetrics
from vitsrt.serve.proto import tts_pb2

if TYPE_CHECKING:
    from vitsrt.serve.engine.engine import Engine

logger = logging.getLogger(__name__)

SERVICE_NAME = tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name
AUTH_TOKEN_ENV = "VITSRT_AUTH_TOKEN"


@dataclass
class ServerConfig:
    """Network, limits and shutdown settings (the `vitsrt serve` flags)."""

    host: str = "127.0.0.1"
    port: int = 50051  # 0 = pick a free port (see TtsServer.port)
    # Largest request accepted. Legit requests are small (5000 chars of text is < 20 KiB); the limit keeps a
    # hostile client from making the server buffer megabytes before the text limit could even be checked.
    max_message_bytes: int = 1 << 20
    # Largest response sent (a long unary WAV); gRPC's default send limit is unbounded, keep it finite.
    max_send_message_bytes: int = 256 << 20
    max_text_chars: int = 5000
    max_concurrent_streams: int = 64  # synthesis RPCs (unary and streaming) in flight at once
    auth_token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_port: int | None = None  # None = no metrics endpoint; 0 = a free port
    metrics_host: str | None = None  # default: same as host
    grace_seconds: float = 10.0
    drain_seconds: float = 0.0


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status for an engine/validation error."""
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

    def _parse(self, raw: bytes) -> tuple[Any, Encoding]:
        message = tts_pb2.SynthesizeRequest()
        try:
            message.ParseFromString(raw)
        except DecodeError as exc:
            raise InputError("request", f"not a valid SynthesizeRequest ({exc})") from None
        return request_from_proto(message, self._config.max_text_chars)

    async def _fail(self, context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
        code = status_for(exc)
        self._metrics.errors.labels(method, code.name).inc()
        if code is grpc.StatusCode.INTERNAL and not isinstance(exc, VitsrtError):
            logger.error("%s failed", method, exc_info=exc)
            message = "internal error (see server log)"
        else:
            logger.info("%s refused: %s: %s", method, code.name, exc)
            message = str(exc)
        await context.abort(code, message)

    def _record_cancel(self, method: str, context: grpc.aio.ServicerContext) -> None:
        # The handler task was cancelled: the client went away, its deadline passed, or shutdown's grace ran out.
        remaining = context.time_remaining()
        code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        self._metrics.errors.labels(method, code).inc()
        logger.info("%s %s; its engine stream was closed", method, code.lower())

    async def list_voices(self, raw: bytes, context: grpc.aio.ServicerContext) -> tts_pb2.ListVoicesResponse:
        self._metrics.requests.labels("ListVoices").inc()
        voices = [voice_to_proto(info) for _, info in sorted(self._engine.voices.items())]
        return tts_pb2.ListVoicesResponse(voices=voices, default_voice=self._engine.default_voice)

    async def synthesize(self, raw: bytes, context: grpc.aio.ServicerContext) -> tts_pb2.SynthesizeResponse:
        method = "Synthesize"
        started = time.perf_counter()
        self._metrics.requests.labels(method).inc()
        try:
            request, encoding = self._parse(raw)
            pieces: list[np.ndarray] = []
            sample_rate = 0
            with self._slot():
                # The engine's asyncio stream, not the blocking synthesize(): the event loop stays free and a
                # cancelled call cancels the engine work the same way a cancelled stream does.
                async with contextlib.aclosing(self._engine.astream(request)) as chunks:
                    async for chunk in chunks:
                        pieces.append(chunk.audio)
                        sample_rate = chunk.sample_rate
        except asyncio.CancelledError:
            self._record_cancel(method, context)
            raise
        except Exception as exc:
            await self._fail(context, method, exc)
            raise  # unreachable: abort raises
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        data = wav_bytes(audio, sample_rate) if encoding is Encoding.WAV else encode_samples(audio, encoding)
        duration = len(audio) / sample_rate if sample_rate else 0.0
        self._metrics.latency.labels(method).observe(time.perf_counter() - started)
        self._metrics.audio_seconds.labels(method).inc(duration)
        return tts_pb2.SynthesizeResponse(audio=data, sample_rate=sample_rate, encoding=encoding.value,
                                          duration_seconds=duration)

    async def synthesize_stream(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        # Written with context.write rather than as an async generator: a cancellation then always lands
        # in this frame (awaiting the engine or the write), where `aclosing` closes the engine stream.
        method = "SynthesizeStream"
        started = time.perf_counter()
        self._metrics.requests.labels(method).inc()
        try:
            request, encoding = self._parse(raw)
            with self._slot():
                encoder: StreamEncoder | None = None
                samples = 0
                sample_rate = 0
                async with contextlib.aclosing(self._engine.astream(request)) as chunks:
                    async for chunk in chunks:
                        if encoder is None:
                            encoder = StreamEncoder(encoding, chunk.sample_rate)
                            self._metrics.time_to_first_audio.labels(method).observe(time.perf_counter() - started)
                        samples += len(chunk.audio)
                        sample_rate = chunk.sample_rate
                        await context.write(tts_pb2.AudioChunk(
                            audio=encoder.encode(chunk.audio), sample_rate=chunk.sample_rate,
                            encoding=encoding.value, index=chunk.index, is_last=chunk.is_last,
                            sentence_index=chunk.sentence_index))
        except asyncio.CancelledError:
            self._record_cancel(method, context)
            raise
        except Exception as exc:
            await self._fail(context, method, exc)
            raise
        self._metrics.latency.labels(method).observe(time.perf_counter() - started)
        if sample_rate:
            self._metrics.audio_seconds.labels(method).inc(samples / sample_rate)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """Handlers that receive raw request bytes (parsed in the servicer) and send serialized replies."""
        handlers = {
            "ListVoices": grpc.unary_unary_rpc_method_handler(
                self.list_voices, response_serializer=tts_pb2.ListVoicesResponse.SerializeToString),
            "Synthesize": grpc.unary_unary_rpc_method_handler(
                self.synthesize, response_serializer=tts_pb2.SynthesizeResponse.SerializeToString),
            "SynthesizeStream": grpc.unary_stream_rpc_method_handler(
                self.synthesize_stream, response_serializer=tts_pb2.AudioChunk.SerializeToString),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


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

    def _credentials(self) -> grpc.ServerCredentials | None:
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise InputError("tls", "give both --tls-cert and --tls-key")
        return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])

    async def start(self) -> int:
        """Bind, start serving, mark health SERVING; returns the bound port."""
        config = self.config
        interceptors = []
        if config.auth_token:
            interceptors.append(BearerTokenInterceptor(config.auth_token, on_reject=self._count_unauthenticated))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_send_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        server.add_generic_rpc_handlers((self.servicer.generic_handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        host = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host  # IPv6
        address = f"{host}:{config.port}"
        credentials = self._credentials()
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"could not bind {address}")
        await server.start()
        self._server, self.port = server, port
        if config.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(config.metrics_port, config.metrics_host or config.host)
        for name in ("", SERVICE_NAME):  # "" = the server as a whole
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving %s on %s:%d (%s%s)%s", ", ".join(sorted(self.engine.voices)), config.host, port,
                    "TLS" if credentials else "plaintext", ", token auth" if config.auth_token else "",
                    f", metrics on :{self.metrics_port}" if self.metrics_port is not None else "")
        return port

    async def shutdown(self, grace: float | None = None, drain: float | None = None) -> None:
        """NOT_SERVING, wait `drain` seconds (still serving), then stop accepting and give in-flight calls
        `grace` seconds before cancelling them. Safe to call twice."""
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
        await self._server.stop(grace)
        self.metrics.close()
        self._server = None
        logger.info("server stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve_until_signal(engine: Engine, config: ServerConfig,
                             signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Run a server until one of `signals` arrives, then shut down gracefully."""
    server = TtsServer(engine, config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await server.shutdown()


def run_server(voice_dirs: Sequence[str | Path], config: ServerConfig, backend: str = "onnxruntime",
               engine_options: Any = None, backend_options: dict[str, Any] | None = None) -> None:
    """Open the engine on `voice_dirs`, serve until SIGTERM/SIGINT, close the engine (the `vitsrt serve` body)."""
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    options = engine_options or EngineOptions(max_text_chars=config.max_text_chars,
                                              max_active_streams=config.max_concurrent_streams)
    engine = Engine.open([str(path) for path in voice_dirs], backend=backend, options=options,
                         backend_options=backend_options)
    try:
        asyncio.run(serve_until_signal(engine, config))
    finally:
        engine.close()

