"""`vitsrt serve`: every door (gRPC, HTTP, Wyoming) on one engine and one asyncio loop.

A door is anything with `port = await door.start()` and `await door.stop()`. They share the engine (one
batcher, so a gRPC stream and an HTTP request can ride in the same batch), the bearer token, the limits and
the shutdown: SIGTERM/SIGINT stops every door at once, each with its own drain and grace, then the engine
closes. Settings that cannot work (a busy port, two doors on one port, unusable TLS files) are refused with
one line before the engine is opened. The HTTP and Wyoming doors are imported only when asked for, so a
gRPC-only server needs neither FastAPI nor uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vitsrt.serve.engine.engine import Engine
from vitsrt.serve.grpc.metrics import ServerMetrics
from vitsrt.serve.grpc.server import ServerConfig, ServerSetupError, TtsServer, check_port_free, check_setup, check_tls

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Door(Protocol):
    async def start(self) -> int: ...

    async def stop(self) -> None: ...


class ServeConfig(BaseModel):
    """Which doors `vitsrt serve` opens, around the shared settings (`server`: host, token, TLS, limits,
    shutdown, metrics, the engine's options; its `port` is the gRPC door's)."""

    model_config = ConfigDict(extra="forbid")

    server: ServerConfig = Field(default_factory=ServerConfig)
    grpc: bool = True
    http_port: int | None = None  # 0 = a free port
    wyoming_port: int | None = None

    @model_validator(mode="after")
    def _some_door(self) -> ServeConfig:
        if not (self.grpc or self.http_port is not None or self.wyoming_port is not None):
            raise ValueError("open at least one door: --grpc-port, --http-port or --wyoming-port")
        return self


class GrpcDoor:
    """The gRPC server as a door."""

    def __init__(self, server: TtsServer):
        self.server = server

    async def start(self) -> int:
        return await self.server.start()

    async def stop(self) -> None:
        await self.server.shutdown()


class MetricsDoor:
    """The standalone /metrics endpoint when no gRPC door runs it (the gRPC server owns it otherwise)."""

    def __init__(self, metrics: ServerMetrics, config: ServerConfig):
        self.metrics = metrics
        self.config = config

    async def start(self) -> int:
        config = self.config
        assert config.metrics_port is not None
        token = config.auth_token if config.metrics_auth else None
        try:
            port = self.metrics.serve_http(config.metrics_port, config.metrics_host or config.host, token=token)
        except OSError as exc:
            raise ServerSetupError(f"--metrics-port {config.metrics_port}: cannot listen ({exc.strerror})") from None
        logger.info("metrics on :%d", port)
        return port

    async def stop(self) -> None:
        self.metrics.close()


def _ports(config: ServeConfig) -> list[tuple[str, int | None]]:
    server = config.server
    return [("--grpc-port", server.port if config.grpc else None), ("--http-port", config.http_port),
            ("--wyoming-port", config.wyoming_port), ("--metrics-port", server.metrics_port)]


def check_doors(config: ServeConfig) -> None:
    """Refuse, with one line each, settings that cannot work, before the engine takes seconds to open."""
    server = config.server
    if config.grpc:
        check_setup(server)  # TLS, timeouts, the gRPC and metrics ports
    else:
        check_tls(server.tls_cert, server.tls_key)
        if server.metrics_port is not None:
            check_port_free(server.metrics_host or server.host, server.metrics_port, "--metrics-port")
    seen: dict[int, str] = {}
    for flag, port in _ports(config):
        if port is None or port == 0:
            continue
        if port in seen:
            raise ServerSetupError(f"{flag} {port} is also the {seen[port]}")
        seen[port] = flag
    for flag, port in _ports(config)[1:3]:
        if port is not None:
            check_port_free(server.host, port, flag)


def _http_door(engine: Engine, config: ServeConfig, metrics: ServerMetrics) -> Door:
    try:
        from vitsrt.serve.http import HttpConfig, HttpDoor
    except ModuleNotFoundError as exc:
        raise ServerSetupError(f"--http-port needs the 'http' extra ({exc.name} is missing): "
                               "pip install 'vitsrt[http]'") from None
    server = config.server
    assert config.http_port is not None
    http = HttpConfig(host=server.host, port=config.http_port, auth_token=server.auth_token,
                      tls_cert=server.tls_cert, tls_key=server.tls_key, max_request_bytes=server.max_message_bytes,
                      max_concurrent_streams=server.max_concurrent_streams, request_timeout=server.request_timeout,
                      max_call_seconds=server.max_call_seconds, grace_seconds=server.grace_seconds,
                      drain_seconds=server.drain_seconds, metrics_auth=server.metrics_auth)
    return HttpDoor(engine, http, metrics)


def _wyoming_door(engine: Engine, config: ServeConfig) -> Door:
    try:
        from vitsrt.serve.wyoming.server import WyomingDoor
    except ModuleNotFoundError as exc:
        raise ServerSetupError(f"--wyoming-port: the Wyoming door cannot be loaded ({exc.name} is missing)") from None
    assert config.wyoming_port is not None
    return WyomingDoor(engine, config.server.host, config.wyoming_port, auth_token=config.server.auth_token)


def build_doors(engine: Engine, config: ServeConfig) -> list[tuple[str, Door]]:
    """The doors `config` asks for, in start order, sharing one metrics registry."""
    doors: list[tuple[str, Door]] = []
    if config.grpc:
        grpc_server = TtsServer(engine, config.server)
        metrics = grpc_server.metrics
        doors.append(("gRPC", GrpcDoor(grpc_server)))
    else:
        metrics = ServerMetrics(engine.stats)
        if config.server.metrics_port is not None:
            doors.append(("metrics", MetricsDoor(metrics, config.server)))
    if config.http_port is not None:
        doors.append(("HTTP", _http_door(engine, config, metrics)))
    if config.wyoming_port is not None:
        doors.append(("Wyoming", _wyoming_door(engine, config)))
    return doors


async def _start(name: str, door: Door) -> None:
    try:
        await door.start()
    except OSError as exc:  # a port taken between check_doors and now
        raise ServerSetupError(f"the {name} door cannot listen ({exc.strerror or exc})") from None


async def _stop_all(doors: Sequence[tuple[str, Door]]) -> None:
    """Stop every door at once (each drains and gives its streams their grace in parallel)."""
    results = await asyncio.gather(*(door.stop() for _, door in doors), return_exceptions=True)
    for (name, _), result in zip(doors, results, strict=True):
        if isinstance(result, BaseException):
            logger.error("stopping the %s door failed: %s", name, result)


async def serve_doors(doors: Sequence[tuple[str, Door]], signals: Sequence[signal.Signals] = SIGNALS) -> None:
    """Start `doors` in order, serve until one of `signals` arrives, then stop them all. A door that fails to
    start stops the ones already started and its error propagates."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:  # before starting, so a signal during start-up still shuts down cleanly
        loop.add_signal_handler(sig, stop.set)
    started: list[tuple[str, Door]] = []
    try:
        for name, door in doors:
            await _start(name, door)
            started.append((name, door))
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await _stop_all(started)


def run_doors(voice_dirs: Sequence[str | Path], config: ServeConfig, backend: str = "onnxruntime",
              backend_options: dict[str, Any] | None = None) -> None:
    """Open the engine on `voice_dirs`, serve every door until SIGTERM/SIGINT, close the engine."""
    check_doors(config)
    engine = Engine.open([str(path) for path in voice_dirs], backend=backend, options=config.server.engine,
                         backend_options=backend_options)
    try:
        doors = build_doors(engine, config)
        asyncio.run(serve_doors(doors))
    finally:
        engine.close()
