"""A request's work budget on the real engine (shipped default voice, onnxruntime): bounded scales, one limit
on ids, a maximum audio duration checked as soon as durations are known, per-step budgets, and text that is
never fatal because one of its sentences has nothing to say."""

from __future__ import annotations

import asyncio
import gc
import math
import threading
import time

import numpy as np
import pytest

from vitsrt.errors import BudgetError, InputError, NothingToSpeakError, TooManyIdsError
from vitsrt.sampling import SAMPLING_RANGES
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.pipeline import DecodeJob, Segment
from vitsrt.serve.engine.scheduler import Scheduler
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
from vitsrt.voices import default_voice_dir

pytest.importorskip("phonemizer", reason="the default voice speaks text through the ipa extra")

NORMAL = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."


def ids(count: int, seed: int = 0) -> PhonemeIds:
    rng = np.random.default_rng(seed)
    return PhonemeIds(phone_ids=rng.integers(1, 100, count).tolist())


@pytest.fixture(scope="module")
def engine():
    options = EngineOptions(threads=2, max_audio_seconds=60.0, max_sentence_seconds=40.0)
    with Engine.open([default_voice_dir()], options=options) as engine:
        yield engine


@pytest.mark.parametrize("field", sorted(SAMPLING_RANGES))
def test_every_scale_has_a_range_and_its_edges_are_accepted(field: str):
    low, high = SAMPLING_RANGES[field]
    for accepted in (low, high, (low + high) / 2):
        assert getattr(SynthesisRequest(text="hi", **{field: accepted}), field) == accepted
    for refused in (low - 0.01, high + 0.01, math.nan, math.inf, -math.inf, 3.4e38):
        with pytest.raises(InputError) as info:
            SynthesisRequest(text="hi", **{field: refused})
        assert info.value.field == field
        assert f"must be between {low:g} and {high:g}" in str(info.value)


@pytest.mark.parametrize("length_scale", [1e6, 1e4, 3.4e38])
def test_absurd_length_scales_are_refused_within_milliseconds(engine, length_scale: float):
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"length_scale: must be between 0\.1 and 10"):
        engine.synthesize(SynthesisRequest(phonemes=ids(5), length_scale=length_scale))
    assert time.perf_counter() - started < 0.05
    assert engine.stats()["active_streams"] == 0


