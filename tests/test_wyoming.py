"""The Wyoming door over a real engine on the shipped default voice, driven by the wyoming library's own
AsyncTcpClient on 127.0.0.1 (no mocks). Each test runs its door in its own event loop (asyncio.run).

Determinism: Wyoming carries no seed, so the door gives every request its server-level seed (0 by default);
the engine run with the same text, speaker and seed=0 is the reference the door's audio is compared with.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("wyoming")

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from vitsrt.audio import float_to_pcm16
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.types import SynthesisRequest
from vitsrt.serve.wyoming.sentences import SentenceBuffer
from vitsrt.serve.wyoming.server import AUTH_EVENT, WyomingDoor
from vitsrt.voices import default_voice_dir

VOICE = "vitsrt-default"
MAX_TEXT = 400
# Batch invariance bound of the engine (1e-4 in float), in PCM16 steps (1/32767 each), plus one for rounding.
BATCH_LSB = 5
_END_TYPES = ("audio-stop", "synthesize-stopped", "info", "pong")


@pytest.fixture(scope="module")
def engine():
    options = EngineOptions(threads=1, max_batch=8, max_wait_ms=10.0, max_text_chars=MAX_TEXT, max_audio_seconds=8.0)
    engine = Engine.open([default_voice_dir()], options=options)
    yield engine
    engine.close()


def reference(engine: Engine, text: str, speaker: str) -> bytes:
    request = SynthesisRequest(voice=VOICE, text=text, speaker=speaker, seed=0)
    return float_to_pcm16(np.concatenate([c.audio for c in engine.stream(request)])).tobytes()


def pcm_distance(a: bytes, b: bytes) -> int:
    x, y = np.frombuffer(a, "<i2").astype(np.int32), np.frombuffer(b, "<i2").astype(np.int32)
    assert len(x) == len(y) > 0
    return int(np.max(np.abs(x - y)))


def run_with_door(engine: Engine, scenario, **door_options):
    """Start a door on a free port, run `scenario(port, door)`, stop the door; all in one fresh event loop."""

    async def main():
        door = WyomingDoor(engine, "127.0.0.1", 0, **door_options)
        port = await door.start()
        try:
            return await scenario(port, door)
        finally:
            await door.stop()

    return asyncio.run(main())


def client(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, connect_timeout=5, read_timeout=30)


async def read_until_end(conn: AsyncTcpClient) -> list[Event]:
    """Events up to and including the next one that ends a reply."""
    events = []
    while True:
        event = await conn.read_event()
        assert event is not None, f"connection closed after {[e.type for e in events]}"
        events.append(event)
        if event.type in _END_TYPES:
            return events


def audio_of(events: list[Event]) -> bytes:
    return b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))


def synthesize(text: str, speaker: str | None = None, name: str | None = VOICE) -> Event:
    return Synthesize(text=text, voice=SynthesizeVoice(name=name, speaker=speaker)).event()


# ----- describe / synthesize ----------------------------------------------------------------------------


def test_info_lists_the_default_voice_speakers_and_languages(engine):
    async def scenario(port, _door):
        async with client(port) as conn:
            await conn.write_event(Describe().event())
            info = Info.from_event((await read_until_end(conn))[-1])
            await conn.write_event(Ping(text="hi").event())
            pong = (await read_until_end(conn))[-1]
        return info, pong

    info, pong = run_with_door(engine, scenario)
    (program,) = info.tts
    assert program.name == "vitsrt" and program.installed and program.supports_synthesize_streaming
    (voice,) = program.voices
    assert voice.name == VOICE and voice.installed
    assert voice.languages == ["en"]
    assert [s.name for s in voice.speakers] == ["awb", "kal", "rms", "slt"]
    assert Pong.is_type(pong.type) and Pong.from_event(pong).text == "hi"


def test_synthesize_audio_equals_the_engine_output_for_the_same_text_and_speaker(engine):
    text = "Turn on the kitchen lights, please."

    async def scenario(port, _door):
        async with client(port) as conn:
            await conn.write_event(synthesize(text, speaker="kal"))
            first = await read_until_end(conn)
            await conn.write_event(synthesize(text, speaker="slt"))
            second = await read_until_end(conn)
        return first, second

    kal, slt = run_with_door(engine, scenario)
    start = AudioStart.from_event(kal[0])
    assert (start.rate, start.width, start.channels) == (16000, 2, 1)
    assert AudioStop.is_type(kal[-1].type)
    windows = [c for c in engine.stream(SynthesisRequest(voice=VOICE, text=text, speaker="kal", seed=0))]
    assert sum(AudioChunk.is_type(e.type) for e in kal) == len(windows) > 1  # one audio-chunk per decode window
    assert pcm_distance(audio_of(kal), reference(engine, text, "kal")) <= BATCH_LSB
    assert pcm_distance(audio_of(slt), reference(engine, text, "slt")) <= BATCH_LSB
    # Negative control: the comparison separates speakers (the audio differs, whatever the lengths).
    a, b = np.frombuffer(audio_of(kal), "<i2"), np.frombuffer(audio_of(slt), "<i2")
    n = min(len(a), len(b))
    assert len(a) != len(b) or np.max(np.abs(a[:n].astype(int) - b[:n])) > 100 * BATCH_LSB


def test_four_concurrent_clients_are_served_together_and_batched(engine):
    # Several windows each (about 3 s of audio): every stream has audio pending long after its first chunk, so
    # "all first chunks before any last one" holds for a concurrent server even on a loaded machine.
    jobs = [("Good morning, the coffee is ready and the toast is warm on the kitchen table.", "awb"),
            ("The front door is locked now, and the lights in the hallway are switched off.", "kal"),
            ("It will rain this afternoon, so take an umbrella when you go to the station.", "rms"),
            ("Your timer has finished, and the oven has turned itself off for the evening.", "slt")]
    before = {stage: Counter(sizes) for stage, sizes in engine.stats()["batch_sizes"].items()}

    async def one(port, text, speaker, gate):
        async with client(port) as conn:
            await gate.wait()
            await conn.write_event(synthesize(text, speaker=speaker))
            events = [await conn.read_event()]
            first_audio = time.perf_counter()
            events += await read_until_end(conn)
            return first_audio, time.perf_counter(), events

    async def scenario(port, _door):
        gate = asyncio.Event()
        tasks = [asyncio.create_task(one(port, text, speaker, gate)) for text, speaker in jobs]
        await asyncio.sleep(0.2)  # all four connected
        gate.set()
        return await asyncio.gather(*tasks)

    results = run_with_door(engine, scenario)
    after = engine.stats()["batch_sizes"]
    # Each text is one sentence: a prefill or flow batch of more than one item holds several clients' requests.
    batched = {stage: {size: n - before[stage][size] for size, n in after[stage].items()
                       if size > 1 and n > before[stage][size]} for stage in ("prefill", "flow")}
    assert any(batched.values()), f"the four requests were never batched together: {after}"
    # Served concurrently: every client had audio coming before any of them was done (a lock would serialise).
    assert max(first for first, _, _ in results) < min(done for _, done, _ in results)
    for (text, speaker), (_, _, events) in zip(jobs, results, strict=True):
        assert AudioStop.is_type(events[-1].type)
        assert pcm_distance(audio_of(events), reference(engine, text, speaker)) <= BATCH_LSB


# ----- streaming text ------------------------------------------------------------------------------------


def test_streamed_text_is_spoken_sentence_by_sentence_as_each_completes(engine):
    sentences = ["Hello there.", "How are you?", "I am fine"]

    async def scenario(port, _door):
        async with client(port) as conn:
            await conn.write_event(SynthesizeStart(voice=SynthesizeVoice(name=VOICE, speaker="rms")).event())
            await conn.write_event(SynthesizeChunk(text="Hello the").event())
            await conn.write_event(SynthesizeChunk(text="re. How").event())
            # The first sentence is spoken before the client sends anything more.
            first = await read_until_end(conn)
            await conn.write_event(SynthesizeChunk(text=" are you? I am").event())
            second = await read_until_end(conn)
            await conn.write_event(SynthesizeChunk(text=" fine").event())
            # Home Assistant's compatibility copy of the whole text: a streaming server ignores it.
            await conn.write_event(synthesize("Hello there. How are you? I am fine", speaker="rms"))
            await conn.write_event(SynthesizeStop().event())
            third = await read_until_end(conn)
            stopped = await read_until_end(conn)
        return [first, second, third], stopped

    blocks, stopped = run_with_door(engine, scenario)
    assert [e.type for e in stopped] == ["synthesize-stopped"]
    for sentence, events in zip(sentences, blocks, strict=True):
        assert events[0].type == "audio-start" and events[-1].type == "audio-stop"
        assert pcm_distance(audio_of(events), reference(engine, sentence, "rms")) <= BATCH_LSB


def test_sentence_buffer_holds_back_what_may_go_on():
    buffer = SentenceBuffer()
    assert buffer.add("Dr. ") == []  # "Dr." may be a title: wait
    assert buffer.add("Smith arrived. ") == []  # the next word decides
    assert buffer.add("He sat") == ["Dr. Smith arrived."]
    assert buffer.add(" down") == []
    assert buffer.add("\n") == ["He sat down"]  # a line break always ends a sentence
    assert buffer.add("Pi is 3.") == []
    assert buffer.add("14 or so") == []
    assert buffer.finish() == "Pi is 3.14 or so"
    assert buffer.add("a" * 1000) != []  # an endless "sentence" is cut at the splitter's bound
    assert len(buffer.pending) < 1000


# ----- errors --------------------------------------------------------------------------------------------


def test_bad_requests_get_error_events_and_the_connection_keeps_working(engine):
    long_story = "This is one sentence of a rather long story about the house. " * 6

    async def scenario(port, _door):
        replies = {}
        async with client(port) as conn:
            for name, event in [
                ("voice", synthesize("Hello.", name="nobody")),
                ("speaker", synthesize("Hello.", speaker="zed")),
                ("empty", synthesize("   ")),
                ("too_long", synthesize("a" * (MAX_TEXT + 1))),
                ("malformed", Event(type="synthesize", data={"voice": {"name": VOICE}})),
                ("ssml", Event(type="synthesize", data={"text": "<speak>Hi</speak>", "text_format": "ssml"})),
                ("budget", synthesize(long_story[:MAX_TEXT])),
                ("ok", synthesize("Lights off.", speaker="awb")),
            ]:
                await conn.write_event(event)
                replies[name] = await read_until_end(conn)
            await conn.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event())
            await conn.write_event(SynthesizeChunk(text="Hello there. And more").event())
            await conn.write_event(SynthesizeStop().event())
            replies["stream"] = await read_until_end(conn)
            await conn.write_event(synthesize("Still here.", speaker="awb"))
            replies["after"] = await read_until_end(conn)
        return replies

    replies = run_with_door(engine, scenario)
    codes = {name: Error.from_event(events[-2]).code for name, events in replies.items() if name not in ("ok", "after")}
    assert codes == {"voice": "not-found", "speaker": "not-found", "empty": "invalid-input",
                     "too_long": "invalid-input", "malformed": "bad-event", "ssml": "invalid-input",
                     "budget": "budget-exceeded", "stream": "not-found"}
    assert "nobody" in Error.from_event(replies["voice"][0]).text
    # A synthesize reply ends with audio-stop, failed or not; a refused request gets no audio.
    for name in ("voice", "speaker", "empty", "too_long", "malformed", "ssml"):
        assert [e.type for e in replies[name]] == ["error", "audio-stop"], name
    # The budget is found once audio has started: audio, then the error, then the audio-stop.
    assert [e.type for e in replies["budget"][:1] + replies["budget"][-2:]] == ["audio-start", "error", "audio-stop"]
    # A stream that failed at its start: the error, nothing spoken, and the stop still answered.
    assert [e.type for e in replies["stream"]] == ["error", "synthesize-stopped"]
    for name in ("ok", "after"):
        assert replies[name][0].type == "audio-start" and replies[name][-1].type == "audio-stop"
        assert len(audio_of(replies[name])) > 0


async def _raw_exchange(port: int, data: bytes) -> list[Event]:
    """Send raw bytes; every event until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    events = []
    while (event := await asyncio.wait_for(async_read_event(reader), 10)) is not None:
        events.append(event)
    writer.close()
    return events


