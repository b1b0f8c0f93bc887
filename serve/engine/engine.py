"""The engine: requests become streams; execution lanes run batched stage steps chosen by the scheduler.

    engine = Engine.open(["voices/alice"], backend="onnxruntime")
    audio = engine.synthesize(SynthesisRequest(text="Hello there.")).audio
    for chunk in engine.stream(SynthesisRequest(text="A longer sentence...")):
        play(chunk.audio)

Streams from many callers share every backend call (continuous batching). A lane is one worker thread with
its own backend per voice (its own sessions, `threads` intra-op threads each); every lane takes its next batch
from the one scheduler, so with two lanes on two cores two batches run side by side once two or more streams
are live, instead of one batch spreading thin over both cores. Lanes change where a batch runs, never what
an item computes (every graph is masked and all noise comes from the request's seed). Everything that can be wrong
with a request raises in the caller's thread at admission (InputError / NotFoundError / OverloadedError);
a failure inside a batch fails only the streams in that batch, and the engine keeps serving.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vitsrt.errors import BudgetError, InputError, NotFoundError, OverloadedError, VitsrtError, clip, name_list
from vitsrt.serve.backends.base import BACKENDS, StageBackend, backend_entry, open_backend
from vitsrt.serve.engine.pipeline import DecodeJob, Segment, StepOutput, VoicePipeline, Work
from vitsrt.serve.engine.scheduler import Batch, Scheduler, Step
from vitsrt.serve.engine.timestamps import SegmentSpans, segment_spans
from vitsrt.serve.engine.types import AudioChunk, SynthesisRequest, SynthesisResult, VoiceInfo
from vitsrt.serve.engine.windows import CPU_ONE_SHOT, ONE_SHOT, WindowPolicy
from vitsrt.voice import Voice, load_voice

log = logging.getLogger(__name__)

_END = object()


class EngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None: one item per step on CPU backends, 8 elsewhere (`resolve_lanes`). On CPU a batch saves nothing over
    # its items run alone (joe's decoder, 1 thread: 2 items 2.0-2.2x one, 4 items 4.1-4.4x) and pads every item
    # to the longest, so there lanes, not batches, run streams side by side (2026-12-02 lanes record: 2 lanes
    # streaming 28.4 -> 37.5 audio-s/s going from 8 items per step to 1).
    max_batch: int | None = Field(None, ge=1, le=256, description="items per stage step (None: 1 on CPU, else 8)")
    max_wait_ms: float = Field(5.0, ge=0)
    max_active_streams: int = Field(64, ge=1)
    max_text_chars: int = Field(5000, ge=1)
    # The work budget of one request, checked before its work is queued (ids: at admission; audio: as soon
    # as the durations are known, before the flow and decoder run). Together with the scheduler's per-step
    # budgets they bound what any request can make the server allocate or make other streams wait for.
    # Prefill cost grows faster than the length (the encoder's attention): on the default voice, 2 threads,
    # 640 ids take 51 ms, 768 ids 68 ms, one full 256-frame decode window 54 ms, 1024 ids 123 ms (2026-12-02).
    # 768 holds a 60-word sentence (~680 ids) and keeps one prefill step, the longest thing a request can make
    # the others wait for, near one window. A text sentence whose ids pass it is halved at a space, not refused.
    max_phonemes: int = Field(768, ge=1, description="ids per sentence (phoneme input is one sentence)")
    long_request_handicap_ms: float = Field(
        500.0, ge=0, description="a request whose first sentence has max_phonemes ids is ordered for its first "
        "audio as if it arrived this much later (scaled by the square of its share of the limit, as its prefill "
        "cost is), so short requests get ahead of long ones queued just before them")
    max_audio_seconds: float = Field(300.0, gt=0, description="audio one request may produce")
    max_sentence_seconds: float = Field(
        60.0, gt=0, description="audio one sentence may produce (its prior sample, and a transformer flow, cover the "
        "whole sentence at once)")
    # Lanes: None picks from the core count for CPU backends (`default_lanes`), one lane elsewhere (two for
    # torch-cuda: one lane's host work overlaps the other's GPU work); `threads` is then per lane.
    lanes: int | None = Field(None, ge=1, le=64, description="execution lanes, each a worker with its own sessions")
    threads: int | None = Field(None, ge=1, description="intra-op threads per backend, i.e. per lane (None: from "
                                "the core count for CPU backends, the runtime's default elsewhere)")
    # Off by default: spin-waiting intra-op threads compete with the engine worker and the server's event
    # loop (measured: +24-41% throughput with it off, benchmarks/results/README.md, 2026-11-22 spinning).
    spinning: bool = Field(False, description="onnxruntime: idle intra-op threads spin-wait for the next call")
    windows: WindowPolicy = Field(default_factory=WindowPolicy, description="streaming decode windows")
    one_shot_windows: WindowPolicy | None = Field(
        None, description="decode windows of a whole-utterance request (None: CPU_ONE_SHOT on CPU backends, one "
        "call per sentence elsewhere)")
    low_water_ms: float = Field(300.0, ge=0)


# Backends that compute on the host's cores (lanes split the cores between them), and the lanes a GPU backend
# gets by default.
CPU_BACKENDS = ("onnxruntime", "torch")
GPU_DEFAULT_LANES = {"torch-cuda": 2}
BATCHED_MAX_BATCH = 8  # max_batch where batches pay (GPU backends; an Engine built without resolve_lanes)
MAX_DEFAULT_LANES = 8


def default_lanes(cores: int) -> tuple[int, int]:
    """(lanes, threads per lane) for a CPU backend on `cores` cores: a lane per core up to 3 cores, then a lane
    per core pair (4 cores 2x2, 8 cores 4x2, 16 and more 8 lanes sharing the cores). Measured on 2 cores with a
    piper voice at 4 clients, one item per step (benchmarks/results/2026-12-02-peers-concurrent-lanes.md): 2x1
    gave 1.4-1.6x the throughput of 1x2 and half its first audio; a lone request then runs on one thread."""
    cores = max(1, cores)
    if cores <= 3:
        return cores, 1
    lanes = min(MAX_DEFAULT_LANES, cores // 2)
    return lanes, cores // lanes


def resolve_lanes(options: EngineOptions, backend: str, cores: int | None = None) -> EngineOptions:
    """`options` with `lanes`, `max_batch`, `one_shot_windows` (and for CPU backends `threads`) filled in for
    `backend` on `cores` cores. Given values are kept; a CPU backend given only `threads` gets one lane up to
    3 cores (`--threads N` alone keeps its old meaning there) and the default lanes above, given only `lanes`
    shares the cores."""
    cores = cores or os.cpu_count() or 1
    entry = backend_entry(backend)
    name = next(n for n, e in BACKENDS.items() if e is entry)
    if name not in CPU_BACKENDS:
        return options.model_copy(update={"lanes": options.lanes or GPU_DEFAULT_LANES.get(name, 1),
                                          "max_batch": options.max_batch or BATCHED_MAX_BATCH,
                                          "one_shot_windows": options.one_shot_windows or ONE_SHOT})
    lanes, threads = options.lanes, options.threads
    if lanes is None and threads is None:
        lanes, threads = default_lanes(cores)
    elif lanes is None:
        lanes = 1 if cores <= 3 else default_lanes(cores)[0]
    elif threads is None:
        threads = max(1, cores // lanes)
    return options.model_copy(update={"lanes": lanes, "threads": threads, "max_batch": options.max_batch or 1,
                                      "one_shot_windows": options.one_shot_windows or CPU_ONE_SHOT})


def _with_backend(pipeline: VoicePipeline, backend: StageBackend) -> VoicePipeline:
    """`pipeline` for another lane: the same voice, front end and limits (shared, read-only), its own backend."""
    twin = copy.copy(pipeline)
    twin.backend = backend
    return twin


@dataclass
class _Lane:
    index: int
    pipelines: dict[str, VoicePipeline]
    thread: threading.Thread | None = None


@dataclass
class _Stream:
    id: int
    pipeline: VoicePipeline
    segments: list[Segment]
    sink: Callable[[Any], None]
    started: float
    frontend_seconds: float
    next_segment: int = 0  # next segment index to emit from
    next_window: int = 0
    pending: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    chunks_sent: int = 0
    finished: bool = False
    first_audio_at: float | None = None
    planned_frames: int = 0  # frames of the segments prefilled so far: the audio budget's running total
    planned_silence: int = 0  # samples of their SSML breaks: silence is audio too, and counts the same
    timestamps: bool = False  # the request asked for word/phoneme spans on its chunks
    samples_sent: int = 0  # samples of the chunks emitted so far: where the next segment's spans start
    spans: SegmentSpans | None = None  # the current segment's spans not yet handed to a chunk

    def timings(self) -> dict[str, float]:
        total: Counter[str] = Counter({"frontend": self.frontend_seconds})
        for segment in self.segments:
            total.update(segment.timings)
        return dict(total)


class Engine:
    def __init__(self, pipelines: Sequence[VoicePipeline], options: EngineOptions | None = None,
                 lane_backend: Callable[[Voice], StageBackend] | None = None):
        """`pipelines` are the first lane's; each further lane (`options.lanes`, default 1 here; `Engine.open`
        picks from the core count) gets the same voices with a backend from `lane_backend(voice)`."""
        if not pipelines:
            raise VitsrtError("the engine needs at least one voice")
        self.options = options or EngineOptions()
        self._pipelines = {p.name: p for p in pipelines}
        if len(self._pipelines) != len(pipelines):
            raise VitsrtError("two voices share one name")
        lanes = self.options.lanes or 1
        if lanes > 1 and lane_backend is None:
            raise VitsrtError(f"{lanes} lanes need a backend per lane: pass lane_backend, or use Engine.open")
        self._lanes = [_Lane(0, self._pipelines)]
        try:
            for index in range(1, lanes):
                assert lane_backend is not None
                self._lanes.append(_Lane(index, {name: _with_backend(p, lane_backend(p.voice))
                                                 for name, p in self._pipelines.items()}))
        except BaseException:
            self._close_backends()
            raise
        self.default_voice = pipelines[0].name
        self._scheduler: Scheduler[Work] = Scheduler(
            self.options.max_batch or BATCHED_MAX_BATCH, self.options.max_wait_ms / 1000.0,
            self.options.low_water_ms / 1000.0, budgets=self._step_budgets(),
        )
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._cond = threading.Condition()
        self._stopping = False
        self._batch_sizes: dict[str, Counter[int]] = {"prefill": Counter(), "flow": Counter(), "decode": Counter()}
        self._stage_seconds: Counter[str] = Counter()
        for lane in self._lanes:
            name = "vitsrt-engine" if lanes == 1 else f"vitsrt-engine-lane{lane.index}"
            lane.thread = threading.Thread(target=self._run_worker, args=(lane,), name=name, daemon=True)
            lane.thread.start()

    def _step_budgets(self) -> dict[str, int]:
        """Per-step work limits: one prefill step costs at most one longest-allowed sentence's prefill (padded
        batch, cost ~ tokens squared), one flow step holds at most one longest-allowed sentence's frames, so no
        step runs much longer than the largest decode step, whatever the requests ask for."""
        frames_per_second = max(p.sample_rate / p.hop for p in self._pipelines.values())
        return {"prefill": self.options.max_phonemes ** 2,
                "flow": math.ceil(self.options.max_sentence_seconds * frames_per_second)}

    @classmethod
    def open(
        cls,
        voice_dirs: Sequence[str | Path],
        backend: str = "onnxruntime",
        options: EngineOptions | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> Engine:
        """Load voice bundles and open one backend per voice and lane (lanes and threads per lane: as given,
        else from the core count for CPU backends; see `resolve_lanes`)."""
        options = resolve_lanes(options or EngineOptions(), backend)
        # Engine-wide thread settings reach only the backends whose options model has them (onnxruntime:
        # intra_op_threads, spinning; torch: threads).
        defaults = {"intra_op_threads": options.threads, "threads": options.threads, "spinning": options.spinning}

        def lane_backend(voice: Voice) -> StageBackend:
            return open_backend(backend, voice, engine_defaults=defaults, **(backend_options or {}))

        pipelines: list[VoicePipeline] = []
        try:
            for voice_dir in voice_dirs:
                voice = load_voice(voice_dir)
                pipelines.append(VoicePipeline(voice, lane_backend(voice), max_text_chars=options.max_text_chars,
                                               max_phonemes=options.max_phonemes))
            return cls(pipelines, options, lane_backend)
        except BaseException:
            for pipeline in pipelines:
                pipeline.backend.close()
            raise

    # ----- public API ------------------------------------------------------------------------------

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        return {name: p.info() for name, p in self._pipelines.items()}

    def pipeline(self, voice: str = "") -> VoicePipeline:
        name = voice or self.default_voice
        if name not in self._pipelines:
            raise NotFoundError(f"unknown voice {clip(name)}; available: {name_list(list(self._pipelines))}")
        return self._pipelines[name]

    def stream(self, request: SynthesisRequest) -> Iterator[AudioChunk]:
        """Chunks as they are decoded. Errors in the request raise here, before the first chunk;
        closing the iterator (or dropping it) cancels the stream in every queue."""
        chunks: queue.Queue = queue.Queue()
        stream = self._admit(request, chunks.put, self.options.windows)
        return self._iterate(stream.id, chunks)

    def _iterate(self, stream_id: int, chunks: queue.Queue) -> Iterator[AudioChunk]:
        try:
            while True:
                item = chunks.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel(stream_id)

    async def astream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        """asyncio flavour of `stream`; cancelling the consumer cancels the stream in the engine.
        Admission (front end: phonemisation can take a while) runs in a thread, not on the event loop."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue = asyncio.Queue()
        # The stream's id once admitted. The sink (which the stream holds) keeps only the id: holding the stream
        # itself made a reference cycle that kept every finished stream's arrays alive until a full collection.
        admitted: list[int] = []

        def sink(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the consumer's loop is closed: nobody will read this stream
                self.cancel(admitted[0])

        admission = asyncio.ensure_future(asyncio.to_thread(self._admit, request, sink, self.options.windows))
        try:
            stream = await asyncio.shield(admission)
        except asyncio.CancelledError:  # the thread still finishes admitting: cancel what it admits
            admission.add_done_callback(lambda done: done.exception() or self.cancel(done.result().id))
            raise
        admitted.append(stream.id)
        try:
            while True:
                item = await chunks.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel(stream.id)
            # A raised error's traceback keeps this frame (and gRPC keeps the error in a reference cycle): drop
            # what the frame holds, so the finished stream's arrays are freed now, not at the next full collection.
            stream = admission = item = None

    def synthesize(self, request: SynthesisRequest, streaming_windows: bool = False) -> SynthesisResult:
        """Whole utterance at once: each sentence in the one-shot windows (`EngineOptions.one_shot_windows`: one
        call per sentence on GPU, 256-frame windows on CPU); with `streaming_windows` in the streaming windows
        (equal to `stream` output)."""
        chunks: queue.Queue = queue.Queue()
        policy = self.options.windows if streaming_windows else self.options.one_shot_windows or ONE_SHOT
        stream = self._admit(request, chunks.put, policy)
        received = list(self._iterate(stream.id, chunks))
        audio = np.concatenate([c.audio for c in received]) if received else np.zeros(0, dtype=np.float32)
        return SynthesisResult(audio, stream.pipeline.sample_rate, stream.timings(),
                               words=[w for c in received for w in c.words],
                               phonemes=[p for c in received for p in c.phonemes])

    def cancel(self, stream_id: int) -> bool:
        """Remove a stream from every queue at once. Safe to call twice or after it finished."""
        with self._cond:
            stream = self._streams.pop(stream_id, None)
            if stream is None:
                return False
            removed = self._scheduler.remove_stream(stream_id)
            stream.finished = True
        log.debug("stream %d cancelled (%d queued items dropped)", stream_id, removed)
        return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "active_streams": len(self._streams),
                "queue_depths": self._scheduler.depths(),
                "batch_sizes": {stage: dict(sorted(c.items())) for stage, c in self._batch_sizes.items()},
                "stage_seconds": dict(self._stage_seconds),
                "lanes": len(self._lanes),
            }

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued work, then stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
        self._close_backends()

    def _close_backends(self) -> None:
        for lane in self._lanes:
            for pipeline in lane.pipelines.values():
                pipeline.backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- admission -------------------------------------------------------------------------------

    def _admit(self, request: SynthesisRequest, sink: Callable[[Any], None], policy: WindowPolicy) -> _Stream:
        if not isinstance(request, SynthesisRequest):
            raise InputError("request", "expected a SynthesisRequest")
        pipeline = self.pipeline(request.voice)
        started = time.perf_counter()
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        with self._cond:
            if self._stopping:
                raise OverloadedError("the engine is shutting down")
            if len(self._streams) >= self.options.max_active_streams:
                raise OverloadedError(f"overloaded: {len(self._streams)} active streams (limit reached)")
            stream_id = self._next_id
            self._next_id += 1
        segments = pipeline.segments_for(request, stream_id, seed, policy)  # front end: raises on bad input
        stream = _Stream(stream_id, pipeline, segments, sink, started, time.perf_counter() - started,
                         timestamps=request.timestamps)
        with self._cond:
            if len(self._streams) >= self.options.max_active_streams:
                raise OverloadedError(f"overloaded: {len(self._streams)} active streams (limit reached)")
            self._streams[stream_id] = stream
            now = time.monotonic()
            self._scheduler.add_stream(stream_id, now, self._handicap(segments[0]))
            self._scheduler.enqueue("prefill", segments[0], stream_id, pipeline.name, now)
            self._cond.notify_all()
        return stream

    # ----- the worker ------------------------------------------------------------------------------

    def _run_worker(self, lane: _Lane) -> None:
        """One lane: schedule -> execute -> update, until closed (vLLM's loop: the scheduler picks, the
        pipeline runs on this lane's backend, the engine books the results)."""
        while self._step(lane):
            pass

    def _step(self, lane: _Lane) -> bool:
        """One batch through the lane; False once the engine is closed. Its locals go with the return, so a
        waiting worker holds no finished batch's arrays."""
        batch = self._schedule()
        if batch is None:
            return False
        live = self._live(batch)
        if not live.items:
            return True
        started = time.perf_counter()
        try:
            output = lane.pipelines[str(live.group)].run(live)
            self._update(live, output, time.perf_counter() - started)
        except Exception as exc:  # a failed batch fails its streams, never the engine
            log.exception("%s step failed for %d items", live.step, len(live.items))
            self._fail(live.items, exc)
        return True

    def _schedule(self) -> Batch[Work] | None:
        """The next batch to run, waiting for work; None once the engine is closed and nothing is queued."""
        with self._cond:
            while True:
                batch, wait = self._scheduler.next_batch(time.monotonic(), size_of=_work_size)
                if batch is not None:
                    self._batch_sizes[batch.step][len(batch.items)] += 1
                    return batch
                if self._stopping and wait is None:
                    return None
                self._cond.wait(timeout=wait)

    def _live(self, batch: Batch[Work]) -> Batch[Work]:
        """The batch without the items whose stream is gone (cancelled while they waited)."""
        with self._cond:
            return replace(batch, items=[item for item in batch.items if item.stream_id in self._streams])

    def _update(self, batch: Batch[Work], output: StepOutput, seconds: float) -> None:
        """Book the step's time, queue each item's follow-up work (after prefill: within the request's audio
        budget), then deliver decoded audio in order."""
        refused: dict[int, BudgetError] = {}
        if batch.step == "prefill":
            for _, segment in output.follow_ups:
                stream = self._streams.get(segment.stream_id)
                if isinstance(segment, Segment) and stream and (error := self._over_budget(segment, stream)):
                    refused[stream.id] = error
        with self._cond:  # booked before delivery: a client that sees its stream end sees its time counted
            self._stage_seconds[batch.step] += seconds
            now = time.monotonic()
            for step, work in output.follow_ups:
                if work.stream_id not in refused:
                    self._scheduler.enqueue(step, work, work.stream_id, batch.group, now)
            if output.follow_ups:
                self._cond.notify_all()  # an idle lane may take them while this one delivers
        for stream_id, error in refused.items():
            self._fail_stream(stream_id, error)
        for job, samples in output.audio:
            self._deliver(job, samples)

    def _deliver(self, job: DecodeJob, samples: np.ndarray) -> None:
        """Store a decoded window; emit every window that is now next in order. The chunks go to the stream's sink
        under the lock (sinks only enqueue): two lanes delivering windows of one stream must hand them over in
        order, or one lane's later chunks and the stream's end could overtake the other's chunks, which the
        consumer would then never read."""
        with self._cond:
            stream = self._streams.get(job.segment.stream_id)
            if stream is None:
                return
            stream.pending[(job.segment.index, job.window.index)] = samples
            ready = []
            while (stream.next_segment, stream.next_window) in stream.pending:
                key = (stream.next_segment, stream.next_window)
                segment = stream.segments[stream.next_segment]
                last_window = stream.next_window == len(segment.windows) - 1
                ready.append(self._chunk(stream, segment, stream.pending.pop(key), last_window))
                if last_window:
                    stream.next_segment, stream.next_window = stream.next_segment + 1, 0
                else:
                    stream.next_window += 1
            now = time.monotonic()
            for chunk in ready:
                self._scheduler.audio_sent(stream.id, len(chunk.audio) / chunk.sample_rate, now)
            finished = bool(ready) and ready[-1].is_last
            if finished:
                ready[-1].timings = stream.timings()
                self._streams.pop(stream.id, None)
                self._scheduler.remove_stream(stream.id)
                stream.finished = True
            for chunk in ready:
                stream.sink(chunk)
            if finished:
                stream.sink(_END)

    @staticmethod
    def _chunk(stream: _Stream, segment: Segment, audio: np.ndarray, last_window: bool) -> AudioChunk:
        """The next chunk of `stream` (under the lock), with the spans that start inside it when asked for."""
        is_last = last_window and segment.index == len(stream.segments) - 1
        # SSML breaks: exact zeros before the segment's first window and after its last; decoded samples untouched.
        lead = segment.pause if stream.next_window == 0 else 0
        trail = segment.tail if last_window else 0
        if lead or trail:
            audio = np.concatenate([np.zeros(lead, np.float32), audio, np.zeros(trail, np.float32)])
        chunk = AudioChunk(audio, stream.pipeline.sample_rate, stream.chunks_sent, is_last, segment.index)
        if stream.timestamps:
            if stream.next_window == 0:  # the segment's first chunk: its spans start where its own audio starts
                stream.spans = segment_spans(segment.ids, segment.durations, stream.pipeline.hop,
                                             stream.samples_sent + lead)
            assert stream.spans is not None
            # The segment's last chunk takes every span left, zero-length ones at its very end included.
            chunk.phonemes, chunk.words = stream.spans.take(None if last_window else stream.samples_sent + len(audio))
        stream.chunks_sent += 1
        stream.samples_sent += len(audio)
        return chunk

    def _handicap(self, first: Segment) -> float:
        share = min(first.tokens / self.options.max_phonemes, 1.0)
        return self.options.long_request_handicap_ms / 1000.0 * share * share

    def _over_budget(self, segment: Segment, stream: _Stream) -> BudgetError | None:
        """The request's audio budget, checked once a segment's durations are known (before flow and decode)."""
        frames_per_second = stream.pipeline.sample_rate / stream.pipeline.hop
        limits = self.options
        seconds = segment.frames / frames_per_second
        if seconds > limits.max_sentence_seconds:
            return BudgetError(f"a sentence would be {seconds:.0f} s of audio, over the limit of "
                               f"{limits.max_sentence_seconds:g} s per sentence; split it or lower length_scale")
        stream.planned_frames += segment.frames
        stream.planned_silence += segment.pause + segment.tail
        if (stream.planned_frames / frames_per_second + stream.planned_silence / stream.pipeline.sample_rate
                > limits.max_audio_seconds):
            return BudgetError(f"the request would produce more than {limits.max_audio_seconds:g} s of audio, "
                               "the limit per request; split it or lower length_scale")
        return None

    def _fail(self, items: Sequence[Work], exc: Exception) -> None:
        error = exc if isinstance(exc, VitsrtError) else VitsrtError(f"synthesis failed: {exc}")
        for stream_id in {item.stream_id for item in items}:
            self._fail_stream(stream_id, error)

    def _fail_stream(self, stream_id: int, error: VitsrtError) -> None:
        with self._cond:
            stream = self._streams.pop(stream_id, None)
            self._scheduler.remove_stream(stream_id)
        if stream is not None:
            log.info("stream %d failed: %s", stream_id, error)
            stream.sink(error)


def _work_size(step: Step, item: Work) -> int:
    """An item's work in its step's unit (the scheduler's budgets): decode and flow frames; prefill the square of
    the tokens, as the encoder's attention costs (four 200-id sentences batch together, two 768-id ones do not)."""
    if isinstance(item, DecodeJob):
        return item.window.input_frames
    return item.tokens**2 if step == "prefill" else item.frames
