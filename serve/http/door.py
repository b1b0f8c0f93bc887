"""`HttpDoor`: uvicorn serving the HTTP app on the caller's event loop, with the same start/stop shape as the
gRPC and Wyoming doors so `vitsrt serve` can run all of them on one loop and one engine.

uvicorn's own signal handling is switched off (the orchestrator owns SIGTERM/SIGINT and stops every door),
its logging configuration is left alone (vitsrt's format stays), and the listening socket is bound here, so
a busy port is a one-line setup error before anything runs and port 0 reports the port it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from vitsrt.errors import VitsrtError
from vitsrt.serve.engine.engine import Engine
from vitsrt.serve.grpc.metrics import ServerMetrics
from vitsrt.serve.grpc.server import _is_loopback
from vitsrt.serve.http.app import HttpConfig, build_app

logger = logging.getLogger(__name__)


class HttpSetupError(VitsrtError):
    """The HTTP door cannot listen where it was told to."""


class _DropCutStreamError(logging.Filter):
    """uvicorn logs an ERROR when an app ends a response without its final chunk. The HTTP door does that on
    purpose (a stream cut after a failure or past max_call_seconds, so the client sees an incomplete body) and
    logs its own WARNING with the reason; the extra ERROR line would only alarm."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


_CUT_STREAM_FILTER = _DropCutStreamError()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the orchestrator handles signals for every door at once


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, socket.gaierror) as exc:
        raise HttpSetupError(f"--http-port {port}: cannot resolve host {host} ({exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise HttpSetupError(f"--http-port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.setblocking(False)
    return sock


class HttpDoor:
    """The OpenAI-compatible HTTP API and web page around `engine` (owned by the caller)."""

    def __init__(self, engine: Engine, config: HttpConfig, metrics: ServerMetrics | None = None):
        self.engine = engine
        self.config = config
        self.metrics = metrics or ServerMetrics(engine.stats)
        self.port: int | None = None
        self._ready = False
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = build_app(engine, config, self.metrics, ready=lambda: self._ready)

    async def start(self) -> int:
        """Bind, serve, become ready; returns the bound port."""
        sock = _listen(self.config.host, self.config.port)
        self.port = sock.getsockname()[1]
        uv_config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False,
                                   lifespan="off", timeout_graceful_shutdown=self.config.grace_seconds,
                                   server_header=False, h11_max_incomplete_event_size=64 * 1024,
                                   ssl_certfile=self.config.tls_cert, ssl_keyfile=self.config.tls_key)
        logging.getLogger("uvicorn.error").addFilter(_CUT_STREAM_FILTER)  # one shared instance: added once
        self._server = _Server(uv_config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="vitsrt-http")
        while not self._server.started:
            if self._task.done():  # startup failed: surface its error here
                await self._task
                raise HttpSetupError(f"--http-port {self.port}: the HTTP server did not start")
            await asyncio.sleep(0.01)
        self._ready = True
        tls = self.config.tls_cert is not None
        if self.config.auth_token and not tls and not _is_loopback(self.config.host):
            logger.warning("the HTTP door's auth token travels in plaintext: TLS is off and %s is not a loopback "
                           "address; use --tls-cert/--tls-key or a TLS proxy", self.config.host)
        logger.info("HTTP door on %s:%d (%s%s; OpenAI /v1/audio/speech, web page /)", self.config.host, self.port,
                    "HTTPS" if tls else "plaintext", ", token auth" if self.config.auth_token else "")
        return self.port

    async def stop(self) -> None:
        """Not ready, `drain_seconds` still serving, then no new connections and `grace_seconds` for streams in
        flight before they are cancelled. Safe to call twice."""
        if self._server is None or self._task is None:
            return
        server, task = self._server, self._task
        self._server = None
        self._ready = False
        if self.config.drain_seconds > 0:
            await asyncio.sleep(self.config.drain_seconds)
        server.should_exit = True
        await task
        logger.info("HTTP door stopped")
