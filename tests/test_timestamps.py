"""Word and phoneme timestamps (SynthesisRequest.timestamps) on the real engine with the default voice, and on
the real gRPC server and HTTP door around it.

The reference is the engine's own durations: `pipeline.prefill` on the same request and seed gives each
sentence's durations (integers: they do not depend on batch partners), and phoneme i of sentence s must span
[cumsum[i-1] * hop, cumsum[i] * hop) plus the samples of the sentences before s, exactly.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from http_support import RunningDoor
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.timestamps import rescale
from vitsrt.serve.engine.types import PhonemeIds, PhonemeTimestamp, SynthesisRequest, WordTimestamp
from vitsrt.voices import default_voice_dir

pytest.importorskip("phonemizer", reason="the default voice speaks text through the ipa extra")

TWO = "The little boat is near the old bridge. It will leave at noon."
SEED = 11


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with Engine.open([default_voice_dir()], options=EngineOptions(threads=1, max_wait_ms=2.0)) as opened:
        yield opened


def expected_spans(engine: Engine, request: SynthesisRequest) -> tuple[list[tuple[int, int]], list[int]]:
    """Every id's (start, end) from the engine's own prefill, and each sentence's first sample."""
    pipeline = engine.pipeline(request.voice)
    segments = pipeline.segments_for(request, 1, request.seed)
    pipeline.prefill(segments)
    spans, starts, offset = [], [], 0
    for segment in segments:
        ends = np.cumsum(segment.durations) * pipeline.hop
        starts.append(offset)
        spans += [(offset + int(end - d * pipeline.hop), offset + int(end))
                  for d, end in zip(segment.durations, ends, strict=True)]
        offset += segment.frames * pipeline.hop
    return spans, starts


