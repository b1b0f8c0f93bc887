"""The benchmark's arithmetic and load shapes, on synthetic timings and a fake target (no model, fast)."""

from __future__ import annotations

import asyncio

import pytest

from vitsrt.benchmarks.load import LoadLevel, RunAborted, run_level
from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming, playback_underruns, stats, summarize
from vitsrt.benchmarks.report import compare_rows, level_rows, markdown_table
from vitsrt.benchmarks.schema import BenchReport, Environment, TargetInfo, WorkloadInfo
from vitsrt.benchmarks.workload import (
    LONG,
    MEDIUM,
    SENTENCE_20_WORDS,
    SENTENCE_60_WORDS,
    SHORT,
    IdsSpec,
    Workload,
    derive_phonemes,
    load_texts,
)
from vitsrt.errors import InputError

# ----- playback underruns -------------------------------------------------------------------------


def test_chunks_arriving_in_time_never_underrun():
    # 0.5 s chunks, each arriving 0.4 s after the previous: the buffer only grows.
    arrivals = [0.1 + 0.4 * k for k in range(6)]
    assert playback_underruns(arrivals, [0.5] * 6) == (0, 0.0)


def test_late_chunk_is_one_underrun_and_playback_resumes_from_it():
    # First chunk plays 1.0-1.2; the second arrives at 1.5 (0.3 s stall), then plays to 2.5; the third
    # arrives at 2.4, in time for the resumed clock (a naive "sum of durations" clock would call it late).
    count, stall = playback_underruns([1.0, 1.5, 2.4], [0.2, 1.0, 0.5])
    assert count == 1
    assert stall == pytest.approx(0.3)


def test_negative_control_every_chunk_late_counts_each():
    count, stall = playback_underruns([0.0, 1.0, 2.0, 3.0], [0.1, 0.1, 0.1, 0.1])
    assert count == 3
    assert stall == pytest.approx(2.7)


def test_empty_chunks_neither_start_playback_nor_underrun():
    assert playback_underruns([0.5, 0.6, 5.0], [0.0, 1.0, 0.0]) == (0, 0.0)


# ----- statistics and summaries -------------------------------------------------------------------


def test_stats_percentiles_and_scaling():
    s = stats([float(v) for v in range(1, 101)], scale=1000.0)
    assert s.count == 100
    assert s.p50 == pytest.approx(50_500.0)
    assert s.p99 == pytest.approx(99_010.0)
    assert s.min == 1000.0 and s.max == 100_000.0
    assert stats([]).count == 0 and stats([]).p50 is None


def _timing(sent: float, chunks: list[tuple[float, float]], error: str | None = None) -> RequestTiming:
    t = RequestTiming(sent_at=sent)
    if error:
        t.error = error
        t.latency_s = 0.05
        return t
    for arrived, seconds in chunks:
        t.add_chunk(arrived, seconds)
    t.latency_s = chunks[-1][0]
    return t


def test_summarize_counts_throughput_ttfa_and_errors():
    timings = [
        _timing(0.0, [(0.2, 0.5), (0.5, 1.5)]),  # ok, no underrun (0.2+0.5 >= 0.5)
        _timing(1.0, [(0.1, 0.1), (0.9, 0.9)]),  # ok, one underrun (0.1+0.1 < 0.9)
        _timing(1.5, [], error="OverloadedError: overloaded"),
    ]
    level = summarize(timings, mode="closed", concurrency=2)
    assert (level.requests, level.ok, level.errors) == (3, 2, 1)
    assert level.error_samples == ["OverloadedError: overloaded"]
    assert level.wall_s == pytest.approx(1.9)  # first sent at 0.0, last finished at 1.0 + 0.9
    assert level.audio_s == pytest.approx(3.0)
    assert level.rtfx == pytest.approx(3.0 / 1.9)
    assert level.requests_per_s == pytest.approx(2 / 1.9)
    assert level.ttfa_ms.count == 2 and level.ttfa_ms.min == pytest.approx(100.0)
    assert level.latency_ms.max == pytest.approx(900.0)
    assert level.underruns == 1 and level.underrun_requests == 1
    assert level.inter_chunk_gap_ms.max == pytest.approx(800.0)
    assert level.rtf.min == pytest.approx(0.5 / 2.0)
    assert level.stages is None and level.batch_sizes == {}


