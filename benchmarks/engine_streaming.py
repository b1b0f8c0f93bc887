"""Engine benchmark (issue 4): what exact streaming and continuous batching buy, on this machine.

    python -m vitsrt.benchmarks.engine_streaming --voice default --part ttfa --json out.json
    python -m vitsrt.benchmarks.engine_streaming --voice fixture --part all

Two measurements per voice (a random default-size Bert-VITS2 2.3 voice, built and cached by
`vitsrt.benchmarks.voices`, and the tiny upstream parity fixture exported once):

ttfa        For a ~20-word and a ~60-word sentence, alternately: one-shot latency (`synthesize`, each
            sentence decoded in one call) and streaming (`stream`: time to first audio and to the end).
            Requests run one at a time, `--repeats` times each; medians are reported. The issue expects the
            first audio of the 60-word sentence in under a quarter of the one-shot latency.
throughput  Closed loop of 1, 4, 16 streaming clients (`--concurrency`), each sending `--rounds` requests
            of the short built-in sentences, with batching on (max_batch 16) and off (max_batch 1);
            aggregate throughput = audio seconds / wall seconds. Expected: on is never slower than off,
            and faster at 16.

Both voices take ids only, so requests carry the deterministic stand-in ids of `vitsrt.benchmarks.workload`.
Engine intra-op threads: the backend's default unless `--threads` is given (onnxruntime: one per core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vitsrt.benchmarks.load import LoadLevel, run_level
from vitsrt.benchmarks.metrics import summarize
from vitsrt.benchmarks.report import cpu_name, git_revision, load_average, markdown_table, utc_now
from vitsrt.benchmarks.targets import EngineTarget, TargetOptions, package_versions
from vitsrt.benchmarks.workload import SENTENCE_20_WORDS, SENTENCE_60_WORDS, Workload, builtin_texts, derive_phonemes
from vitsrt.errors import VitsrtError

log = logging.getLogger("vitsrt.benchmarks.engine_streaming")

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "bertvits2-2.3-tiny"


def resolve_voice(name: str, cache_dir: Path | None, fixture_dir: Path) -> Path:
    from vitsrt.benchmarks.voices import exported_voice, random_default_voice

    if name == "default":
        return random_default_voice(cache_dir).voice_dir
    if name == "fixture":
        return exported_voice(fixture_dir / "G_0.pth", fixture_dir / "config.json", cache_dir, name="fixture").voice_dir
    return Path(name)  # an existing voice bundle


def _open_engine(voice_dir: Path, threads: int | None, **engine: Any) -> Any:
    from vitsrt.serve.engine.engine import Engine, EngineOptions

    return Engine.open([voice_dir], options=EngineOptions(threads=threads, **engine))


def _request(engine: Any, text: str, seed: int) -> Any:
    from vitsrt.benchmarks.targets import front_end_ids_spec
    from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest

    spec = front_end_ids_spec(engine.pipeline().manifest.front_end)
    if spec is None:
        return SynthesisRequest(text=text, seed=seed)
    p = derive_phonemes(text, spec)
    return SynthesisRequest(phonemes=PhonemeIds(phone_ids=p.phone_ids, tone_ids=p.tone_ids,
                                                language_ids=p.language_ids), seed=seed)


def measure_ttfa(voice_dir: Path, threads: int | None, repeats: int) -> list[dict[str, Any]]:
    """Per sentence: medians of one-shot latency, streaming TTFA and streaming total, over `repeats`."""
    rows = []
    engine = _open_engine(voice_dir, threads)
    try:
        for words, text in (("~20", SENTENCE_20_WORDS), ("~60", SENTENCE_60_WORDS)):
            request = _request(engine, text, seed=1)
            engine.synthesize(request)  # warm-up (first-call allocations, shapes)
            one_shot, ttfa, stream_total, audio = [], [], [], 0.0
            for _ in range(repeats):
                started = time.perf_counter()
                audio = engine.synthesize(request).duration_seconds
                one_shot.append(time.perf_counter() - started)
                started, first = time.perf_counter(), None
                for chunk in engine.stream(request):
                    if first is None and len(chunk.audio):
                        first = time.perf_counter() - started
                stream_total.append(time.perf_counter() - started)
                ttfa.append(first if first is not None else stream_total[-1])
            row = {
                "sentence": f"{words} words ({len(text.split())})",
                "tokens": len(request.phonemes.phone_ids) if request.phonemes else None,
                "audio_s": audio,
                "one_shot_latency_s": statistics.median(one_shot),
                "stream_ttfa_s": statistics.median(ttfa),
                "stream_total_s": statistics.median(stream_total),
                "samples": {"one_shot_s": one_shot, "stream_ttfa_s": ttfa, "stream_total_s": stream_total},
            }
            row["ttfa_over_one_shot"] = row["stream_ttfa_s"] / row["one_shot_latency_s"]
            rows.append(row)
            log.info("%s: one-shot %.2f s, stream TTFA %.2f s (%.0f%%)", row["sentence"], row["one_shot_latency_s"],
                     row["stream_ttfa_s"], 100 * row["ttfa_over_one_shot"])
    finally:
        engine.close()
    return rows


async def _throughput_levels(voice_dir: Path, threads: int | None, max_batch: int, levels: list[int], rounds: int,
                             warmup: int) -> list[dict[str, Any]]:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max(levels) + 4))
    target = EngineTarget(TargetOptions(voice=str(voice_dir), stream=True, threads=threads,
                                        engine={"max_batch": max_batch, "max_active_streams": max(64, max(levels))}))
    await target.open()
    try:
        workload = Workload(builtin_texts("short"), target.ids_spec(), source="builtin:short")
        out = []
        for clients in levels:
            level = LoadLevel("closed", concurrency=clients)
            ran = await run_level(target, workload, level, requests=clients * rounds, duration_s=None,
                                  warmup=warmup, seed=0)
            result = summarize(ran.timings, mode="closed", concurrency=clients, counters=ran.counters)
            out.append({"max_batch": max_batch, "level": result.model_dump(mode="json")})
            log.info("max_batch %d, c=%d: RTFX %.3f, TTFA p50 %.0f ms", max_batch, clients, result.rtfx or 0,
                     result.ttfa_ms.p50 or 0)
    finally:
        await target.close()
    return out


def measure_throughput(voice_dir: Path, threads: int | None, levels: list[int], rounds: int, warmup: int,
                       batch_on: int) -> list[dict[str, Any]]:
    results = []
    for max_batch in (batch_on, 1):
        results += asyncio.run(_throughput_levels(voice_dir, threads, max_batch, levels, rounds, warmup))
    return results


def markdown(result: dict[str, Any]) -> str:
    parts = []
    for voice in result["voices"]:
        parts.append(f"**{voice['voice']}** (threads {result['threads'] or 'default'})\n")
        if voice.get("ttfa"):
            rows = [[r["sentence"], str(r["tokens"]), f"{r['audio_s']:.2f}", f"{r['one_shot_latency_s'] * 1000:,.0f}",
                     f"{r['stream_ttfa_s'] * 1000:,.0f}", f"{r['stream_total_s'] * 1000:,.0f}",
                     f"{r['ttfa_over_one_shot']:.2f}"] for r in voice["ttfa"]]
            parts.append(markdown_table(["sentence", "ids", "audio s", "one-shot latency ms", "stream TTFA ms",
                                         "stream total ms", "TTFA / one-shot"], rows) + "\n")
        if voice.get("throughput"):
            by_level: dict[int, dict[int, Any]] = {}
            for entry in voice["throughput"]:
                by_level.setdefault(entry["level"]["concurrency"], {})[entry["max_batch"]] = entry["level"]
            rows = []
            for clients, runs in sorted(by_level.items()):
                on = next(v for k, v in runs.items() if k != 1)
                off = runs.get(1)
                gain = (on["rtfx"] / off["rtfx"]) if off and on["rtfx"] and off["rtfx"] else None
                rows.append([str(clients), f"{on['rtfx']:.3f}", f"{off['rtfx']:.3f}" if off else "-",
                             f"{gain:.2f}x" if gain else "-", f"{on['ttfa_ms']['p50']:,.0f}",
                             f"{off['ttfa_ms']['p50']:,.0f}" if off else "-", f"{on['errors']}/{off['errors']}"])
            parts.append(markdown_table(["clients", "RTFX batching on", "RTFX off", "on / off", "TTFA p50 ms on",
                                         "TTFA p50 ms off", "errors on/off"], rows) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.engine_streaming",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--voice", action="append", help="default, fixture or a bundle directory (repeatable; "
                                                         "default: both built-in voices)")
    parser.add_argument("--part", choices=("ttfa", "throughput", "all"), default="all")
    parser.add_argument("--threads", type=int, default=None,
                        help="engine intra-op threads (default: the backend's, onnxruntime: one per core)")
    parser.add_argument("--repeats", type=int, default=3, help="ttfa: runs per sentence and mode (default 3)")
    parser.add_argument("--concurrency", default="1,4,16", help="throughput: clients per level (default 1,4,16)")
    parser.add_argument("--rounds", type=int, default=1, help="throughput: requests per client (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="throughput: warm-up requests per level")
    parser.add_argument("--max-batch", type=int, default=16, help="throughput: max_batch with batching on")
    parser.add_argument("--cache-dir", type=Path, help="where built voices are cached")
    parser.add_argument("--fixture-dir", type=Path, default=FIXTURE_DIR)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the markdown tables here (also printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c]
        result: dict[str, Any] = {
            "benchmark": "engine_streaming/1",
            "created": utc_now(),
            "command": " ".join(["python -m vitsrt.benchmarks.engine_streaming", *(argv or sys.argv[1:])]),
            "cpu": cpu_name(),
            "threads": args.threads,
            "load_avg_start": load_average(),
            "versions": package_versions("onnxruntime", "numpy"),
            "git": git_revision(),
            "voices": [],
        }
        for name in args.voice or ["default", "fixture"]:
            voice_dir = resolve_voice(name, args.cache_dir, args.fixture_dir)
            entry: dict[str, Any] = {"voice": name, "voice_dir": str(voice_dir)}
            if args.part in ("ttfa", "all"):
                entry["ttfa"] = measure_ttfa(voice_dir, args.threads, args.repeats)
            if args.part in ("throughput", "all"):
                entry["throughput"] = measure_throughput(voice_dir, args.threads, levels, args.rounds, args.warmup,
                                                         args.max_batch)
            result["voices"].append(entry)
        result["load_avg_end"] = load_average()
    except VitsrtError as exc:
        print(f"engine_streaming: error: {exc}", file=sys.stderr)
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