def test_framing_errors_close_that_connection_only(engine):
    oversize = json.dumps({"type": "synthesize", "data_length": 10**9}).encode() + b"\n"

    async def scenario(port, door):
        too_large = await _raw_exchange(port, oversize)
        not_json = await _raw_exchange(port, b"{not json\n")
        long_line = await _raw_exchange(port, b"x" * (door.limits.max_bytes + 10) + b"\n")
        async with client(port) as conn:
            await conn.write_event(synthesize("Still serving.", speaker="awb"))
            after = await read_until_end(conn)
        return too_large, not_json, long_line, after

    too_large, not_json, long_line, after = run_with_door(engine, scenario)
    assert [Error.from_event(e).code for e in too_large] == ["too-large"]
    assert [Error.from_event(e).code for e in not_json] == ["bad-event"]
    assert [Error.from_event(e).code for e in long_line] == ["too-large"]
    assert after[-1].type == "audio-stop"


def test_auth_token_is_required_when_set(engine):
    async def scenario(port, _door):
        bare = await _raw_exchange(port, b'{"type": "describe"}\n')
        wrong = await _raw_exchange(port, json.dumps({"type": AUTH_EVENT, "data": {"token": "nope"}}).encode() + b"\n")
        async with client(port) as conn:
            await conn.write_event(Event(type=AUTH_EVENT, data={"token": "s3cret"}))
            await conn.write_event(Describe().event())
            info = await read_until_end(conn)
        return bare, wrong, info

    bare, wrong, info = run_with_door(engine, scenario, auth_token="s3cret")
    assert [Error.from_event(e).code for e in bare] == ["unauthenticated"]
    assert [Error.from_event(e).code for e in wrong] == ["unauthenticated"]
    assert Info.is_type(info[-1].type)


