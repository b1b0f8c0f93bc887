"""The HTTP door's web page in a real browser: Debian's chromium, headless, driven over the Chrome DevTools
Protocol on a pipe (--remote-debugging-pipe: no port, no extra package). The page loads, lists the voices and
speakers from /v1/audio/voices, and `?autospeak=1` makes it ask for `pcm` and play the stream with WebAudio
until it writes "played N bytes"; a screenshot of the result is kept in the test's tmp dir.

Skipped with a reason when chromium is not installed (`apt-get install chromium`, the Makefile's debian-deps).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from http_support import RunningDoor

pytest.importorskip("fastapi", reason="the HTTP door needs the 'http' extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the HTTP door needs the 'http' extra (fastapi, uvicorn)")
pytest.importorskip("phonemizer", reason="the default voice's IPA front end needs the 'ipa' extra")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--window-size=900,640"]
# Resolves with the status line once the page has finished speaking (or failed); the page marks the end by
# setting data-bytes on #status, or the class "error".
WAIT_FOR_STATUS = """new Promise((resolve) => {
  const started = Date.now();
  const poll = setInterval(() => {
    const el = document.getElementById("status");
    if (el.dataset.bytes || el.className === "error" || Date.now() - started > %d) {
      clearInterval(poll);
      resolve({text: el.textContent, bytes: Number(el.dataset.bytes || 0), error: el.className === "error"});
    }
  }, 50);
})"""


class Browser:
    """headless chromium with the DevTools protocol on fds 3 (commands in) and 4 (replies out), NUL-separated
    JSON messages; one page target, attached in flat mode."""

    def __init__(self, profile: Path):
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()
        # bash puts the two pipe ends on the fds chromium expects, then execs it.
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w}', CHROMIUM, *FLAGS,
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(commands_r, replies_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(commands_r)
        os.close(replies_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            data = os.read(self._replies, 1 << 16)
            if not data:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += data
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read_message(deadline))

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                               "returnByValue": True}, timeout=timeout)
        assert "exceptionDetails" not in reply, reply
        return reply["result"]["value"]

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))

    def page_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("method") == "Runtime.exceptionThrown"]

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.voices import default_voice_dir

    engine = Engine.open([default_voice_dir()], options=EngineOptions(threads=1, max_wait_ms=2.0))
    yield engine
    engine.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    running = Browser(tmp_path / "profile")
    yield running
    running.close()


def test_page_lists_voices_and_plays_a_stream(engine, browser, tmp_path):
    server = RunningDoor(engine)
    try:
        browser.open(f"{server.url}/?autospeak=1")
        status = browser.evaluate(WAIT_FOR_STATUS % 30_000, timeout=60)
        voices = browser.evaluate("[...document.querySelectorAll('#voice option')].map((o) => o.value)")
        speakers = browser.evaluate("[...document.querySelectorAll('#speaker option')].map((o) => o.value)")
        browser.screenshot(tmp_path / "page.png")
    finally:
        server.close()
    print(f"\npage status: {status['text']!r}; screenshot {tmp_path / 'page.png'}")
    assert voices == ["vitsrt-default"] and speakers == ["awb", "kal", "rms", "slt"]
    assert not status["error"] and re.match(r"played \d+ bytes \([\d.]+ s at 16000 Hz", status["text"]), status
    assert status["bytes"] > 2 * 16000 and status["bytes"] % 2 == 0  # over a second of 16-bit audio
    assert not browser.page_errors(), browser.page_errors()
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_page_says_when_the_token_is_missing(engine, browser):
    server = RunningDoor(engine, auth_token="p4ge-t0ken")
    try:
        browser.open(f"{server.url}/?autospeak=1")  # the page itself needs no token; the API does
        status = browser.evaluate("document.getElementById('status').textContent")
        deadline = time.monotonic() + 20
        while "Cannot list voices" not in status and time.monotonic() < deadline:
            time.sleep(0.1)
            status = browser.evaluate("document.getElementById('status').textContent")
    finally:
        server.close()
    assert status.startswith("Cannot list voices: 401: You didn't provide an API key"), status
