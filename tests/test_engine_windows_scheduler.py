"""The engine's pure parts: window planning and the scheduler's choices (no model needed)."""

from __future__ import annotations

import itertools

import pytest

from vitsrt.serve.engine.scheduler import Scheduler
from vitsrt.serve.engine.windows import ONE_SHOT, WindowPolicy, plan_windows


@pytest.mark.parametrize("total", [1, 2, 15, 16, 17, 32, 33, 80, 81, 144, 145, 208, 209, 500, 2000])
def test_windows_tile_the_utterance_exactly(total):
    policy = WindowPolicy(first_frames=16, frames=64, one_shot_frames=32, max_frames=256)
    windows = plan_windows(total, context=13, policy=policy)
    assert windows[0].start == 0 and windows[-1].end == total
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
    for w in windows:
        assert 0 <= w.ctx_start <= w.start < w.end <= w.ctx_end <= total
        assert w.start - w.ctx_start == min(13, w.start) and w.ctx_end - w.end == min(13, total - w.end)
    assert [w.is_last for w in windows] == [False] * (len(windows) - 1) + [True]
    if total <= 32:
        assert len(windows) == 1
    else:
        sizes = [w.end - w.start for w in windows]
        expected = [16, 64, 128] + [256] * len(windows)
        assert sizes[:-1] == expected[: len(sizes) - 1]  # 16, then doubling from 64, capped at 256
        assert 0 < sizes[-1] <= expected[len(sizes) - 1]


@pytest.mark.parametrize("total", [17, 80, 145, 500, 2000])
@pytest.mark.parametrize("flow_frames", [1, 64, 512, 10_000])
def test_later_windows_share_flow_windows_of_bounded_size(total, flow_frames):
    policy = WindowPolicy(first_frames=16, frames=64, one_shot_frames=0, max_frames=256, flow_frames=flow_frames)
    windows = plan_windows(total, context=13, policy=policy, flow_context=30)
    first = windows[0]
    assert (first.flow_start, first.flow_end) == (0, min(total, first.end + 43))  # its own: first audio
    groups: dict[tuple[int, int], list] = {}
    for w in windows[1:]:
        groups.setdefault((w.flow_start, w.flow_end), []).append(w)
    for (flow_start, flow_end), members in groups.items():
        assert [w.index for w in members] == list(range(members[0].index, members[-1].index + 1))  # consecutive
        emitted = members[-1].end - members[0].start
        assert emitted <= flow_frames or len(members) == 1
        assert flow_start == max(0, members[0].start - 43) and flow_end == min(total, members[-1].end + 43)
        for w in members:  # the decoder's input lies inside the flow window with the whole flow context
            assert flow_start <= w.ctx_start and w.ctx_end <= flow_end
            assert w.ctx_start - flow_start >= min(30, w.ctx_start)
            assert flow_end - w.ctx_end >= min(30, total - w.ctx_end)
    if flow_frames == 10_000 and len(windows) > 1:
        assert len(groups) == 1  # one flow call for everything after the first window
    if flow_frames == 1:
        assert len(groups) == len(windows) - 1  # each window its own flow window, as before


@pytest.mark.parametrize("value", [0, -5])
def test_a_flow_window_of_no_frames_is_refused(value):
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        WindowPolicy(flow_frames=value)


def test_an_unwindowed_flow_gives_each_window_its_decoder_frames():
    for w in plan_windows(500, context=13, policy=WindowPolicy(first_frames=16, frames=64, one_shot_frames=0)):
        assert (w.flow_start, w.flow_end) == (w.ctx_start, w.ctx_end)


def test_one_shot_policy_is_a_single_window():
    assert len(plan_windows(5000, 13, ONE_SHOT)) == 1


def test_crop_selects_the_emitted_samples():
    w = plan_windows(100, context=13, policy=WindowPolicy(first_frames=16, frames=64, one_shot_frames=0))[1]
    assert (w.start, w.end, w.ctx_start, w.ctx_end) == (16, 80, 3, 93)
    assert w.crop(hop=4) == slice(13 * 4, 77 * 4)


