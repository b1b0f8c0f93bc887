"""Shared helpers for tests/test_grpc_*.py: a real engine on the tiny fixture voice, a real grpc.aio server
on 127.0.0.1 (free port) running in a background event loop, and a metrics scraper.

No mocks: the server wraps the real `Engine` over the voice bundle exported from the upstream parity
fixture (conftest's `fixture_voice`), and clients talk to it over TCP with the generated stubs.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np


def phone_ids(tokens: int, seed: int) -> dict[str, list[int]]:
    """Blank-interspersed ids in the fixture voice's ranges (112 symbols, 'ZH' tones 1-5, language 0)."""
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 112)) for i in range(tokens)]
    tones = [0 if i % 2 == 0 else int(rng.integers(1, 6)) for i in range(tokens)]
    return {"phone_ids": phones, "tone_ids": tones, "language_ids": [0] * tokens}


def ids_request(tokens: int, seed: int, **fields: Any) -> Any:
    """A SynthesizeRequest for `tokens` ids (the fixture voice has the 'ids' front end: no text)."""
    from vitsrt.serve.grpc.client import build_request

    return build_request(**phone_ids(tokens, seed), seed=seed, **fields)


# Channel options for a client that holds a stream without reading it: with BDP probing off the HTTP/2 window
# stays small, the server's writes block, and the call stays in flight however fast the machine is.
HOLDING_CLIENT = (("grpc.http2.bdp_probe", 0),)


def open_engine(voice_dir: Path, **options: Any) -> Any:
    """The real engine on `voice_dir`, one intra-op thread (the test machine has two cores)."""
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    settings = {"max_batch": 8, "max_wait_ms": 2.0, "threads": 1, "max_active_streams": 64, **options}
    return Engine.open([voice_dir], options=EngineOptions(**settings))


class RunningServer:
    """A `TtsServer` serving in its own thread's event loop, as a deployed server would (but in-process, so a
    test can look at the engine and the servicer directly)."""

    def __init__(self, engine: Any, config: Any):
        from vitsrt.serve.grpc.server import TtsServer

        self.server = TtsServer(engine, config)
        self.engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="grpc-test-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                self._ready.set()
            await self._stop.wait()
            await self.server.shutdown(grace=2.0, drain=0.0)

        asyncio.run(main())

    def __enter__(self) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("server did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop (e.g. shutdown) and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def metric_reaches(self, name: str, expected: float, timeout: float = 5.0, **labels: str) -> float | None:
        """The metric once it equals `expected`, or its value after `timeout`: the server counts a call just after
        the client has its status, so a test reading the count at once can race it."""
        deadline = time.monotonic() + timeout
        value = self.metric(name, **labels)
        while value != expected and time.monotonic() < deadline:
            time.sleep(0.02)
            value = self.metric(name, **labels)
        return value

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample from the /metrics endpoint (None if absent); sends the server's token when it has one."""
        assert self.server.metrics_port is not None, "start the server with metrics_port=0"
        config = self.server.config
        token = config.auth_token if config.metrics_auth else None
        return scrape(self.server.metrics_port, name, token=token, **labels)


def read_until(process: subprocess.Popen, pattern: str, seen: list[str], timeout: float = 60) -> re.Match:
    """The first line of `process`'s stderr matching `pattern` (every line read is appended to `seen`, which the
    assertion shows when none matches within `timeout`)."""
    assert process.stderr is not None
    found: list[re.Match] = []

    def pump() -> None:
        for line in process.stderr:
            seen.append(line)
            if match := re.search(pattern, line):
                found.append(match)
                return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, "".join(seen)
    return found[0]


class ServerProcess:
    """`python -m vitsrt.cli serve ...` on a free port (`voice` None: the shipped default voice); its log lines
    are collected as they come."""

    def __init__(self, voice: Path | None, *flags: str, env: dict[str, str] | None = None):
        from conftest import REPO_ROOT

        voices = ["-v", str(voice)] if voice is not None else []
        command = [sys.executable, "-m", "vitsrt.cli", "serve", *voices, "--port", "0", "--threads", "1", *flags]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        text=True, env={**os.environ, **(env or {})})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = int(self.wait_for(r"serving \S+ on [\d.:]+:(\d+)", timeout=120).group(1))
        self.banner = self.log[-1]
        self.target = f"127.0.0.1:{self.port}"

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no log line matching {pattern!r}; log so far:\n{''.join(self.log)}")

    def rest_of_log(self, timeout: float = 30.0) -> str:
        """Everything logged, once the process has exited (waits up to `timeout`)."""
        self.process.wait(timeout)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the pump thread drains the pipe after exit
            try:
                self.log.append(self.lines.get(timeout=0.2))
            except queue.Empty:
                break
        return "".join(self.log)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def scrape(port: int, name: str, token: str | None = None, **labels: str) -> float | None:
    """Read one sample `name{labels}` from a Prometheus text endpoint on 127.0.0.1:`port` (with `token`, as
    `Authorization: Bearer TOKEN`)."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
