"""Prometheus metrics for the gRPC server, on a registry owned by one server instance.

Request-level figures (counts, errors by status code, time to first audio, latency, active streams) are
recorded by the servicer as calls happen. Engine figures (queue depths, batch-size histogram) are read
from `engine.stats()` at scrape time by `EngineStatsCollector`, so they cost nothing between scrapes and
are never stale. A per-instance `CollectorRegistry` (not prometheus_client's global one) lets several
servers live in one process, as the tests do.

The /metrics endpoint can require the server's bearer token (`serve_http(token=...)`): requests without
`Authorization: Bearer TOKEN` get HTTP 401. Prometheus sends one with `authorization: {credentials_file: ...}`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vitsrt.serve.grpc.auth import parse_bearer, token_matches

logger = logging.getLogger(__name__)

# Time to first audio is tens of milliseconds on a warm CPU server; latency spans up to whole paragraphs.
_TTFA_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0)


class EngineStatsCollector(Collector):
    """Exposes `engine.stats()`: active streams, queue depth per stage, batches run per stage and size."""

    def __init__(self, stats: Callable[[], dict[str, Any]]):
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            stats = self._stats()
        except Exception:  # a scrape must not take the server down; say why in the log
            logger.exception("engine.stats() failed during a metrics scrape")
            return
        yield GaugeMetricFamily("vitsrt_engine_active_streams", "Streams the engine is working on",
                                value=stats.get("active_streams", 0))
        depths = GaugeMetricFamily("vitsrt_engine_queue_depth", "Items waiting in each engine stage queue",
                                   labels=["stage"])
        for stage, depth in sorted(stats.get("queue_depths", {}).items()):
            depths.add_metric([stage], depth)
        yield depths
        batches = CounterMetricFamily("vitsrt_engine_batches", "Batches run, by stage and batch size",
                                      labels=["stage", "size"])
        for stage, sizes in sorted(stats.get("batch_sizes", {}).items()):
            for size, count in sorted(sizes.items()):
                batches.add_metric([stage, str(size)], count)
        yield batches


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the debug log, not to stderr (wsgiref's default)."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics http: " + format, *args)


def _server_class(host: str, port: int) -> type[WSGIServer]:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]  # IPv6 hosts need an AF_INET6 socket

    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True  # a slow scraper never holds up shutdown

    return Server


def _require_token(app: Callable[..., Iterable[bytes]], token: str) -> Callable[..., Iterable[bytes]]:
    """`app` behind the bearer token: 401 without the right `Authorization: Bearer TOKEN` header."""
    expected = token.encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if token_matches(parse_bearer(environ.get("HTTP_AUTHORIZATION", "")), expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("WWW-Authenticate", 'Bearer realm="vitsrt metrics"')])
        return [b"missing or invalid bearer token\n"]

    return guarded


class ServerMetrics:
    """The server's own instruments plus the engine collector, on one registry."""

    def __init__(self, engine_stats: Callable[[], dict[str, Any]] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("vitsrt_requests", "RPCs received", ["method"], registry=self.registry)
        self.errors = Counter("vitsrt_errors", "RPCs that ended with a non-OK status", ["method", "code"],
                              registry=self.registry)
        self.time_to_first_audio = Histogram("vitsrt_time_to_first_audio_seconds",
                                             "From receiving a request to sending its first audio",
                                             ["method"], buckets=_TTFA_BUCKETS, registry=self.registry)
        self.latency = Histogram("vitsrt_request_latency_seconds", "From receiving a request to its last byte",
                                 ["method"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("vitsrt_audio_seconds", "Seconds of audio sent", ["method"],
                                     registry=self.registry)
        self.active_streams = Gauge("vitsrt_active_streams", "Synthesis RPCs in progress on this server",
                                    registry=self.registry)
        if engine_stats is not None:
            self.registry.register(EngineStatsCollector(engine_stats))
        self._http: Any = None
        self._lock = threading.Lock()

    def serve_http(self, port: int, host: str = "127.0.0.1", token: str | None = None) -> int:
        """Start the /metrics HTTP endpoint (a daemon thread); returns the bound port (useful with port 0).
        With `token`, every request must carry `Authorization: Bearer TOKEN` (else 401)."""
        with self._lock:
            if self._http is None:
                app = make_wsgi_app(self.registry)
                if token:
                    app = _require_token(app, token)
                self._http = make_server(host, port, app, _server_class(host, port), handler_class=_QuietHandler)
                threading.Thread(target=self._http.serve_forever, name="vitsrt-metrics", daemon=True).start()
            return int(self._http.server_port)

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
                self._http = None