def test_idle_connections_are_closed(engine):
    async def scenario(port, _door):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        end = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return end, time.perf_counter() - started

    end, waited = run_with_door(engine, scenario, idle_timeout_s=0.3)
    assert end == b"" and 0.25 < waited < 5


def test_stop_lets_a_running_synthesis_finish_and_refuses_new_connections(engine):
    async def scenario(port, door):
        async with client(port) as conn:
            await conn.write_event(synthesize("Goodbye for now, see you tomorrow morning.", speaker="slt"))
            first = await conn.read_event()
            stopping = asyncio.create_task(door.stop())
            rest = await read_until_end(conn)
            await stopping
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        return [first, *rest]

    events = run_with_door(engine, scenario)
    assert events[0].type == "audio-start" and events[-1].type == "audio-stop"
    assert len(audio_of(events)) > 16000  # the whole utterance (over a second), not a cut-off piece


def test_streamed_text_over_the_limit_is_refused_and_the_stream_still_ends(engine):
    async def scenario(port, _door):
        async with client(port) as conn:
            await conn.write_event(SynthesizeStart().event())
            await conn.write_event(SynthesizeChunk(text="word " * 50).event())  # no boundary yet: held back
            await conn.write_event(SynthesizeChunk(text="word " * 40).event())  # 450 characters in all
            await conn.write_event(SynthesizeStop().event())
            return await read_until_end(conn)

    events = run_with_door(engine, scenario)
    assert [e.type for e in events] == ["error", "synthesize-stopped"]
    assert Error.from_event(events[0]).code == "invalid-input"