def test_engine_counters_difference_is_the_levels_share():
    before = EngineCounters({"decode": 1.0, "flow": 0.5}, {"decode": {1: 3, 8: 1}, "flow": {1: 2}})
    after = EngineCounters({"decode": 4.0, "flow": 0.5}, {"decode": {1: 3, 4: 2, 8: 3}, "flow": {1: 2}})
    delta = after.since(before)
    assert delta.stage_seconds == {"decode": 3.0, "flow": 0.0}
    assert delta.batch_sizes == {"decode": {4: 2, 8: 2}, "flow": {}}
    level = summarize([_timing(0.0, [(1.0, 2.0)])], mode="closed", concurrency=1, counters=delta)
    assert level.batch_sizes == {"decode": {"4": 2, "8": 2}, "flow": {}}
    assert level.stages is not None and level.stages.worker_busy_fraction == pytest.approx(3.0)


# ----- workload -----------------------------------------------------------------------------------


def test_builtin_sentences_have_their_advertised_lengths():
    assert all(6 <= len(s.split()) <= 10 for s in SHORT)
    assert all(15 <= len(s.split()) <= 25 for s in MEDIUM)
    assert all(55 <= len(s.split()) <= 70 for s in LONG)
    assert 18 <= len(SENTENCE_20_WORDS.split()) <= 22
    assert 55 <= len(SENTENCE_60_WORDS.split()) <= 65


