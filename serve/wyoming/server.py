"""The Wyoming door: Home Assistant (and any Wyoming client) speaks to the engine over TCP.

    door = WyomingDoor(engine, "0.0.0.0", 10200)
    port = await door.start()
    ...
    await door.stop()

Protocol (the `wyoming` library's event types):
- `describe` -> `info`: one TTS program, one voice per engine voice with its speakers (as wyoming-piper).
- `synthesize` -> `audio-start`, one `audio-chunk` (PCM16 mono) per decode window, `audio-stop`.
- `synthesize-start`, `synthesize-chunk`*, `synthesize-stop` -> each sentence spoken as soon as the text after it
  shows it is complete (`audio-start` .. `audio-stop` per sentence, as wyoming-piper), the rest at the stop,
  then `synthesize-stopped`. A `synthesize` inside such a stream is the compatibility copy Home Assistant
  sends for servers without streaming: ignored.
- `ping` -> `pong`. Other events are dropped, as the protocol asks of servers.
- Bert-VITS2 2.2 voices: the raw `voice` object of `synthesize` / `synthesize-start` may carry `emotion`, a text
  prompt (see voices.py); other voices refuse it with an error event.
- A failure -> an `error` event (text, code: see events.py). The reply to a `synthesize` always ends with
  `audio-stop`, failed or not (Home Assistant's one-shot client reads up to it), so a failure there is
  [audio-start, audio-chunk*,] error, audio-stop. In a text stream, a failed sentence gets the error (and the
  audio-stop if its audio had started), the rest of the stream is dropped, and the stop still gets
  `synthesize-stopped`. The connection stays open, except after a framing error (the bytes cannot be trusted).

Replies go out in the order of the requests: one task per connection speaks a queue of replies while another
reads events, so a client can send its next request (or stream more text) while audio is still coming.
There is no lock across connections: each one awaits its own engine stream and the engine batches them.

Wyoming has no seed: every request gets the door's `seed` (default 0), so the same text, voice and speaker
give the same audio (Home Assistant caches TTS by text anyway); seed=None asks the engine for a random one.

Wyoming has no authentication either. With `auth_token` set, a connection must first send
`{"type": "vitsrt-auth", "data": {"token": ...}}` (only `ping` is answered before it); anything else, or a
wrong token, is answered with an `unauthenticated` error and the connection is closed. Home Assistant cannot
send it: for Home Assistant, leave the token unset and bind the door to an address only it can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import ValidationError
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStopped, SynthesizeTextFormat

from vitsrt.audio import float_to_pcm16
from vitsrt.errors import InputError, NothingToSpeakError, VitsrtError, clip
from vitsrt.serve.engine.types import EmotionPrompt, SynthesisRequest
from vitsrt.serve.wyoming.events import (
    CODE_BAD_EVENT,
    CODE_TOO_LARGE,
    CODE_UNAUTHENTICATED,
    EventLimits,
    ProtocolError,
    error_event,
    parse_header,
    read_body,
)
from vitsrt.serve.wyoming.sentences import SentenceBuffer
from vitsrt.serve.wyoming.voices import build_info, resolve_voice, voice_emotion

log = logging.getLogger(__name__)

AUTH_EVENT = "vitsrt-auth"
_WIDTH = 2  # bytes per sample: PCM16, what every Wyoming consumer plays
_DONE = object()
# What a well-framed but malformed event raises while it is read into a request (missing or mistyped fields).
_REQUEST_ERRORS = (VitsrtError, ValidationError, ProtocolError, KeyError, TypeError, AttributeError)

Reply = Callable[[], Awaitable[Any]]


class WyomingDoor:
    def __init__(self, engine: Any, host: str, port: int, auth_token: str | None = None, *,
                 seed: int | None = 0, idle_timeout_s: float = 300.0, stop_grace_s: float = 5.0,
                 max_queued: int = 32):
        if auth_token == "":
            raise ValueError("an empty auth token would accept every caller")
        if seed is not None and not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        self.engine = engine
        self.host = host
        self.port = port
        self.auth_token = auth_token
        self.seed = seed
        self.idle_timeout_s = idle_timeout_s  # no event and no work (or a client not reading) this long: close
        self.stop_grace_s = stop_grace_s
        self.max_queued = max_queued  # replies waiting per connection; then the reader stops reading
        self.limits = EventLimits.for_text(engine.options.max_text_chars)
        self.voices = engine.voices
        self.info_event = build_info(self.voices).event()
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task, _Connection] = {}

    async def start(self) -> int:
        """Listen; returns the bound port (port 0 picks a free one)."""
        if self._server is not None:
            raise RuntimeError("the Wyoming door is already started")
        # The reader's line limit bounds a header line; data and payload are bounded by read_body.
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  limit=self.limits.max_bytes + 1)
        bound = self._server.sockets[0].getsockname()[1]
        log.info("Wyoming door listening on %s:%d (%d voices)", self.host, bound, len(self.voices))
        return bound

    async def stop(self) -> None:
        """Stop accepting, stop reading requests, let replies already queued finish for up to `stop_grace_s`,
        then cancel what is left (which cancels its engine streams)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        running = dict(self._connections)
        for connection in running.values():
            connection.drain()
        if running:
            _, late = await asyncio.wait(running, timeout=self.stop_grace_s)
            for task in late:
                running[task].abort()
            if late:
                await asyncio.wait(late, timeout=self.stop_grace_s)
        await server.wait_closed()
        log.info("Wyoming door stopped (%d connections were open)", len(running))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(self, reader, writer)
        self._connections[task] = connection
        try:
            await connection.run()
        finally:
            self._connections.pop(task, None)


