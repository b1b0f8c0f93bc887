"""`vitsrt bench`: arguments and the run. Light at import (the CLI builds every subcommand's parser);
the engine, torch, grpc and matplotlib are imported only when a run needs them.

    vitsrt bench --target engine --voice VOICE_DIR --concurrency 1,4,16 --requests 40 --json out.json
    vitsrt bench --target torch --checkpoint G.pth --config config.json --concurrency 1,4 --no-stream
    vitsrt bench --target grpc --server 127.0.0.1:50051 --rate 2 --duration 60
    vitsrt bench --compare torch.json engine.json [more.json ...] [--markdown]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from vitsrt.serve.engine.windows import add_window_arguments, window_fields

log = logging.getLogger(__name__)

TARGETS = ("engine", "grpc", "triton", "torch")
DESCRIPTION = ("Benchmark the engine, a gRPC or Triton server, or PyTorch eager: time to first audio, latency "
               "percentiles, real-time factor, throughput under concurrency.")


def _int_list(value: str) -> list[int]:
    try:
        items = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {value!r}") from None
    if not items or any(i < 1 for i in items):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return items


def _float_list(value: str) -> list[float]:
    try:
        items = [float(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {value!r}") from None
    if not items or any(not (r > 0) for r in items):
        raise argparse.ArgumentTypeError(f"expected positive rates, got {value!r}")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("target")
    what.add_argument("--target", choices=TARGETS, default="engine",
                      help="engine: in-process engine; grpc: a `vitsrt serve` server; triton: a Triton server; "
                           "torch: PyTorch eager infer on the checkpoint (default: engine)")
    what.add_argument("--voice", help="engine: voice bundle directory (default: the shipped default voice); "
                                      "grpc/triton: voice name on the server "
                                      "(or the bundle directory, for its id tables)")
    what.add_argument("--random-voice", type=int, nargs="?", const=0, default=None, metavar="SEED",
                      help="benchmark a random default-size Bert-VITS2 2.3 voice (built and exported once, "
                           "cached); fills in --voice/--checkpoint/--config. Needs torch")
    what.add_argument("--cache-dir", type=Path, help="where --random-voice keeps its voices "
                                                     "(default $VITSRT_BENCH_CACHE or ~/.cache/vitsrt/bench)")
    what.add_argument("--server", help="grpc/triton: HOST:PORT")
    what.add_argument("--token", help="grpc: bearer token")
    what.add_argument("--connect-timeout", type=float, default=10.0,
                      help="grpc/triton: seconds to wait for the server before giving up (default 10)")
    what.add_argument("--backend", default="onnxruntime",
                      help="engine backend: onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt, torch, ...")
    what.add_argument("--checkpoint", help="torch target (and the engine's torch backend): G_*.pth")
    what.add_argument("--config", help="torch target (and the engine's torch backend): config.json")
    what.add_argument("--device", default="cpu", help="torch target: cpu or cuda")
    what.add_argument("--torch-serial", action="store_true",
                      help="torch target: one infer call at a time (default: concurrent calls in threads)")
    what.add_argument("--threads", type=int, help="intra-op threads (engine backend / torch)")
    what.add_argument("--label", help="name of this run in tables and comparisons")

    eng = parser.add_argument_group("engine options (default: the engine's)")
    eng.add_argument("--max-batch", type=int)
    eng.add_argument("--lanes", type=int, help="execution lanes (default: from the core count; --threads is per lane)")
    eng.add_argument("--max-wait-ms", type=float)
    eng.add_argument("--max-active-streams", type=int)
    eng.add_argument("--spinning", choices=("on", "off"), help="onnxruntime intra-op threads spin-wait between calls")
    add_window_arguments(parser, "engine decode windows (default: the engine's)")

    work = parser.add_argument_group("workload")
    work.add_argument("--texts", type=Path, help="one request text per line (default: the built-in sentences)")
    work.add_argument("--lengths", default="mixed", choices=("short", "medium", "long", "mixed"),
                      help="built-in sentences: short ~6-9 words, medium ~20, long ~60, or all (default)")
    work.add_argument("--speaker", default="", help="speaker name (default: the voice's first)")
    work.add_argument("--seed", type=int, default=0, help="request k of a level uses seed+k (default 0)")
    work.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                      help="streaming requests (default for engine/grpc) or whole-utterance (--no-stream)")

    load = parser.add_argument_group("load")
    load.add_argument("--concurrency", type=_int_list, help="closed loop: clients per level, e.g. 1,4,16")
    load.add_argument("--rate", type=_float_list, help="open loop: Poisson arrivals per second, e.g. 0.5,1")
    load.add_argument("--requests", type=int, help="measured requests per level (default 20 without --duration)")
    load.add_argument("--duration", type=float, help="seconds per level instead of a request count")
    load.add_argument("--warmup", type=int, default=2, help="warm-up requests per level, not measured (default 2)")

    out = parser.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write the report (schema vitsrt.bench/1) to this file")
    out.add_argument("--plot", type=Path, help="write latency/throughput plots to this PNG (with --compare: the "
                                                "compared metrics side by side)")
    out.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--compare", type=Path, nargs="+", metavar="REPORT.json",
                     help="compare saved reports side by side (the first is the baseline) and exit")
    out.add_argument("--print-schema", action="store_true", help="print the report's JSON Schema and exit")


def run(args: argparse.Namespace) -> int:
    from vitsrt.errors import InputError

    if args.print_schema:
        import json

        from vitsrt.benchmarks.schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.compare:
        return compare(args)
    if not args.concurrency and not args.rate:
        args.concurrency = [1]
    if args.requests is None and args.duration is None:
        args.requests = 20
    for name in ("requests", "duration"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InputError(name, "must be > 0")
    if args.warmup < 0:
        raise InputError("warmup", "must be >= 0")

    import asyncio

    from vitsrt.benchmarks.report import plot_report, print_report, write_report

    options = target_options(args)
    report = asyncio.run(bench(args, options))
    print_report(report)
    if args.markdown:
        from vitsrt.benchmarks.report import level_rows, markdown_table

        print(markdown_table(*level_rows(report.levels)))
    if args.json:
        write_report(report, args.json)
        log.info("wrote %s", args.json)
    if args.plot:
        plot_report(report, args.plot)
        log.info("wrote %s", args.plot)
    return 0


def compare(args: argparse.Namespace) -> int:
    """--compare: the table, and with --plot the same metrics as bar charts."""
    from vitsrt.benchmarks.report import plot_compare, print_compare, read_report
    from vitsrt.errors import InputError

    if args.json:  # a comparison is not a report: refuse instead of silently writing nothing
        raise InputError("json", "--json writes the report of a run; --compare only reads reports")
    reports = [read_report(p) for p in args.compare]
    print_compare(reports, markdown=args.markdown)
    if args.plot:
        plot_compare(reports, args.plot)
        log.info("wrote %s", args.plot)
    return 0


def target_options(args: argparse.Namespace) -> Any:
    from vitsrt.benchmarks.targets import TargetOptions

    voice, checkpoint, config = args.voice, args.checkpoint, args.config
    if args.random_voice is not None:
        from vitsrt.benchmarks.voices import random_default_voice

        built = random_default_voice(args.cache_dir, seed=args.random_voice)
        voice = voice or str(built.voice_dir)
        checkpoint = checkpoint or str(built.checkpoint)
        config = config or str(built.config)
    if not voice and args.target == "engine":
        from vitsrt.voices import default_voice_dir

        voice = str(default_voice_dir())
    engine = {
        name: getattr(args, name)
        for name in ("max_batch", "lanes", "max_wait_ms", "max_active_streams")
        if getattr(args, name) is not None
    }
    if windows := window_fields(args):
        engine["windows"] = windows
    if args.spinning is not None:
        engine["spinning"] = args.spinning == "on"
    return TargetOptions(
        voice=voice, speaker=args.speaker, stream=args.stream, label=args.label, threads=args.threads,
        backend=args.backend, engine=engine, checkpoint=checkpoint, config=config, device=args.device,
        torch_serial=args.torch_serial, server=args.server, token=args.token,
        connect_timeout_s=args.connect_timeout,
    )


async def bench(args: argparse.Namespace, options: Any) -> Any:
    """Open the target, run every level, close it; returns the `BenchReport`."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from vitsrt.benchmarks.load import LoadLevel, run_level
    from vitsrt.benchmarks.metrics import summarize
    from vitsrt.benchmarks.report import environment, load_average, utc_now
    from vitsrt.benchmarks.schema import BenchReport, WorkloadInfo
    from vitsrt.benchmarks.targets import open_target
    from vitsrt.benchmarks.workload import Workload, builtin_texts, load_texts

    levels = [LoadLevel("closed", concurrency=c) for c in args.concurrency or []]
    levels += [LoadLevel("open", rate=r) for r in args.rate or []]
    texts = load_texts(args.texts) if args.texts else builtin_texts(args.lengths)
    source = str(args.texts) if args.texts else f"builtin:{args.lengths}"
    # Blocking calls (one-shot engine requests, torch infer) run in the loop's executor: one thread per
    # client in flight, or the default pool would silently cap the concurrency.
    workers = max([*(args.concurrency or [1]), 1]) + 4 if not args.rate else 128
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="bench"))

    created, load_start = utc_now(), load_average()
    target = open_target(args.target, options)
    try:
        await target.open()
        workload = Workload(texts, target.ids_spec(), source=source)
        results = []
        with _progress(args.no_progress) as progress:
            for level in levels:
                ran = await run_level(target, workload, level, requests=args.requests, duration_s=args.duration,
                                      warmup=args.warmup, seed=args.seed, progress=progress)
                results.append(summarize(ran.timings, mode=level.mode, concurrency=level.concurrency,
                                         rate=level.rate, counters=ran.counters))
        info, versions = target.info(), target.versions()
    finally:
        await target.close()
    return BenchReport(
        created=created,
        command=_command_line(),
        target=info,
        environment=environment(versions, load_start),
        workload=WorkloadInfo(**workload.describe(), speaker=args.speaker, seed=args.seed, warmup=args.warmup,
                              requests=args.requests, duration_s=args.duration),
        levels=results,
    )


