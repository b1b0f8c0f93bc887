"""What the gRPC front door costs: streaming synthesis over `vitsrt serve` vs the same engine in-process.

    python -m vitsrt.benchmarks.grpc_overhead [--voice DIR | --default-size] [--concurrency 1 16]
        [--requests 32] [--rounds 2] [--output benchmarks/results/grpc-overhead.md]

Both paths run the same engine options on the same requests (the built-in mixed-length workload, in a
fixed order, one seed per request) at each concurrency level:

* in-process: `Engine.astream` consumed by N asyncio tasks in this process;
* gRPC: `vitsrt serve` started as a separate process on 127.0.0.1, N grpc.aio streaming calls from this
  process (the deployment shape: client and server in different processes, here on one machine).

Time to first audio (TTFA) is measured from issuing the request to receiving the first audio chunk; latency
to receiving the last. The rounds alternate in-process / gRPC so slow drift in machine load (this runs on
shared CPUs) falls on both paths alike. Also reported: the round-trip time of an empty RPC (ListVoices), the
fixed per-call floor of the network path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vitsrt.benchmarks.grpc_overhead")

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "bertvits2-2.3-tiny"


@dataclass
class Samples:
    """Per-request timings of one path at one concurrency level (pooled over rounds)."""

    ttfa: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def add(self, other: Samples) -> None:
        self.ttfa += other.ttfa
        self.latency += other.latency
        self.audio_seconds += other.audio_seconds
        self.wall_seconds += other.wall_seconds

    def pct(self, which: str, q: float) -> float:
        return float(np.percentile(getattr(self, which), q)) * 1000.0


# ----- the two paths ---------------------------------------------------------------------------------


async def _drive(concurrency: int, count: int, one: Any) -> Samples:
    """Run `one(i)` for i in range(count) with `concurrency` workers; each returns (ttfa, latency, audio s)."""
    result = Samples()
    pending = iter(range(count))

    async def worker() -> None:
        for index in pending:
            ttfa, latency, audio = await one(index)
            result.ttfa.append(ttfa)
            result.latency.append(latency)
            result.audio_seconds += audio

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_seconds = time.perf_counter() - started
    return result


async def run_in_process(engine: Any, requests: Sequence[Any], concurrency: int) -> Samples:
    async def one(index: int) -> tuple[float, float, float]:
        started = time.perf_counter()
        first, samples, rate = None, 0, 1
        async with contextlib.aclosing(engine.astream(requests[index])) as chunks:
            async for chunk in chunks:
                if first is None:
                    first = time.perf_counter() - started
                samples += len(chunk.audio)
                rate = chunk.sample_rate
        return first or 0.0, time.perf_counter() - started, samples / rate

    return await _drive(concurrency, len(requests), one)


async def run_grpc(target: str, messages: Sequence[Any], concurrency: int) -> Samples:
    import grpc

    from vitsrt.serve.proto import tts_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)

        async def one(index: int) -> tuple[float, float, float]:
            started = time.perf_counter()
            first, data, rate = None, 0, 1
            async for chunk in stub.SynthesizeStream(messages[index]):
                if first is None:
                    first = time.perf_counter() - started
                data += len(chunk.audio)
                rate = chunk.sample_rate
            return first or 0.0, time.perf_counter() - started, data / 2 / rate  # PCM_S16LE: 2 bytes a sample

        return await _drive(concurrency, len(messages), one)


async def empty_rpc_seconds(target: str, calls: int = 200) -> list[float]:
    import grpc

    from vitsrt.serve.proto import tts_pb2, tts_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = tts_pb2_grpc.TextToSpeechStub(channel)
        await stub.ListVoices(tts_pb2.ListVoicesRequest())
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            await stub.ListVoices(tts_pb2.ListVoicesRequest())
            times.append(time.perf_counter() - started)
        return times


# ----- the server process ----------------------------------------------------------------------------


class ServeProcess:
    """`vitsrt serve` on a free loopback port, with the engine flags of the in-process run."""

    def __init__(self, voice_dir: Path, engine_flags: list[str]):
        self.command = [sys.executable, "-m", "vitsrt.cli", "serve", "-v", str(voice_dir), "--host", "127.0.0.1",
                        "--port", "0", "--max-concurrent-streams", "256", *engine_flags]
        self.process = subprocess.Popen(self.command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.target = self._wait_for_port()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)

    def _wait_for_port(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            if match := re.search(r"serving \S+ on (127\.0\.0\.1:\d+)", line):
                return match.group(1)
        self.close()
        raise RuntimeError("vitsrt serve did not start:\n" + "".join(seen))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# ----- the benchmark ---------------------------------------------------------------------------------


def pick_voice(args: argparse.Namespace) -> Path:
    if args.voice:
        return Path(args.voice)
    from vitsrt.benchmarks import voices

    if args.default_size:
        return voices.random_default_voice().voice_dir
    return voices.exported_voice(FIXTURE / "G_0.pth", FIXTURE / "config.json", name="fixture").voice_dir


def build_requests(voice_dir: Path, count: int, mix: str) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """(engine requests, the same as proto messages, workload description)."""
    from vitsrt.benchmarks.workload import IdsSpec, Workload, builtin_texts
    from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest
    from vitsrt.serve.grpc.client import build_request
    from vitsrt.voice import load_voice

    front_end = load_voice(voice_dir).manifest.front_end
    spec = None
    if front_end.kind == "ids":
        spec = IdsSpec(n_symbols=front_end.num_symbols, add_blank=front_end.add_blank, blank_id=front_end.blank_id,
                       symbols=tuple(front_end.symbols) if front_end.symbols else None)
    workload = Workload(builtin_texts(mix), spec)
    engine_requests, messages = [], []
    for index in range(count):
        item = workload.item(index)
        seed = 1000 + index
        if item.phonemes is not None:
            ids = {"phone_ids": item.phonemes.phone_ids, "tone_ids": item.phonemes.tone_ids,
                   "language_ids": item.phonemes.language_ids}
            engine_requests.append(SynthesisRequest(phonemes=PhonemeIds(**ids), seed=seed))
            messages.append(build_request(**ids, seed=seed))
        else:
            engine_requests.append(SynthesisRequest(text=item.text, seed=seed))
            messages.append(build_request(item.text, seed=seed))
    return engine_requests, messages, workload.describe()


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def _pooled(rounds: list[Samples]) -> Samples:
    pooled = Samples()
    for samples in rounds:
        pooled.add(samples)
    return pooled


def render(results: dict[tuple[str, int], list[Samples]], rtt: list[float], args: argparse.Namespace, voice: Path,
           workload: dict[str, Any], load: tuple[str, str]) -> str:
    import grpc

    lines = [
        "# gRPC overhead: `vitsrt serve` vs the in-process engine",
        "",
        f"Command: `python -m vitsrt.benchmarks.grpc_overhead {shlex.join(sys.argv[1:])}`",
        "",
        f"- machine: {_machine()}; load average (1/5/15 min) before: {load[0]}, after: {load[1]}",
        f"- grpcio {grpc.__version__}; server and client on 127.0.0.1, separate processes",
        f"- voice: `{voice}`; engine: max_batch {args.max_batch}, max_wait_ms {args.max_wait_ms}, "
        f"threads {args.threads or 'runtime default'}",
        f"- workload: built-in '{args.lengths}' sentences, {workload['texts']} texts "
        f"({workload['words_min']}-{workload['words_max']} words"
        + (f", stand-in ids, mean {workload['tokens_mean']:.0f} tokens" if workload.get("stand_in_ids") else "")
        + f"); {args.requests} streaming requests per round, {args.rounds} rounds per level alternating the paths",
        f"- empty RPC (ListVoices) round trip: p50 {np.percentile(rtt, 50) * 1000:.2f} ms, "
        f"p95 {np.percentile(rtt, 95) * 1000:.2f} ms",
        "",
        "All requests of a level, pooled over its rounds:",
        "",
        "| path | concurrency | requests | TTFA p50 ms | TTFA p95 ms | latency p50 ms | latency p95 ms | "
        "audio s / wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in args.concurrency:
        for path in ("in-process", "grpc"):
            s = _pooled(results[(path, concurrency)])
            lines.append(f"| {path} | {concurrency} | {len(s.latency)} | {s.pct('ttfa', 50):.1f} | "
                         f"{s.pct('ttfa', 95):.1f} | {s.pct('latency', 50):.1f} | {s.pct('latency', 95):.1f} | "
                         f"{s.audio_seconds / s.wall_seconds:.2f} |")
    lines += ["", "Overhead, gRPC minus in-process: pooled percentiles, and the median [min, max] over rounds of the "
              "difference between a gRPC round and the in-process round next to it (the spread is the noise of "
              "this machine):", "",
              "| concurrency | TTFA p50 | TTFA p95 | latency p50 | latency p95 | per-round TTFA p50 diff | "
              "per-round latency p50 diff |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for concurrency in args.concurrency:
        local, remote = results[("in-process", concurrency)], results[("grpc", concurrency)]
        pooled_local, pooled_remote = _pooled(local), _pooled(remote)
        cells = []
        for which, q in (("ttfa", 50), ("ttfa", 95), ("latency", 50), ("latency", 95)):
            base, over = pooled_local.pct(which, q), pooled_remote.pct(which, q)
            cells.append(f"{over - base:+.1f} ms ({(over - base) / base * 100:+.1f}%)")
        for which in ("ttfa", "latency"):
            diffs = [r.pct(which, 50) - l.pct(which, 50) for l, r in zip(local, remote, strict=True)]
            cells.append(f"{np.median(diffs):+.1f} ms [{min(diffs):+.1f}, {max(diffs):+.1f}]")
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voice", help="a voice bundle directory (default: the fixture voice, exported once)")
    parser.add_argument("--default-size", action="store_true", help="a random default-size 2.3 voice (cached)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=32, help="requests per level and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating in-process/gRPC rounds per level")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests per path before measuring")
    parser.add_argument("--lengths", default="mixed", help="built-in sentence mix (see benchmarks/workload.py)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per backend session")
    parser.add_argument("--output", type=Path, help="write the markdown report here (also printed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from vitsrt.serve.engine.engine import Engine, EngineOptions

    voice = pick_voice(args)
    count = max(args.requests, max(args.concurrency))
    engine_requests, messages, workload = build_requests(voice, count, args.lengths)
    flags = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    if args.threads:
        flags += ["--threads", str(args.threads)]
    options = EngineOptions(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, threads=args.threads,
                            max_active_streams=256)
    load_before = _load()
    results: dict[tuple[str, int], list[Samples]] = {}
    engine = Engine.open([voice], options=options)
    server = ServeProcess(voice, flags)
    try:
        asyncio.run(run_in_process(engine, engine_requests[: args.warmup], 1))
        asyncio.run(run_grpc(server.target, messages[: args.warmup], 1))
        rtt = asyncio.run(empty_rpc_seconds(server.target))
        for concurrency in args.concurrency:
            for round_index in range(args.rounds):
                order = ("in-process", "grpc") if round_index % 2 == 0 else ("grpc", "in-process")
                for path in order:
                    if path == "in-process":
                        samples = asyncio.run(run_in_process(engine, engine_requests[:count], concurrency))
                    else:
                        samples = asyncio.run(run_grpc(server.target, messages[:count], concurrency))
                    results.setdefault((path, concurrency), []).append(samples)
                    log.info("%s c=%d round %d: TTFA p50 %.1f ms, latency p50 %.1f ms", path, concurrency,
                             round_index, samples.pct("ttfa", 50), samples.pct("latency", 50))
    finally:
        server.close()
        engine.close()
    report = render(results, rtt, args, voice, workload, (load_before, _load()))
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