@dataclass
class _TextStream:
    """One `synthesize-start` .. `synthesize-stop`."""

    buffer: SentenceBuffer
    choice: tuple[str, str, str] = ("", "", "")  # voice, speaker, language
    emotion: EmotionPrompt | None = None  # voice.emotion of the synthesize-start (2.2 voices)
    chars: int = 0
    failed: bool = False  # an error was reported: the rest of this stream is dropped


class _Connection:
    def __init__(self, door: WyomingDoor, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.door = door
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.authenticated = door.auth_token is None
        self._replies: asyncio.Queue = asyncio.Queue(maxsize=door.max_queued)
        self._busy = False
        self._stream: _TextStream | None = None
        self._reading: asyncio.Task | None = None
        self._speaking: asyncio.Task | None = None
        self._handlers: dict[str, Callable[[Event], Awaitable[None]]] = {
            "describe": self._on_describe,
            "synthesize": self._on_synthesize,
            "synthesize-start": self._on_start,
            "synthesize-chunk": self._on_chunk,
            "synthesize-stop": self._on_stop,
        }

    async def run(self) -> None:
        log.debug("Wyoming connection from %s", self.peer)
        self._speaking = asyncio.create_task(self._speak_all())
        self._reading = asyncio.create_task(self._read_all())
        try:
            await asyncio.wait({self._reading})  # wait, not await: a drain cancels the reader, not us
            if not self._speaking.done():
                await self._replies.put(_DONE)  # then finish what is queued
            await asyncio.wait({self._speaking})
        finally:
            self._reading.cancel()
            self._speaking.cancel()
            self.writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await self.writer.wait_closed()
            log.debug("Wyoming connection from %s closed", self.peer)

    def drain(self) -> None:
        """Read no more requests; what is queued still gets its reply."""
        if self._reading is not None:
            self._reading.cancel()

    def abort(self) -> None:
        if self._speaking is not None:
            self._speaking.cancel()

    # ----- reading -----------------------------------------------------------------------------------

    async def _read_all(self) -> None:
        try:
            while (event := await self._next_event()) is not None:
                if not await self._handle(event):
                    return
        except ProtocolError as exc:
            log.info("Wyoming client %s: %s; closing", self.peer, exc)
            await self._reply(error_event(exc))
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("Wyoming client %s went away mid-event", self.peer)

    async def _next_event(self) -> Event | None:
        """The next event, or None at the end (client closed, or idle past the timeout with nothing to do)."""
        line = b"\n"
        while not line.strip():  # blank lines between events are harmless: skip them
            line = await self._next_line()
            if not line:
                return None
        return await read_body(self.reader, *parse_header(line, self.door.limits), self.door.limits)

    async def _next_line(self) -> bytes:
        while True:
            try:
                # Safe to time out: readline consumes nothing from the buffer until it has a whole line.
                async with asyncio.timeout(self.door.idle_timeout_s):
                    line = await self.reader.readline()
            except TimeoutError:
                if self._busy or not self._replies.empty():
                    continue  # waiting for its audio is not idle
                log.info("Wyoming client %s idle for %g s; closing", self.peer, self.door.idle_timeout_s)
                return b""
            except ValueError:  # the line passed the reader's limit
                raise ProtocolError(CODE_TOO_LARGE, "event header line over the size limit") from None
            # A line without its newline is what is left when the client closed mid-line.
            return line if line.endswith(b"\n") else b""

    async def _handle(self, event: Event) -> bool:
        """Act on one event; False closes the connection (after the queued replies)."""
        if Ping.is_type(event.type):
            await self._reply(Pong(text=_text_field(event.data.get("text"))).event())
            return True
        if event.type == AUTH_EVENT:
            return await self._authenticate(event)
        if not self.authenticated:
            await self._reply(Error(text="authenticate first (vitsrt-auth)", code=CODE_UNAUTHENTICATED).event())
            return False
        handler = self._handlers.get(event.type)
        if handler is None:
            log.debug("ignored a %s event", clip(event.type))
        else:
            await handler(event)
        return True

    async def _authenticate(self, event: Event) -> bool:
        expected = self.door.auth_token
        if expected is None:  # nothing to check; a client that always authenticates still works
            return True
        token = event.data.get("token")
        if isinstance(token, str) and hmac.compare_digest(token.encode(), expected.encode()):
            self.authenticated = True
            return True
        log.info("Wyoming client %s: wrong auth token; closing", self.peer)
        await self._reply(Error(text="invalid auth token", code=CODE_UNAUTHENTICATED).event())
        return False

    async def _on_describe(self, _event: Event) -> None:
        await self._reply(self.door.info_event)

    async def _on_synthesize(self, event: Event) -> None:
        if self._stream is not None:
            return  # the compatibility copy of the streamed text: the stream speaks it
        try:
            synthesize = Synthesize.from_event(event)
            _check_format(synthesize.text_format)
            request = self._request(resolve_voice(self.door.voices, self.door.engine.default_voice,
                                                  synthesize.voice), synthesize.text, voice_emotion(event.data))
        except _REQUEST_ERRORS as exc:
            await self._reply(error_event(_as_request_error(exc)))
            await self._reply(AudioStop().event())  # every synthesize reply ends with audio-stop
            return
        await self._replies.put(partial(self._speak, request))

    async def _on_start(self, event: Event) -> None:
        if self._stream is not None:
            await self._reply(error_event(InputError("synthesize-start", "a text stream is already open")))
            return
        stream = self._stream = _TextStream(SentenceBuffer())
        try:
            start = SynthesizeStart.from_event(event)
            _check_format(start.text_format)
            stream.choice = resolve_voice(self.door.voices, self.door.engine.default_voice, start.voice)
            stream.emotion = voice_emotion(event.data)
        except _REQUEST_ERRORS as exc:
            stream.failed = True
            await self._reply(error_event(_as_request_error(exc)))

    async def _on_chunk(self, event: Event) -> None:
        stream = self._stream
        if stream is None or stream.failed:
            return
        try:
            text = SynthesizeChunk.from_event(event).text
            if not isinstance(text, str):
                raise InputError("text", "must be a string")
            stream.chars += len(text)
            limit = self.door.engine.options.max_text_chars
            if stream.chars > limit:
                raise InputError("text", f"the streamed text is over the limit of {limit} characters")
        except _REQUEST_ERRORS as exc:
            stream.failed = True
            await self._reply(error_event(_as_request_error(exc)))
            return
        for sentence in stream.buffer.add(text):
            await self._replies.put(partial(self._speak_sentence, stream, sentence))

    async def _on_stop(self, _event: Event) -> None:
        stream, self._stream = self._stream, None
        rest = stream.buffer.finish() if stream is not None else ""
        if stream is not None and rest and not stream.failed:
            await self._replies.put(partial(self._speak_sentence, stream, rest))
        await self._reply(SynthesizeStopped().event())

    def _request(self, choice: tuple[str, str, str], text: Any,
                 emotion: EmotionPrompt | None = None) -> SynthesisRequest:
        voice, speaker, language = choice
        return SynthesisRequest(voice=voice, speaker=speaker, language=language, text=text, seed=self.door.seed,
                                emotion=emotion)

    # ----- speaking ----------------------------------------------------------------------------------

    async def _reply(self, event: Event) -> None:
        await self._replies.put(partial(self._write, event))

    async def _speak_all(self) -> None:
        try:
            while (reply := await self._replies.get()) is not _DONE:
                self._busy = True
                try:
                    await reply()
                finally:
                    self._busy = False
        except ConnectionError as exc:
            log.debug("Wyoming client %s: %s", self.peer, exc)
        except Exception:  # a bug, not the client's doing: log it where it happened, close this connection only
            log.exception("Wyoming connection %s failed", self.peer)
        finally:
            if self._reading is not None:  # nobody will take replies any more: stop reading requests
                self._reading.cancel()

    async def _speak_sentence(self, stream: _TextStream, sentence: str) -> None:
        if stream.failed:
            return
        try:
            request = self._request(stream.choice, sentence, stream.emotion)
        except _REQUEST_ERRORS as exc:
            stream.failed = True
            await self._write(error_event(exc))
            return
        if not await self._speak(request, in_stream=True):
            stream.failed = True

    async def _speak(self, request: SynthesisRequest, in_stream: bool = False) -> bool:
        """audio-start, an audio-chunk per decoded window, audio-stop; True on success. A failure sends an error
        event; the reply to a `synthesize` still ends with audio-stop (clients such as Home Assistant's read up
        to it), a streamed sentence's only if its audio had started (the stream ends with synthesize-stopped).
        In a stream, a sentence with nothing to say ("---") is skipped, not an error."""
        started = False
        error: Exception | None = None
        try:
            async with contextlib.aclosing(self.door.engine.astream(request)) as chunks:
                async for chunk in chunks:
                    if not started:
                        await self._write(AudioStart(rate=chunk.sample_rate, width=_WIDTH, channels=1).event())
                        started = True
                    pcm = float_to_pcm16(chunk.audio).tobytes()
                    await self._write(AudioChunk(rate=chunk.sample_rate, width=_WIDTH, channels=1, audio=pcm).event())
        except ConnectionError:
            raise
        except NothingToSpeakError as exc:
            if in_stream:
                return True
            error = exc
        except Exception as exc:  # the engine refused or failed this request: report it, keep the connection
            log.debug("Wyoming request failed: %s", exc)
            error = exc
        if error is not None:
            await self._write(error_event(error))
        if started or not in_stream:
            await self._write(AudioStop().event())
        return error is None

    async def _write(self, event: Event) -> None:
        try:
            async with asyncio.timeout(self.door.idle_timeout_s):
                await async_write_event(event, self.writer)
        except TimeoutError:
            raise ConnectionError(f"the client read nothing for {self.door.idle_timeout_s:g} s") from None


def _check_format(text_format: Any) -> None:
    """Plain text only: SSML would be read out tag by tag."""
    if text_format not in (None, SynthesizeTextFormat.TEXT):
        raise InputError("text_format", f"only plain text is supported, not {clip(text_format)}")


def _text_field(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_request_error(exc: BaseException) -> BaseException:
    """Missing or mistyped event fields (the wyoming parsers raise KeyError/TypeError) as a bad-event error."""
    if isinstance(exc, KeyError | TypeError | AttributeError):
        return ProtocolError(CODE_BAD_EVENT, f"malformed event: {type(exc).__name__} {clip(exc)}")
    return exc