def test_waiting_for_audio_is_not_idle(engine):
    # The reply (~6 s of audio, within this engine's 8 s budget) takes ~0.15 s even on a fast idle machine, so the
    # idle timeout is a third of that; the door must not count waiting for audio as idle.
    text = "The washing machine has finished. The dryer is still running. Dinner will be ready at seven."

    async def scenario(port, _door):
        async with client(port) as conn:
            await asyncio.sleep(0.02)
            await conn.write_event(synthesize(text, speaker="kal"))
            started = time.perf_counter()
            events = await read_until_end(conn)
            return events, time.perf_counter() - started

    events, took = run_with_door(engine, scenario, idle_timeout_s=0.05)
    assert "error" not in [e.type for e in events]
    assert events[-1].type == "audio-stop" and took > 0.05  # the reply took longer than the idle timeout


def test_stop_after_the_grace_cancels_what_is_left_in_the_engine(engine):
    text = "This sentence is long enough that its audio cannot be finished within the short grace of the stop."

    async def scenario(port, door):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(json.dumps({"type": "synthesize", "data": {"text": text}}).encode() + b"\n")
        await writer.drain()
        assert (await asyncio.wait_for(async_read_event(reader), 10)).type == "audio-start"
        started = time.perf_counter()
        await door.stop()
        took = time.perf_counter() - started
        active = engine.stats()["active_streams"]  # right away: before the utterance could have finished
        rest = []
        while (event := await asyncio.wait_for(async_read_event(reader), 10)) is not None:
            rest.append(event.type)
        writer.close()
        return took, active, rest

    took, active, rest = run_with_door(engine, scenario, stop_grace_s=0.05)
    assert took < 1.0 and "audio-stop" not in rest  # cut off, not finished
    assert active == 0  # the cancellation reached the engine
