"""The engine over real exported voices and real onnxruntime sessions: exact streaming, batch invariance
across concurrent streams, seeded reproducibility, bad input, cancellation and overload."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vitsrt.errors import InputError, NotFoundError, OverloadedError
from vitsrt.serve.backends.onnxruntime_backend import OnnxRuntimeBackend
from vitsrt.serve.engine.engine import Engine, EngineOptions
from vitsrt.serve.engine.pipeline import DecodeJob, VoicePipeline
from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
from vitsrt.serve.engine.windows import ONE_SHOT, WindowPolicy, plan_windows
from vitsrt.voice import load_voice

STREAM_LENGTHS = [1, 2, 13, 16, 17, 31, 32, 33, 80, 81, 144, 145, 300]


def zh_ids(tokens: int, seed: int) -> PhonemeIds:
    """Blank-interspersed ids like the fixture's 'zh' pattern (tokens includes the blanks)."""
    rng = np.random.default_rng(seed)
    phones = [0 if i % 2 == 0 else int(rng.integers(1, 112)) for i in range(tokens)]
    tones = [0 if i % 2 == 0 else int(rng.integers(1, 6)) for i in range(tokens)]
    return PhonemeIds(phone_ids=phones, tone_ids=tones, language_ids=[0] * tokens)


def ids_request(tokens: int, seed: int, **kwargs) -> SynthesisRequest:
    return SynthesisRequest(phonemes=zh_ids(tokens, seed), seed=seed, **kwargs)


@pytest.fixture(scope="module")
def engine(fixture_voice):
    options = EngineOptions(max_batch=8, max_wait_ms=2.0, threads=1, max_active_streams=32)
    with Engine.open([fixture_voice], options=options) as engine:
        yield engine


def _pipeline(voice_dir) -> VoicePipeline:
    voice = load_voice(voice_dir)
    return VoicePipeline(voice, OnnxRuntimeBackend(voice, intra_op_threads=1))


def _segment_with_latent(pipeline: VoicePipeline, frames: int, seed: int):
    """A segment whose z is random noise of the given length (decode is what is under test)."""
    request_ids = SynthesisRequest(phonemes=PhonemeIds(phone_ids=[0, 5, 0]), seed=seed)
    segment = pipeline.segments_for(request_ids, stream_id=seed, seed=seed)[0]
    pipeline.prefill([segment])
    segment.z = np.random.default_rng(seed).standard_normal((pipeline.channels, frames)).astype(np.float32)
    segment.frames = frames
    return segment


def _streamed(pipeline: VoicePipeline, segment, context: int, batched: bool) -> np.ndarray:
    windows = plan_windows(segment.frames, context, WindowPolicy(first_frames=16, frames=64, one_shot_frames=0))
    jobs = [DecodeJob(segment, w) for w in windows]
    pieces = pipeline.decode(jobs) if batched else [pipeline.decode([job])[0] for job in jobs]
    return np.concatenate(pieces)


@pytest.mark.parametrize("voice_fixture", ["fixture_voice", "small_22k_voice", "default_size_voice"])
def test_streamed_windows_equal_one_shot_decode(request, voice_fixture):
    pipeline = _pipeline(request.getfixturevalue(voice_fixture))
    lengths = STREAM_LENGTHS if voice_fixture != "default_size_voice" else [1, 81, 145]
    worst = 0.0
    for frames in lengths:
        segment = _segment_with_latent(pipeline, frames, seed=frames)
        one_shot = pipeline.decode([DecodeJob(segment, plan_windows(frames, pipeline.context, ONE_SHOT)[0])])[0]
        assert one_shot.shape == (frames * pipeline.hop,)
        assert np.abs(one_shot).max() > 1e-3  # the decoder responds to z (not a constant)
        for batched in (False, True):
            streamed = _streamed(pipeline, segment, pipeline.context, batched)
            worst = max(worst, float(np.abs(streamed - one_shot).max()))
    assert worst <= 1e-5, worst


def test_streaming_with_one_frame_less_context_fails(small_22k_voice):
    """Negative control: C-1 frames of context is not enough (resblock-2 layout; C = 11 for its kernels)."""
    pipeline = _pipeline(small_22k_voice)
    assert pipeline.context == 11
    segment = _segment_with_latent(pipeline, 145, seed=1)
    one_shot = pipeline.decode([DecodeJob(segment, plan_windows(145, pipeline.context, ONE_SHOT)[0])])[0]
    exact = _streamed(pipeline, segment, pipeline.context, batched=True)
    short = _streamed(pipeline, segment, pipeline.context - 1, batched=True)
    assert np.abs(exact - one_shot).max() <= 1e-5
    assert np.abs(short - one_shot).max() > 1e-5


def test_stream_equals_synthesize_and_has_several_chunks(engine):
    req = ids_request(121, seed=11)
    chunks = list(engine.stream(req))
    one_shot = engine.synthesize(req).audio
    streamed = np.concatenate([c.audio for c in chunks])
    assert len(chunks) > 1 and chunks[-1].is_last and [c.index for c in chunks] == list(range(len(chunks)))
    assert {"frontend", "encoder", "duration", "regulator", "flow", "decode"} <= set(chunks[-1].timings)
    assert all(c.timings is None for c in chunks[:-1])
    assert streamed.shape == one_shot.shape
    assert np.abs(streamed - one_shot).max() <= 1e-5