def test_stand_in_ids_are_deterministic_in_range_and_track_length():
    from vitsrt.text.bv2 import standard_symbols

    spec = IdsSpec(112, True, 0, tuple(standard_symbols()))
    a, b = derive_phonemes(SENTENCE_20_WORDS, spec), derive_phonemes(SENTENCE_20_WORDS, spec)
    assert a == b
    assert all(0 <= i < 112 for i in a.phone_ids)
    assert a.phone_ids[0::2] == [0] * (len(a.phone_ids) // 2 + 1)  # blanks interspersed
    assert len(a.phone_ids) == len(a.tone_ids) == len(a.language_ids)
    long = derive_phonemes(SENTENCE_60_WORDS, spec)
    assert len(long.phone_ids) > 2.5 * len(a.phone_ids)
    # Negative control: another text gives other ids; no blanks gives about half the length.
    assert derive_phonemes(MEDIUM[1], spec).phone_ids != a.phone_ids
    plain = derive_phonemes(SENTENCE_20_WORDS, IdsSpec(112, False, 0, None))
    assert len(plain.phone_ids) == (len(a.phone_ids) - 1) // 2
    assert all(0 <= i < 7 for i in derive_phonemes(SENTENCE_20_WORDS, IdsSpec(7, False, 0, None)).phone_ids)


def test_workload_cycles_and_texts_file_errors(tmp_path):
    w = Workload(["one two", "three"], None)
    assert w.item(0).text == "one two" and w.item(3).text == "three" and w.item(3).phonemes is None
    path = tmp_path / "t.txt"
    path.write_text("# comment\n\nHello there.\n  Second line  \n")
    assert load_texts(path) == ["Hello there.", "Second line"]
    path.write_text("# only a comment\n")
    with pytest.raises(InputError, match="holds no text"):
        load_texts(path)
    with pytest.raises(InputError, match="cannot read"):
        load_texts(tmp_path / "missing.txt")


# ----- load shapes on a fake target -----------------------------------------------------------------


class FakeTarget:
    """Sleeps a fixed time per request and records what it was asked; fails requests when told to."""

    kind = "fake"

    def __init__(self, fail: bool = False, delay: float = 0.01):
        self.fail = fail
        self.delay = delay
        self.calls: list[tuple[int, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def open(self) -> None:
        return None

    def ids_spec(self):
        return None

    async def run(self, item, seed):
        self.calls.append((item.index, seed))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        timing = RequestTiming(sent_at=asyncio.get_running_loop().time())
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        if self.fail:
            timing.error = "boom"
        else:
            timing.add_chunk(self.delay, 1.0)
        timing.latency_s = self.delay
        return timing

    def counters(self):
        return None

    def info(self):
        return TargetInfo(kind="fake", label="fake", stream=True)

    def versions(self):
        return {}

    async def close(self) -> None:
        return None


def test_closed_loop_runs_exactly_n_measured_requests_at_the_given_concurrency():
    target = FakeTarget()
    workload = Workload(["a", "b", "c"], None)
    ran = asyncio.run(run_level(target, workload, LoadLevel("closed", concurrency=3), requests=7, duration_s=None,
                                warmup=2, seed=100))
    assert len(ran.timings) == 7
    measured = target.calls[2:]
    assert sorted(measured) == sorted((k % 3, 100 + k) for k in range(7))  # item k, seed seed+k
    assert all(seed >= 1 << 40 for _, seed in target.calls[:2])  # warm-up seeds are separate
    assert target.max_in_flight == 3


def test_open_loop_sends_requests_without_waiting_for_answers():
    target = FakeTarget(delay=0.2)
    ran = asyncio.run(run_level(target, Workload(["a"], None), LoadLevel("open", rate=200.0), requests=10,
                                duration_s=None, warmup=0, seed=1))
    assert len(ran.timings) == 10
    assert target.max_in_flight > 3  # 200/s arrivals against 0.2 s requests overlap


def test_a_level_where_every_request_fails_aborts_the_run():
    with pytest.raises(RunAborted, match=r"all 3 requests failed.*boom"):
        asyncio.run(run_level(FakeTarget(fail=True), Workload(["a"], None), LoadLevel("closed", concurrency=1),
                              requests=3, duration_s=None, warmup=0, seed=0))


# ----- comparison --------------------------------------------------------------------------------


def _report(label: str, ttfa: float, rtfx: float) -> BenchReport:
    level = summarize([_timing(0.0, [(ttfa, rtfx)])], mode="closed", concurrency=1)
    return BenchReport(
        created="2026-01-01T00:00:00+00:00", command="x", target=TargetInfo(kind="fake", label=label, stream=False),
        environment=Environment(cpu="cpu", cpu_cores=2, platform="p", python="3"),
        workload=WorkloadInfo(source="s", texts=1, words_min=1, words_max=1, words_mean=1, stand_in_ids=False,
                              seed=0, warmup=0),
        levels=[level],
    )


def test_compare_ratios_read_as_times_better_whatever_the_direction():
    base, fast = _report("base", ttfa=2.0, rtfx=1.0), _report("fast", ttfa=1.0, rtfx=1.0)
    headers, rows = compare_rows([base, fast])
    assert headers[-1] == "fast vs base"
    by_metric = {row[1]: row[-1] for row in rows}
    assert by_metric["TTFA p50 ms"] == "2.00x"  # half the latency: 2x better
    # audio 1 s in 1 s (base) vs 1 s in 2 s... here fast finished in 1.0 s: throughput 1.0 vs 0.5
    assert by_metric["RTFX (audio s / wall s)"] == "2.00x"
    # Negative control: swapping the baseline inverts the ratios.
    swapped = {row[1]: row[-1] for row in compare_rows([fast, base])[1]}
    assert swapped["TTFA p50 ms"] == "0.50x"
    table = markdown_table(*level_rows(base.levels))
    assert table.startswith("| load | ok/err | TTFA p50 |") and "| c=1 | 1/0 |" in table


def test_an_empty_closing_chunk_does_not_count_as_audio():
    t = RequestTiming(sent_at=0.0)
    for arrived, seconds in ((0.1, 0.5), (0.3, 0.5), (0.35, 0.0)):
        t.add_chunk(arrived, seconds)
    t.finish()
    assert t.latency_s == pytest.approx(0.3) and t.first_audio_s == pytest.approx(0.1)
    level = summarize([t], mode="closed", concurrency=1)
    assert level.chunks_per_request == 2 and level.inter_chunk_gap_ms.max == pytest.approx(200.0)
