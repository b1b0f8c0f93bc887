"""Per-request timings and what a load level's worth of them adds up to.

Definitions (the same for every target, so numbers from different targets line up):
- time to first audio (TTFA): request sent -> first chunk with audio received. One-shot: = total latency.
- latency: request sent -> last audio received.
- RTF (real-time factor) per request: latency / audio duration.
- RTFX (aggregate throughput): audio seconds of all successful requests / wall seconds of the level.
- underrun: a client starts playing at the first chunk; a chunk is an underrun when it arrives after
  everything received before it has finished playing. Playback then stalls until it arrives and resumes
  (so one slow chunk counts once, and later chunks are judged against the resumed clock).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vitsrt.benchmarks.schema import LevelResult, StageBreakdown, Stats

PERCENTILES = (50, 90, 95, 99)


@dataclass
class RequestTiming:
    """What one request did, as seen by the client. Times are seconds since the request was sent."""

    sent_at: float  # absolute time.perf_counter() when sent
    first_audio_s: float | None = None
    latency_s: float | None = None
    chunk_arrivals_s: list[float] = field(default_factory=list)
    chunk_audio_s: list[float] = field(default_factory=list)
    audio_s: float = 0.0
    error: str | None = None
    stages_s: dict[str, float] = field(default_factory=dict)  # per-request stage time, where the target knows

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def finished_at(self) -> float:
        return self.sent_at + (self.latency_s or 0.0)

    def finish(self) -> None:
        """The request completed: latency = when its last audio arrived (a stream's closing message, which
        carries no audio, does not count), or now if nothing arrived."""
        audible = self.audible_arrivals_s()
        self.latency_s = audible[-1] if audible else time.perf_counter() - self.sent_at

    def audible_arrivals_s(self) -> list[float]:
        return [t for t, a in zip(self.chunk_arrivals_s, self.chunk_audio_s, strict=True) if a > 0]

    def add_chunk(self, arrived_s: float, audio_s: float) -> None:
        self.chunk_arrivals_s.append(arrived_s)
        self.chunk_audio_s.append(audio_s)
        self.audio_s += audio_s
        if self.first_audio_s is None and audio_s > 0:
            self.first_audio_s = arrived_s


@dataclass
class EngineCounters:
    """Cumulative engine counters (from `Engine.stats()`); a level reports the difference."""

    stage_seconds: dict[str, float] = field(default_factory=dict)
    batch_sizes: dict[str, dict[int, int]] = field(default_factory=dict)

    def plus(self, other: EngineCounters) -> EngineCounters:
        seconds = dict(self.stage_seconds)
        for k, v in other.stage_seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
        sizes = {stage: dict(hist) for stage, hist in self.batch_sizes.items()}
        for stage, hist in other.batch_sizes.items():
            merged = sizes.setdefault(stage, {})
            for size, n in hist.items():
                merged[size] = merged.get(size, 0) + n
        return EngineCounters(seconds, {stage: dict(sorted(h.items())) for stage, h in sizes.items()})

    def since(self, before: EngineCounters) -> EngineCounters:
        seconds = {k: v - before.stage_seconds.get(k, 0.0) for k, v in self.stage_seconds.items()}
        sizes: dict[str, dict[int, int]] = {}
        for stage, hist in self.batch_sizes.items():
            prior = before.batch_sizes.get(stage, {})
            delta = {size: n - prior.get(size, 0) for size, n in hist.items()}
            sizes[stage] = {size: n for size, n in sorted(delta.items()) if n > 0}
        return EngineCounters(seconds, sizes)


def stats(values: Sequence[float], scale: float = 1.0) -> Stats:
    """avg/min/percentiles/max of `values` times `scale` (e.g. 1000 for seconds -> ms)."""
    if not values:
        return Stats(count=0)
    arr = np.asarray(values, dtype=np.float64) * scale
    p = np.percentile(arr, PERCENTILES)
    return Stats(
        count=int(arr.size),
        avg=float(arr.mean()),
        min=float(arr.min()),
        p50=float(p[0]),
        p90=float(p[1]),
        p95=float(p[2]),
        p99=float(p[3]),
        max=float(arr.max()),
    )


def playback_underruns(arrivals_s: Sequence[float], audio_s: Sequence[float]) -> tuple[int, float]:
    """(underrun count, total stall seconds) for one stream played from its first audible chunk."""
    played_until: float | None = None
    underruns, stalled = 0, 0.0
    for arrived, duration in zip(arrivals_s, audio_s, strict=True):
        if duration <= 0:
            continue
        if played_until is None:
            played_until = arrived + duration
        elif arrived > played_until:
            underruns += 1
            stalled += arrived - played_until
            played_until = arrived + duration
        else:
            played_until += duration
    return underruns, stalled


def summarize(
    timings: Sequence[RequestTiming],
    *,
    mode: str,
    concurrency: int | None = None,
    rate: float | None = None,
    counters: EngineCounters | None = None,
    wall_s: float | None = None,
) -> LevelResult:
    """Fold one level's measured requests into a `LevelResult`. `wall_s` overrides the wall time (first
    request sent -> last finished) when the requests ran in separate rounds with other work in between."""
    ok = [t for t in timings if t.ok]
    failed = [t for t in timings if not t.ok]
    if wall_s is not None:
        wall = wall_s
    elif timings:
        wall = max(t.finished_at for t in timings) - min(t.sent_at for t in timings)
    else:
        wall = 0.0
    gaps: list[float] = []
    underruns = underrun_requests = 0
    stall = 0.0
    for t in ok:
        gaps.extend(np.diff(t.audible_arrivals_s()).tolist())
        count, seconds = playback_underruns(t.chunk_arrivals_s, t.chunk_audio_s)
        underruns += count
        underrun_requests += int(count > 0)
        stall += seconds
    audio = float(sum(t.audio_s for t in ok))
    samples: list[str] = []
    for t in failed:
        if t.error and t.error not in samples and len(samples) < 5:
            samples.append(t.error)
    return LevelResult(
        mode=mode,  # type: ignore[arg-type]
        concurrency=concurrency,
        rate=rate,
        requests=len(timings),
        ok=len(ok),
        errors=len(failed),
        error_samples=samples,
        wall_s=wall,
        audio_s=audio,
        ttfa_ms=stats([t.first_audio_s for t in ok if t.first_audio_s is not None], 1000.0),
        latency_ms=stats([t.latency_s for t in ok if t.latency_s is not None], 1000.0),
        rtf=stats([t.latency_s / t.audio_s for t in ok if t.latency_s is not None and t.audio_s > 0]),
        inter_chunk_gap_ms=stats(gaps, 1000.0),
        chunks_per_request=(sum(len(t.audible_arrivals_s()) for t in ok) / len(ok)) if ok else None,
        underruns=underruns,
        underrun_requests=underrun_requests,
        stall_s=stall,
        rtfx=(audio / wall) if wall > 0 and ok else None,
        requests_per_s=(len(ok) / wall) if wall > 0 else None,
        stages=_stages(ok, counters, wall),
        batch_sizes=_batch_sizes(counters),
    )


def _stages(ok: Sequence[RequestTiming], counters: EngineCounters | None, wall: float) -> StageBreakdown | None:
    per_request = _mean_stages([t.stages_s for t in ok if t.stages_s])
    if counters is None and not per_request:
        return None
    busy = dict(counters.stage_seconds) if counters is not None else {}
    return StageBreakdown(
        per_request_ms={k: v * 1000.0 for k, v in per_request.items()},
        worker_busy_s=busy,
        worker_busy_fraction=(sum(busy.values()) / wall) if busy and wall > 0 else None,
    )


def _mean_stages(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    keys = sorted({k for row in rows for k in row})
    return {k: float(sum(row.get(k, 0.0) for row in rows) / len(rows)) for k in keys}


def _batch_sizes(counters: EngineCounters | None) -> dict[str, dict[str, int]]:
    if counters is None:
        return {}
    return {stage: {str(size): n for size, n in hist.items()} for stage, hist in counters.batch_sizes.items()}
