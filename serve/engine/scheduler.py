"""Which stage runs next, on which items: plain data structures, testable without a model.

Three queues (prefill, flow, decode). Each step takes up to `max_batch` items of one stage of one voice.
Order of service:
  1. streams whose client buffer is about to run dry (audio sent minus time since first audio < low water),
  2. streams that have sent no audio yet (oldest first, where a long request counts as having arrived up
     to `handicap` later: shortest-first with ageing, so a short request is not stuck behind long ones
     queued a moment before it, and a long one waits at most its handicap) - time to first audio,
  3. everything else, the least-buffered stream first.
Prefill waits up to `max_wait_s` for its batch to fill while other streams are active (new requests arrive from
outside, and a busy engine is where they batch); a request alone in the engine starts at once, as waiting could
only add to its latency. Flow and decode never wait: nothing can add to them while the worker idles.
A stage may have a work budget (`budgets`, in the units of `size_of`; the engine's: squared tokens for
prefill, frames for flow): a batch is cut where its padded size (largest item x items) would pass it, so one
step, and so the wait it imposes on every other stream, stays bounded whatever a request asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Step = Literal["prefill", "flow", "decode"]  # the engine's batched steps (a "stage" is a graph)
STEPS: tuple[Step, ...] = ("prefill", "flow", "decode")
ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class Batch(Generic[ItemT]):
    """What the scheduler hands out: items of one step and one group (a voice), in priority order."""

    step: Step
    group: Hashable
    items: list[ItemT]


@dataclass
class StreamClock:
    """What the scheduler knows about a stream's playback: drives the priority."""

    created: float
    handicap: float = 0.0  # seconds added to `created` when ordering streams that have no audio yet
    first_audio_at: float | None = None
    audio_seconds_sent: float = 0.0

    def buffered_seconds(self, now: float) -> float:
        """Audio the client holds that has not played yet (if it started playing at first audio)."""
        if self.first_audio_at is None:
            return 0.0
        return self.audio_seconds_sent - (now - self.first_audio_at)


@dataclass
class _Entry(Generic[ItemT]):
    item: ItemT
    stream_id: int
    group: Hashable  # items batch together only within a group (same voice)
    enqueued: float


class Scheduler(Generic[ItemT]):
    def __init__(self, max_batch: int = 8, max_wait_s: float = 0.005, low_water_s: float = 0.3,
                 budgets: dict[str, int] | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.budgets = dict(budgets or {})
        self.max_wait_s = max_wait_s
        self.low_water_s = low_water_s
        self._queues: dict[str, list[_Entry]] = {step: [] for step in STEPS}
        self._clocks: dict[int, StreamClock] = {}

    # ----- streams ---------------------------------------------------------------------------------

    def add_stream(self, stream_id: int, now: float, handicap: float = 0.0) -> StreamClock:
        clock = StreamClock(created=now, handicap=handicap)
        self._clocks[stream_id] = clock
        return clock

    def remove_stream(self, stream_id: int) -> int:
        """Drop a stream and every queued item of it (cancel, finish, error). Returns items removed."""
        self._clocks.pop(stream_id, None)
        removed = 0
        for stage, entries in self._queues.items():
            kept = [e for e in entries if e.stream_id != stream_id]
            removed += len(entries) - len(kept)
            self._queues[stage] = kept
        return removed

    def audio_sent(self, stream_id: int, seconds: float, now: float) -> None:
        clock = self._clocks.get(stream_id)
        if clock is None:
            return
        if clock.first_audio_at is None:
            clock.first_audio_at = now
        clock.audio_seconds_sent += seconds

    @property
    def active_streams(self) -> int:
        return len(self._clocks)

    # ----- queues ----------------------------------------------------------------------------------

    def enqueue(self, stage: Step, item: ItemT, stream_id: int, group: Hashable, now: float) -> None:
        if stream_id not in self._clocks:
            return  # stream already gone (cancelled while its previous step ran)
        self._queues[stage].append(_Entry(item, stream_id, group, now))

    def depth(self, stage: Step) -> int:
        return len(self._queues[stage])

    def depths(self) -> dict[str, int]:
        return {stage: len(q) for stage, q in self._queues.items()}

    def is_empty(self) -> bool:
        return not any(self._queues.values())

    def _priority(self, entry: _Entry[ItemT], now: float) -> tuple[float, ...]:
        clock = self._clocks[entry.stream_id]
        if clock.first_audio_at is None:
            return (1, clock.created + clock.handicap, entry.enqueued)
        buffered = clock.buffered_seconds(now)
        urgency = 0 if buffered < self.low_water_s else 2
        return (urgency, buffered, entry.enqueued)

    def next_batch(
        self, now: float, size_of: Callable[[Step, ItemT], int] | None = None
    ) -> tuple[Batch[ItemT] | None, float | None]:
        """Pick the next step. Returns (batch, None) to run now, or (None, wait_s) to wait (wait_s None =
        nothing queued at all). `size_of(stage, item)` is an item's work in the stage's unit
        (decode: input frames, which also keeps short and long windows apart so short ones are not padded to
        long ones); the stage budgets are in the same units."""
        best: tuple[tuple[float, ...], Step, _Entry[ItemT]] | None = None
        for stage_rank, stage in enumerate(reversed(STEPS)):  # ties: later steps first (finish work)
            for entry in self._queues[stage]:
                key = (*self._priority(entry, now), stage_rank)
                if best is None or key < best[0]:
                    best = (key, stage, entry)
        if best is None:
            return None, None
        _, stage, head = best
        queue = self._queues[stage]
        # sorted() is stable: equal priorities keep enqueue order (a stream's windows stay in order).
        candidates = sorted((e for e in queue if e.group == head.group), key=lambda e: self._priority(e, now))
        if size_of is not None and stage == "decode":
            head_size = size_of(stage, head.item)
            same = [e for e in candidates if size_of(stage, e.item) == head_size]
            other = [e for e in candidates if size_of(stage, e.item) < head_size]
            candidates = same + other
        chosen = [head, *[e for e in candidates if e is not head][:self.max_batch - 1]]
        if size_of is not None and stage in self.budgets:
            chosen = _within_budget(chosen, lambda item: size_of(stage, item), self.budgets[stage])
        if stage == "prefill" and len(chosen) < self.max_batch:
            oldest = min(e.enqueued for e in chosen)
            remaining = self.max_wait_s - (now - oldest)
            if remaining > 0 and self._only_prefill_waiting() and self._others_active(chosen):
                return None, remaining
        chosen_ids = {id(e) for e in chosen}
        self._queues[stage] = [e for e in queue if id(e) not in chosen_ids]
        return Batch(stage, head.group, [e.item for e in chosen]), None

    def _only_prefill_waiting(self) -> bool:
        return not self._queues["flow"] and not self._queues["decode"]

    def _others_active(self, chosen: list[_Entry[ItemT]]) -> bool:
        """Whether a stream outside `chosen` is live: an idle engine's lone request has nobody to batch with."""
        return len(self._clocks) > len({entry.stream_id for entry in chosen})


def _within_budget(chosen: list[_Entry[ItemT]], size_of: Callable[[ItemT], int], budget: int) -> list[_Entry[ItemT]]:
    """The longest prefix of `chosen` whose padded size (largest item x count) fits `budget`; never empty."""
    kept, largest = [chosen[0]], size_of(chosen[0].item)
    for entry in chosen[1:]:
        widest = max(largest, size_of(entry.item))
        if widest * (len(kept) + 1) > budget:
            break
        kept.append(entry)
        largest = widest
    return kept