def spoken(symbol: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LM" for ch in symbol)


def check_words(words: list[WordTimestamp], phonemes: list[PhonemeTimestamp], total: int) -> None:
    """Words are ordered, disjoint and inside the audio; they start and end on phoneme boundaries; and they
    cover the speech: every phoneme with a pronounceable symbol lies inside a word, and every phoneme between
    two words (or before the first, after the last) is a blank, a marker, a space or a pause mark."""
    assert words and words[0].start_sample >= 0 and words[-1].end_sample <= total
    for word in words:
        assert word.start_sample < word.end_sample, word
    for before, after in itertools.pairwise(words):
        assert before.end_sample <= after.start_sample, (before, after)
    boundaries = {p.start_sample for p in phonemes} | {p.end_sample for p in phonemes}
    assert all(w.start_sample in boundaries and w.end_sample in boundaries for w in words)
    for phoneme in phonemes:
        inside = any(w.start_sample <= phoneme.start_sample and phoneme.end_sample <= w.end_sample for w in words)
        if spoken(phoneme.symbol) and phoneme.end_sample > phoneme.start_sample:
            assert inside, f"speech outside every word: {phoneme}"
        if not inside:
            assert not spoken(phoneme.symbol), phoneme


def check_stream(engine: Engine, request: SynthesisRequest, chunks: list[Any], words: list[WordTimestamp],
                 phonemes: list[PhonemeTimestamp]) -> list[int]:
    """Phoneme spans equal the engine's durations times the hop exactly; words as in `check_words`; returns
    each sentence's first sample."""
    spans, starts = expected_spans(engine, request)
    assert [(p.start_sample, p.end_sample) for p in phonemes] == spans
    total = sum(len(c.audio) for c in chunks)
    assert spans[-1][1] == total  # the phonemes tile the audio
    check_words(words, phonemes, total)
    return starts


def collect(chunks: list[Any]) -> tuple[list[WordTimestamp], list[PhonemeTimestamp]]:
    return [w for c in chunks for w in c.words], [p for c in chunks for p in c.phonemes]


# --- the engine and the Python API -----------------------------------------------------------------------------


def test_spans_are_the_durations_and_words_cover_the_speech(engine):
    request = SynthesisRequest(text=TWO, seed=SEED, timestamps=True)
    chunks = list(engine.stream(request))
    words, phonemes = collect(chunks)
    starts = check_stream(engine, request, chunks, words, phonemes)
    assert " ".join(w.text for w in words) == "The little boat is near the old bridge It will leave at noon"
    # Two sentences, continuous: sentence 2's words come after sentence 1's and after its audio.
    second = [w for c in chunks if c.sentence_index == 1 for w in c.words]
    assert len(starts) == 2 and second[0].text == "It"
    assert second[0].start_sample >= starts[1] > words[words.index(second[0]) - 1].end_sample
    # Each chunk carries the spans that start inside it.
    at = 0
    for chunk in chunks:
        for span in [*chunk.words, *chunk.phonemes]:
            assert at <= span.start_sample < at + len(chunk.audio) or span.start_sample == span.end_sample
        at += len(chunk.audio)
    # The one-shot call reports the same spans (and off by default: no spans).
    result = engine.synthesize(request)
    assert (result.words, result.phonemes) == (words, phonemes)
    assert collect(list(engine.stream(SynthesisRequest(text=TWO, seed=SEED)))) == ([], [])


def test_negative_control_wrong_offsets_fail_the_checks(engine):
    request = SynthesisRequest(text=TWO, seed=SEED, timestamps=True)
    chunks = list(engine.stream(request))
    words, phonemes = collect(chunks)
    first_sentence = sum(len(c.audio) for c in chunks if c.sentence_index == 0)

    def unshifted(span):  # sentence 2's spans as if its offset were forgotten
        if span.start_sample < first_sentence:
            return span
        return replace(span, start_sample=span.start_sample - first_sentence,
                       end_sample=span.end_sample - first_sentence)

    with pytest.raises(AssertionError):
        check_stream(engine, request, chunks, words, [unshifted(p) for p in phonemes])
    with pytest.raises(AssertionError):
        check_words([unshifted(w) for w in words], phonemes, first_sentence * 2)
    last = words[-1]  # a last word cut after its first phoneme leaves the rest of its speech outside any word
    first_phoneme = next(p for p in phonemes if p.start_sample == last.start_sample)
    with pytest.raises(AssertionError, match="speech outside every word"):
        check_words([*words[:-1], replace(last, end_sample=first_phoneme.end_sample)], phonemes, first_sentence * 2)


def test_speed_two_halves_the_spans(engine):
    slow = SynthesisRequest(text=TWO, seed=SEED, timestamps=True)
    fast = SynthesisRequest(text=TWO, seed=SEED, timestamps=True, length_scale=0.5)
    slow_chunks, fast_chunks = list(engine.stream(slow)), list(engine.stream(fast))
    slow_words, _ = collect(slow_chunks)
    fast_words, fast_phonemes = collect(fast_chunks)
    check_stream(engine, fast, fast_chunks, fast_words, fast_phonemes)
    assert [w.text for w in fast_words] == [w.text for w in slow_words]
    ratio = fast_words[-1].end_sample / slow_words[-1].end_sample
    assert 0.4 < ratio < 0.6, ratio  # durations round up per phoneme: about half, exactly the engine's own


def test_ids_input_gets_phonemes_only(engine):
    phone_ids = engine.pipeline().frontend.from_text("Hello there.").phone_ids.tolist()
    request = SynthesisRequest(phonemes=PhonemeIds(phone_ids=phone_ids), seed=SEED, timestamps=True)
    chunks = list(engine.stream(request))
    words, phonemes = collect(chunks)
    assert words == [] and [p.id for p in phonemes] == phone_ids and {p.symbol for p in phonemes} == {""}
    spans, _ = expected_spans(engine, request)
    assert [(p.start_sample, p.end_sample) for p in phonemes] == spans


def test_rescale_keeps_boundaries_shared():
    spans = [PhonemeTimestamp(1, "a", 0, 256), PhonemeTimestamp(2, "b", 256, 768)]
    assert rescale(spans, 16000, 24000) == [PhonemeTimestamp(1, "a", 0, 384), PhonemeTimestamp(2, "b", 384, 1152)]
    assert rescale([WordTimestamp("x", 1, 3)], 16000, 8000) == [WordTimestamp("x", 1, 2)]  # halves round up


# --- the doors -------------------------------------------------------------------------------------------------


def test_grpc_stream_carries_the_spans(engine):
    from grpc_support import RunningServer
    from vitsrt.serve.grpc.client import TtsClient, build_request
    from vitsrt.serve.grpc.server import ServerConfig

    request = SynthesisRequest(text=TWO, seed=SEED, timestamps=True)
    words, phonemes = collect(list(engine.stream(request)))
    with RunningServer(engine, ServerConfig(port=0)) as server, TtsClient(server.target, timeout=60) as client:
        message = build_request(TWO, seed=SEED)
        message.timestamps = True
        received = client.call_streaming(message)
        message.sample_rate = 24000
        resampled = client.call_streaming(message)
        message.ClearField("timestamps")
        plain = client.call_streaming(message)
    assert [(w.text, w.start_sample, w.end_sample) for w in received.words] == [
        (w.text, w.start_sample, w.end_sample) for w in words]
    assert [(p.id, p.symbol, p.start_sample, p.end_sample) for p in received.phonemes] == [
        (p.id, p.symbol, p.start_sample, p.end_sample) for p in phonemes]
    assert received.samples.size == phonemes[-1].end_sample
    assert [(w.start_sample, w.end_sample) for w in resampled.words] == [
        (w.start_sample, w.end_sample) for w in rescale(words, 16000, 24000)]
    assert abs(resampled.samples.size - resampled.phonemes[-1].end_sample) <= 2
    assert plain.words == [] and plain.phonemes == []


def test_http_sse_sends_timestamp_events(engine):
    httpx = pytest.importorskip("httpx")

    door = RunningDoor(engine)
    try:
        url = f"{door.url}/v1/audio/speech"
        body = {"model": "tts-1", "voice": "slt", "input": TWO, "response_format": "pcm", "seed": SEED,
                "stream_format": "sse", "timestamps": True}
        reply = httpx.post(url, json=body, timeout=60)
        refused = httpx.post(url, json={**body, "stream_format": "audio"}, timeout=60)
    finally:
        door.close()
    assert reply.status_code == 200, reply.text
    events = [json.loads(line[len("data: "):]) for line in reply.text.split("\n\n") if line.startswith("data: ")]
    spans = [e for e in events if e["type"] == "speech.timestamps"]
    assert spans and events.index(spans[0]) < [e["type"] for e in events].index("speech.audio.delta")
    words, phonemes = collect(list(engine.stream(SynthesisRequest(text=TWO, seed=SEED, speaker="slt",
                                                                   timestamps=True))))
    assert [w for e in spans for w in e["words"]] == [
        {"text": w.text, "start_sample": w.start_sample, "end_sample": w.end_sample} for w in words]
    assert [p["end_sample"] for e in spans for p in e["phonemes"]] == [p.end_sample for p in phonemes]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "timestamps"