def test_concurrent_streams_equal_solo_runs(engine):
    lengths = [5, 17, 33, 60, 9, 101, 48, 77]
    requests = [
        ids_request(n, 100 + i, sdp_ratio=0.3, noise_scale=0.5, noise_scale_w=0.6, speaker=("alice", "bob")[i % 2])
        for i, n in enumerate(lengths)
    ]
    solo = [np.concatenate([c.audio for c in engine.stream(r)]) for r in requests]
    before = engine.stats()["batch_sizes"]
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(requests))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = np.concatenate([c.audio for c in engine.stream(requests[i])])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = engine.stats()["batch_sizes"]
    for i, expected in enumerate(solo):
        assert results[i].shape == expected.shape
        assert np.abs(results[i] - expected).max() <= 1e-4, i
    # batching really happened: some step ran with more than one item during the concurrent phase
    grew = any(
        count > before[stage].get(size, 0) for stage in after for size, count in after[stage].items() if size > 1
    )
    assert grew, after


def test_same_seed_is_bit_identical_under_concurrent_load(engine):
    target = ids_request(70, seed=4242, sdp_ratio=0.5, noise_scale=0.667, noise_scale_w=0.8)
    alone = np.concatenate([c.audio for c in engine.stream(target)])
    others = [ids_request(30 + 7 * i, seed=i, noise_scale=0.667) for i in range(6)]
    noise_threads = [threading.Thread(target=lambda r=r: list(engine.stream(r))) for r in others]
    for t in noise_threads:
        t.start()
    loaded = np.concatenate([c.audio for c in engine.stream(target)])
    for t in noise_threads:
        t.join(timeout=120)
    assert np.array_equal(alone, loaded)
    different_seed = np.concatenate([c.audio for c in engine.stream(target.model_copy(update={"seed": 4243}))])
    assert not np.array_equal(alone[: len(different_seed)], different_seed[: len(alone)])


@pytest.mark.parametrize(
    ("make", "error", "field"),
    [
        (lambda: SynthesisRequest(text=""), InputError, "text"),
        (lambda: SynthesisRequest(text="hello"), InputError, "text"),  # ids-only voice
        (lambda: SynthesisRequest(phonemes=PhonemeIds(phone_ids=[])), InputError, "phonemes.phone_ids"),
        (lambda: SynthesisRequest(phonemes=PhonemeIds(phone_ids=[0, 500, 0])), InputError, "phonemes.phone_ids"),
        (lambda: SynthesisRequest(phonemes=PhonemeIds(phone_ids=[1, 2], tone_ids=[1])), InputError,
         "phonemes.tone_ids"),
        (lambda: SynthesisRequest(phonemes=PhonemeIds(phone_ids=[1] * 6000)), InputError, "phonemes.phone_ids"),
        (lambda: ids_request(5, 1, speaker="carol"), NotFoundError, None),
        (lambda: ids_request(5, 1, voice="nobody"), NotFoundError, None),
    ],
)
def test_bad_requests_raise_clearly_and_engine_keeps_serving(engine, make, error, field):
    with pytest.raises(error) as info:
        engine.synthesize(make())
    if field is not None:
        assert info.value.field == field
    assert len(engine.synthesize(ids_request(9, seed=3)).audio) > 0
    assert engine.stats()["active_streams"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("noise_scale", float("nan")), ("length_scale", -1.0), ("length_scale", 0.0), ("sdp_ratio", 2.0),
     ("noise_scale_w", float("inf"))],
)
def test_bad_scales_name_the_field(field, value):
    with pytest.raises(InputError) as info:
        SynthesisRequest(phonemes=PhonemeIds(phone_ids=[1]), **{field: value})
    assert info.value.field == field


def test_cancel_mid_stream_frees_every_queue(engine):
    iterator = engine.stream(ids_request(301, seed=8))
    first = next(iterator)
    assert first.index == 0 and len(first.audio) > 0
    iterator.close()
    stats = engine.stats()
    assert stats["active_streams"] == 0 and sum(stats["queue_depths"].values()) == 0
    assert len(engine.synthesize(ids_request(9, seed=3)).audio) > 0


def test_over_capacity_is_refused(fixture_voice):
    with Engine.open([fixture_voice], options=EngineOptions(max_active_streams=1, threads=1)) as small:
        held = small.stream(ids_request(301, seed=1))
        next(held)  # the first stream is active and unfinished
        with pytest.raises(OverloadedError):
            small.synthesize(ids_request(5, seed=2))
        held.close()
        assert len(small.synthesize(ids_request(5, seed=2)).audio) > 0


def test_text_through_the_ipa_front_end(ipa_voice):
    """Text -> sentences -> espeak-ng phonemes -> ids -> audio, streamed and one-shot."""
    text = "Dr. Smith arrived at 10:30. He paid 3.14 dollars! Was it enough?"
    with Engine.open([ipa_voice], options=EngineOptions(threads=1)) as engine:
        info = engine.voices["ipa-en"]
        assert info.frontend == "ipa" and "en-us" in info.languages
        req = SynthesisRequest(text=text, seed=5)
        chunks = list(engine.stream(req))
        assert sorted({c.sentence_index for c in chunks}) == [0, 1, 2]  # three sentences, in order
        streamed = np.concatenate([c.audio for c in chunks])
        one_shot = engine.synthesize(req).audio
        assert streamed.shape == one_shot.shape and np.abs(streamed - one_shot).max() <= 1e-5
        with pytest.raises(InputError) as info_error:
            engine.synthesize(SynthesisRequest(text=text, language="tlh"))
        assert info_error.value.field == "language"
        with pytest.raises(InputError) as too_long:
            engine.synthesize(SynthesisRequest(text="word " * 2000))
        assert too_long.value.field == "text"