def _next(scheduler: Scheduler, now: float, **options):
    """(step, items, wait) of the scheduler's next decision (its Batch unpacked; (None, [], wait) to wait)."""
    batch, wait = scheduler.next_batch(now, **options)
    return (batch.step, batch.items, wait) if batch is not None else (None, [], wait)


def test_new_streams_first_then_items_run_in_enqueue_order():
    s = Scheduler(max_batch=2, max_wait_s=0.0)
    s.add_stream(1, now=0.0)
    s.audio_sent(1, seconds=10.0, now=0.0)  # stream 1 is well buffered
    s.add_stream(2, now=1.0)  # stream 2 has no audio yet
    for i in range(3):
        s.enqueue("decode", ("s1", i), 1, "voice", now=1.0)
    s.enqueue("prefill", ("s2", 0), 2, "voice", now=1.0)
    stage, items, _ = _next(s, now=1.0)
    assert stage == "prefill" and items == [("s2", 0)]
    stage, items, _ = _next(s, now=1.0)
    assert stage == "decode" and items == [("s1", 0), ("s1", 1)]


def test_stream_about_to_run_dry_beats_a_new_stream():
    s = Scheduler(max_batch=4, max_wait_s=0.0, low_water_s=0.3)
    s.add_stream(1, now=0.0)
    s.audio_sent(1, seconds=1.0, now=0.0)  # 1 s of audio sent at t=0 ...
    s.add_stream(2, now=0.5)
    s.enqueue("prefill", "new", 2, "voice", now=0.9)
    s.enqueue("decode", "dry", 1, "voice", now=0.9)
    stage, items, _ = _next(s, now=0.9)  # ... at t=0.9 only 0.1 s is left in the client's buffer
    assert (stage, items) == ("decode", ["dry"])


def test_prefill_waits_for_a_fuller_batch_but_not_forever():
    s = Scheduler(max_batch=4, max_wait_s=0.010)
    s.add_stream(9, now=0.0)  # a live stream whose work runs on another lane: the engine is busy
    s.add_stream(1, now=0.0)
    s.enqueue("prefill", "a", 1, "voice", now=0.0)
    stage, items, wait = _next(s, now=0.002)
    assert stage is None and wait == pytest.approx(0.008)
    s.add_stream(2, now=0.003)
    s.enqueue("prefill", "b", 2, "voice", now=0.003)
    stage, items, _ = _next(s, now=0.011)
    assert stage == "prefill" and items == ["a", "b"]


def test_batches_never_mix_voices_and_respect_max_batch():
    s = Scheduler(max_batch=3, max_wait_s=0.0)
    for sid in range(1, 6):
        s.add_stream(sid, now=0.0)
        s.enqueue("flow", sid, sid, "alice" if sid % 2 else "bob", now=float(sid))
    stage, items, _ = _next(s, now=10.0)
    assert stage == "flow" and items == [1, 3, 5]
    stage, items, _ = _next(s, now=10.0)
    assert items == [2, 4]


def test_cancel_removes_a_stream_from_every_queue():
    s = Scheduler()
    s.add_stream(7, now=0.0)
    s.add_stream(8, now=0.0)
    for stage in ("prefill", "flow", "decode"):
        s.enqueue(stage, f"{stage}-7", 7, "v", now=0.0)
        s.enqueue(stage, f"{stage}-8", 8, "v", now=0.0)
    assert s.remove_stream(7) == 3
    assert s.depths() == {"prefill": 1, "flow": 1, "decode": 1}
    s.enqueue("decode", "late", 7, "v", now=0.0)  # work finishing for a cancelled stream is dropped
    assert s.depth("decode") == 1


def test_decode_batches_group_equal_window_sizes():
    s = Scheduler(max_batch=4, max_wait_s=0.0)
    s.add_stream(1, now=0.0)
    for size in (29, 90, 29, 90):
        s.enqueue("decode", size, 1, "v", now=0.0)
    _, items, _ = _next(s, now=0.0, size_of=lambda stage, item: item)
    assert items == [29, 29]  # the longer windows are not padded onto the short ones
