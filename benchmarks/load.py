"""Load shapes: a closed loop of N clients, or an open loop with Poisson arrivals.

Closed loop (`--concurrency N`): N clients, each sends its next request as soon as its previous one
finished; measures latency at a fixed number in flight and the throughput that sustains.
Open loop (`--rate R`): requests arrive at exponentially distributed intervals (mean 1/R) whether or not
earlier ones finished, the way independent users arrive; past capacity, latency grows without bound or
the target refuses (counted as errors), which is the point of measuring it.

Each level first runs its warm-up requests (a closed loop at the level's concurrency, results
discarded), then snapshots the target's counters and runs the measured requests. Request k of a level
uses workload item k and seed `seed + k`, so runs with the same flags send the same requests.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming
from vitsrt.benchmarks.targets import BenchTarget
from vitsrt.benchmarks.workload import Workload
from vitsrt.errors import VitsrtError

WARMUP_SEED_OFFSET = 1 << 40  # warm-up seeds never coincide with measured ones


@dataclass(frozen=True)
class LoadLevel:
    mode: Literal["closed", "open"]
    concurrency: int | None = None
    rate: float | None = None

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.mode == "closed" else f"rate={self.rate:g}/s"


@dataclass
class LevelRun:
    level: LoadLevel
    timings: list[RequestTiming]
    counters: EngineCounters | None  # the level's share of the target's counters (warm-up excluded)


class ProgressSink(Protocol):
    """Where the runner reports progress (a progress bar, or nothing)."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self) -> None: ...


class NoProgress:
    def start(self, description: str, total: int | None) -> None:
        return None

    def advance(self) -> None:
        return None


class RunAborted(VitsrtError):
    """Every request of a level (or of its warm-up) failed: the target is broken, numbers would be noise."""


async def run_level(
    target: BenchTarget,
    workload: Workload,
    level: LoadLevel,
    *,
    requests: int | None,
    duration_s: float | None,
    warmup: int,
    seed: int,
    progress: ProgressSink | None = None,
    offset: int = 0,
) -> LevelRun:
    """Warm up, then run one level. `offset` shifts the request indices (item and seed), for callers that
    run a level in several rounds and want each round to send new requests."""
    if requests is None and duration_s is None:
        raise VitsrtError("give --requests N or --duration S")
    progress = progress or NoProgress()
    if warmup:
        progress.start(f"{level.label} warm-up", warmup)
        warm = await _closed_loop(
            target, workload, min(warmup, level.concurrency or 1), warmup, None, seed + WARMUP_SEED_OFFSET, progress
        )
        _check_not_all_failed(warm, f"{level.label} warm-up")
    before = target.counters()
    progress.start(level.label, requests)
    if level.mode == "closed":
        assert level.concurrency is not None
        timings = await _closed_loop(target, workload, level.concurrency, requests, duration_s, seed, progress,
                                     offset)
    else:
        assert level.rate is not None
        timings = await _open_loop(target, workload, level.rate, requests, duration_s, seed, progress, offset)
    after = target.counters()
    _check_not_all_failed(timings, level.label)
    counters = after.since(before) if after is not None and before is not None else None
    return LevelRun(level, timings, counters)


def _check_not_all_failed(timings: list[RequestTiming], where: str) -> None:
    if timings and not any(t.ok for t in timings):
        raise RunAborted(f"all {len(timings)} requests failed ({where}); first error: {timings[0].error}")


def _measure(
    target: BenchTarget, workload: Workload, seed: int, progress: ProgressSink, out: list[RequestTiming],
    offset: int = 0,
) -> Callable[[int], Awaitable[None]]:
    async def one(index: int) -> None:
        out.append(await target.run(workload.item(offset + index), seed + offset + index))
        progress.advance()

    return one


async def _closed_loop(
    target: BenchTarget,
    workload: Workload,
    clients: int,
    requests: int | None,
    duration_s: float | None,
    seed: int,
    progress: ProgressSink,
    offset: int = 0,
) -> list[RequestTiming]:
    timings: list[RequestTiming] = []
    one = _measure(target, workload, seed, progress, timings, offset)
    counter = itertools.count()
    started = time.perf_counter()

    async def client() -> None:
        while True:
            if duration_s is not None and time.perf_counter() - started >= duration_s:
                return
            index = next(counter)
            if requests is not None and index >= requests:
                return
            await one(index)

    await asyncio.gather(*(client() for _ in range(clients)))
    return timings


async def _open_loop(
    target: BenchTarget,
    workload: Workload,
    rate: float,
    requests: int | None,
    duration_s: float | None,
    seed: int,
    progress: ProgressSink,
    offset: int = 0,
) -> list[RequestTiming]:
    timings: list[RequestTiming] = []
    one = _measure(target, workload, seed, progress, timings, offset)
    arrivals = random.Random(seed)  # the arrival pattern is part of the workload: seeded
    tasks: list[asyncio.Task] = []
    started = time.perf_counter()
    due = 0.0
    for index in itertools.count():
        if requests is not None and index >= requests:
            break
        due += arrivals.expovariate(rate)
        if duration_s is not None and due >= duration_s:
            break
        delay = started + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    return timings
