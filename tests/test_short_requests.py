"""Per-request overhead of short requests: a request alone in the engine starts its prefill at once (the batch wait
is for a busy engine, where partners arrive), while a busy engine still waits for a fuller prefill batch."""

from __future__ import annotations

import time

import pytest

from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.scheduler import Scheduler
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest


def test_a_lone_request_does_not_wait_for_batch_partners():
    s = Scheduler(max_batch=4, max_wait_s=10.0)
    s.add_stream(1, now=0.0)
    s.enqueue("prefill", "a", 1, "voice", now=0.0)
    batch, wait = s.next_batch(now=0.001)
    assert wait is None and batch is not None and (batch.step, batch.items) == ("prefill", ["a"])


def test_a_busy_engine_still_waits_for_a_fuller_prefill_batch():
    """Control: the same queue with another live stream (its work on another lane) waits for partners."""
    s = Scheduler(max_batch=4, max_wait_s=10.0)
    s.add_stream(1, now=0.0)
    s.add_stream(2, now=0.0)
    s.enqueue("prefill", "a", 1, "voice", now=0.0)
    batch, wait = s.next_batch(now=0.001)
    assert batch is None and wait == pytest.approx(9.999)
    s.enqueue("prefill", "b", 2, "voice", now=0.002)  # every live stream is queued now: nobody else to wait for
    batch, wait = s.next_batch(now=0.003)
    assert batch is not None and batch.items == ["a", "b"]


def test_a_lone_short_request_is_served_without_the_batch_wait(fixture_voice):
    """With a batch wait far longer than the synthesis, a lone request still finishes long before it would end."""
    options = EngineOptions(max_wait_ms=20_000.0, threads=1, lanes=1)
    request = SynthesisRequest(phonemes=PhonemeIds(phone_ids=[0, 5, 0, 9, 0, 14, 0], tone_ids=[0] * 7,
                                                   language_ids=[0] * 7), seed=3)
    with Engine.open([fixture_voice], options=options) as engine:
        engine.synthesize(request)  # warm-up
        started = time.perf_counter()
        audio = engine.synthesize(request).audio
        elapsed = time.perf_counter() - started
    assert len(audio) > 0 and elapsed < 10.0, elapsed