def _command_line() -> str:
    import shlex

    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "vitsrt"
    return shlex.join(["vitsrt" if program in ("vitsrt", "__main__.py") else program, *sys.argv[1:]])


class _RichProgress:
    """A progress bar on stderr (rich), one task per level."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self._task: Any = None
        self._warmup = False

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, description: str, total: int | None) -> None:
        if self._task is not None and self._warmup:
            self._progress.update(self._task, visible=False)  # warm-up bars go once the level starts
        self._warmup = description.endswith("warm-up")
        self._task = self._progress.add_task(description, total=total)

    def advance(self) -> None:
        self._progress.advance(self._task)


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, description: str, total: int | None) -> None:
        return None

    def advance(self) -> None:
        return None


def _progress(disabled: bool) -> Any:
    if disabled:
        return _Quiet()
    try:
        return _RichProgress()
    except ImportError:
        return _Quiet()


def main(argv: list[str] | None = None) -> int:
    """`python -m vitsrt.benchmarks`: the same as `vitsrt bench`, with the same error handling (a clear
    one-line message and exit status 2 for expected failures, never a traceback)."""
    from vitsrt.errors import VitsrtError

    parser = argparse.ArgumentParser(prog="vitsrt bench", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    add_arguments(parser)
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        print("vitsrt bench: error: needs PyTorch: pip install 'vitsrt[torch]'", file=sys.stderr)
        return 2
    except VitsrtError as exc:
        print(f"vitsrt bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitsrt bench: interrupted", file=sys.stderr)
        return 130