def test_one_limit_on_ids_with_one_name(engine):
    limit = engine.options.max_phonemes
    assert len(engine.synthesize(SynthesisRequest(phonemes=ids(limit // 8), seed=1)).audio) > 0
    with pytest.raises(InputError) as info:
        engine.synthesize(SynthesisRequest(phonemes=ids(limit + 1)))
    assert info.value.field == "phonemes.phone_ids"
    assert f"limit of {limit}" in str(info.value)


def test_too_much_audio_fails_before_the_flow_runs_and_nothing_else_waits(engine):
    flows_before = sum(engine.stats()["batch_sizes"]["flow"].values())
    started = time.perf_counter()
    request = SynthesisRequest(phonemes=ids(engine.options.max_phonemes), length_scale=10.0, seed=3)
    with pytest.raises(BudgetError, match=r"sentence would be \d+ s of audio, over the limit of 40 s"):
        engine.synthesize(request)
    assert time.perf_counter() - started < 5.0
    assert sum(engine.stats()["batch_sizes"]["flow"].values()) == flows_before  # refused after prefill only
    assert engine.stats()["active_streams"] == 0
    assert len(engine.synthesize(SynthesisRequest(text="Still here.", seed=1)).audio) > 0


def test_the_request_total_is_checked_sentence_by_sentence(engine):
    """Each sentence fits its own limit, the request's total does not: the stream ends with BudgetError
    after the audio that fit (streams fail cleanly mid-way; nothing is left queued)."""
    text = " ".join(["This sentence is spoken slowly, one word after another, to fill the budget."] * 12)
    chunks, error = [], None
    try:
        for chunk in engine.stream(SynthesisRequest(text=text, length_scale=3.0, seed=2)):
            chunks.append(chunk)
    except BudgetError as exc:
        error = exc
    assert error is not None and "more than 60 s of audio" in str(error)
    sent = sum(len(c.audio) for c in chunks) / 16000
    assert sent <= 60.0
    assert engine.stats()["active_streams"] == 0
    assert sum(engine.stats()["queue_depths"].values()) == 0


def _live_segments() -> int:
    return sum(isinstance(o, Segment) for o in gc.get_objects())


def _wait_for_segments(count: int, timeout: float = 3.0) -> int:
    deadline = time.monotonic() + timeout
    while (live := _live_segments()) != count and time.monotonic() < deadline:
        time.sleep(0.05)  # the engine's worker may still hold its last batch for a moment
    return live


def test_finished_streams_are_freed_without_the_cycle_collector(engine):
    """A stream that ends, normally or by a budget error, as a server consumes it (`astream`), frees its
    segments and their arrays as soon as the caller drops it: nothing waits for a full collection. A reference
    cycle through the stream once kept every failed stream's arrays (~MBs each) until Python's rare full
    collections, and a repeated attack grew the server by tens of MB (tests/test_grpc_budget.py)."""

    async def consume(request: SynthesisRequest) -> BaseException | None:
        try:
            async for _ in engine.astream(request):
                pass
        except BudgetError as exc:
            return exc
        return None

    hostile = SynthesisRequest(phonemes=ids(engine.options.max_phonemes), length_scale=10.0, seed=3)
    gc.collect()
    gc.disable()  # only reference counting frees things from here on
    try:
        before = _live_segments()
        assert asyncio.run(consume(SynthesisRequest(text=NORMAL, seed=1))) is None
        assert _wait_for_segments(before) == before
        error = asyncio.run(consume(hostile))
        assert isinstance(error, BudgetError)
        del error
        assert _wait_for_segments(before) == before
    finally:
        gc.enable()


def test_a_run_of_dashes_is_dropped_not_fatal(engine):
    plain = engine.synthesize(SynthesisRequest(text="Hello world", seed=5)).audio
    dashed = engine.synthesize(SynthesisRequest(text="Hello " + "-" * 400 + " world", seed=5)).audio
    assert len(dashed) > 0.5 * len(plain)
    with pytest.raises(NothingToSpeakError, match="text: contains nothing pronounceable"):
        engine.synthesize(SynthesisRequest(text="-" * 400))
    assert engine.stats()["active_streams"] == 0


def test_a_sentence_whose_ids_pass_the_limit_is_split_not_refused(engine):
    """Numbers read out grow many-fold: 51 characters of digits are more ids than one sentence may hold."""
    text = " ".join(["987654321987"] * 4)
    with pytest.raises(TooManyIdsError):  # as one sentence it is over the limit
        engine.pipeline().frontend.from_text(text)
    assert len(engine.synthesize(SynthesisRequest(text=text, seed=1)).audio) > 0


def test_step_budgets_cut_batches_by_padded_size():
    scheduler = Scheduler(max_batch=8, max_wait_s=0.0, budgets={"prefill": 100})
    for stream, size in enumerate([60, 10, 30, 50]):
        scheduler.add_stream(stream, 0.0)
        scheduler.enqueue("prefill", size, stream, "voice", 0.0)
    taken = [scheduler.next_batch(1.0, size_of=lambda stage, item: item)[0].items for _ in range(3)]
    assert taken == [[60], [10, 30], [50]]  # 60+10 pads to 120; 10,30 pad to 60; 10,30,50 would pad to 150
    assert Scheduler(budgets=None).budgets == {}


def _first_audio_after(engine: Engine, request: SynthesisRequest) -> float:
    started = time.perf_counter()
    stream = engine.stream(request)
    next(stream)
    elapsed = time.perf_counter() - started
    stream.close()
    return elapsed


def _window_seconds(engine: Engine) -> float:
    """Wall time of one full decode window (the largest, 256 frames + context) on this machine, now."""
    pipeline = engine.pipeline()
    segments = pipeline.segments_for(SynthesisRequest(phonemes=ids(300), seed=1), 0, 1)
    pipeline.prefill(segments)
    pipeline.flow(segments)
    job = DecodeJob(segments[0], max(segments[0].windows, key=lambda w: w.end - w.start))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        pipeline.decode([job])
        times.append(time.perf_counter() - started)
    return min(times)


def _delay_by_hostile(engine: Engine, hostile: list[SynthesisRequest]) -> tuple[float, list[BaseException]]:
    """How much later a normal request's first audio comes when hostile requests were admitted just before it."""
    normal = SynthesisRequest(text=NORMAL, seed=9)
    alone = min(_first_audio_after(engine, normal) for _ in range(3))
    errors: list[BaseException] = []

    def attack(request: SynthesisRequest) -> None:
        try:
            engine.synthesize(request)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attack, args=(r,)) for r in hostile]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until all are admitted and the worker has taken a hostile prefill:
        stats = engine.stats()         # the worst moment for the normal request to arrive
        if stats["active_streams"] == len(hostile) and stats["queue_depths"]["prefill"] < len(hostile):
            break
        time.sleep(0.001)
    attacked = _first_audio_after(engine, normal)
    for thread in threads:
        thread.join(60)
    return attacked - alone, errors


def test_hostile_requests_delay_a_normal_one_by_at_most_one_window(engine):
    hostile = [SynthesisRequest(phonemes=ids(engine.options.max_phonemes, seed=s), length_scale=10.0)
               for s in range(2)]
    window = _window_seconds(engine)
    delay, errors = _delay_by_hostile(engine, hostile)
    assert [type(e) for e in errors] == [BudgetError, BudgetError]
    # One prefill step of the longest allowed sentence is the most a normal request waits for (plus noise).
    assert delay <= 1.5 * window + 0.05, f"first audio {delay * 1000:.0f} ms later; one window {window * 1000:.0f} ms"


def test_without_step_budgets_the_same_attack_delays_far_more():
    """Negative control: ids limit and budgets raised, no handicap: the hostile prefill is one 4096-id step."""
    options = EngineOptions(threads=2, max_phonemes=4096, max_sentence_seconds=1e4, max_audio_seconds=1e4,
                            long_request_handicap_ms=0)
    with Engine.open([default_voice_dir()], options=options) as loose:
        hostile = [SynthesisRequest(phonemes=ids(4096), length_scale=0.1, seed=1)]  # allowed here
        window = _window_seconds(loose)
        delay, errors = _delay_by_hostile(loose, hostile)
    assert errors == []
    assert delay > 3 * window, f"first audio {delay * 1000:.0f} ms later; one window {window * 1000:.0f} ms"
