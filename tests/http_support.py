"""Shared helper for tests/test_http_*.py: the HTTP door serving from its own thread's event loop, as
`vitsrt serve` runs it (the engine stays the test's)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class RunningDoor:
    """An HttpDoor serving from its own thread's event loop (the engine stays the test's)."""

    def __init__(self, engine: Any, **settings: Any):
        from vitsrt.serve.http import HttpConfig, HttpDoor

        self.door = HttpDoor(engine, HttpConfig(port=0, **settings))
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.door.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="http-door", daemon=True)
        self.thread.start()
        assert started.wait(30)
        self.url = f"http://127.0.0.1:{self.door.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.door.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
