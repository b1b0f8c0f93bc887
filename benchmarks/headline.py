"""The headline side-by-side: PyTorch eager vs the engine one-shot vs the engine streaming, interleaved.

    python -m vitsrt.benchmarks.headline --random-voice 0 --concurrency 1,4 --rounds 2 \
        --out-dir benchmarks/results --prefix 2026-11-22-headline

On a shared machine the load drifts during a run, so running the three targets one after another would
hand each a different machine. Here all three are opened in one process and take turns: for each level,
every round runs `concurrency` requests (one per client, closed loop) on each target, the order reversed
every other round (ABC, CBA, ...). Each target therefore samples the same stretches of load. Each
target gets one warm-up request per level. Round r sends requests r*c .. r*c+c-1 of the workload, the same
ones to every target, with the same seeds.

Writes one `vitsrt bench` report per target (PREFIX-<target>.json, so `vitsrt bench --compare` reads them;
wall time = the sum of that target's rounds) and PREFIX.md, the comparison table with the first target
as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vitsrt.benchmarks.load import LoadLevel, run_level
from vitsrt.benchmarks.metrics import EngineCounters, RequestTiming, summarize
from vitsrt.benchmarks.report import compare_rows, environment, load_average, markdown_table, utc_now, write_report
from vitsrt.benchmarks.schema import BenchReport, WorkloadInfo
from vitsrt.benchmarks.targets import BenchTarget, EngineTarget, TargetOptions, TorchTarget
from vitsrt.benchmarks.workload import Workload, builtin_texts
from vitsrt.errors import VitsrtError

log = logging.getLogger("vitsrt.benchmarks.headline")


def make_targets(voice_dir: str, checkpoint: str, config: str, torch_threads: int, engine_threads: int,
                 max_batch: int) -> dict[str, BenchTarget]:
    engine = {"max_batch": max_batch}
    return {
        "torch": TorchTarget(TargetOptions(checkpoint=checkpoint, config=config, stream=False, threads=torch_threads,
                                           label=f"torch eager ({torch_threads} thr)")),
        "engine-oneshot": EngineTarget(TargetOptions(voice=voice_dir, stream=False, threads=engine_threads,
                                                     engine=engine, label=f"engine one-shot ({engine_threads} thr)")),
        "engine-stream": EngineTarget(TargetOptions(voice=voice_dir, stream=True, threads=engine_threads,
                                                    engine=engine, label=f"engine stream ({engine_threads} thr)")),
    }


async def interleaved(targets: dict[str, BenchTarget], lengths: str, levels: list[int], rounds: int,
                      seed: int) -> dict[str, list[Any]]:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max(levels) + 4))
    for name, target in targets.items():
        log.info("opening %s", name)
        await target.open()
    try:
        specs = {name: t.ids_spec() for name, t in targets.items()}
        first = next(iter(specs.values()))
        if any(s != first for s in specs.values()):
            raise VitsrtError(f"the targets disagree on the voice's id tables: {specs}")
        workload = Workload(builtin_texts(lengths), first, source=f"builtin:{lengths}")
        results: dict[str, list[Any]] = {name: [] for name in targets}
        for clients in levels:
            level = LoadLevel("closed", concurrency=clients)
            timings: dict[str, list[RequestTiming]] = {name: [] for name in targets}
            walls = dict.fromkeys(targets, 0.0)
            counters: dict[str, EngineCounters | None] = dict.fromkeys(targets)
            for target in targets.values():  # warm-up: one request each
                await run_level(target, workload, LoadLevel("closed", concurrency=1), requests=1, duration_s=None,
                                warmup=0, seed=seed + (1 << 40))
            for r in range(rounds):
                order = list(targets) if r % 2 == 0 else list(reversed(targets))
                for name in order:
                    ran = await run_level(targets[name], workload, level, requests=clients, duration_s=None,
                                          warmup=0, seed=seed, offset=r * clients)
                    timings[name] += ran.timings
                    walls[name] += max(t.finished_at for t in ran.timings) - min(t.sent_at for t in ran.timings)
                    if ran.counters is not None:
                        prior = counters[name]
                        counters[name] = ran.counters if prior is None else prior.plus(ran.counters)
                    log.info("c=%d round %d %s: %.1f s", clients, r, name, walls[name])
            for name in targets:
                results[name].append(summarize(timings[name], mode="closed", concurrency=clients,
                                               counters=counters[name], wall_s=walls[name]))
        results["_workload"] = [workload]
        return results
    finally:
        for target in targets.values():
            await target.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.headline", description=__doc__.split("\n")[0])
    parser.add_argument("--random-voice", type=int, default=0, metavar="SEED",
                        help="the random default-size 2.3 voice to use (default seed 0)")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--voice", help="instead of the random voice: a bundle directory (with --checkpoint/--config "
                                        "of the same model, for the torch target)")
    parser.add_argument("--checkpoint")
    parser.add_argument("--config")
    parser.add_argument("--lengths", default="medium", choices=("short", "medium", "long", "mixed"))
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--engine-threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = " ".join(["python -m vitsrt.benchmarks.headline", *(argv if argv is not None else sys.argv[1:])])
    try:
        if args.voice:
            if not (args.checkpoint and args.config):
                raise VitsrtError("--voice needs --checkpoint and --config of the same model")
            voice_dir, checkpoint, config = args.voice, args.checkpoint, args.config
        else:
            from vitsrt.benchmarks.voices import random_default_voice

            built = random_default_voice(args.cache_dir, seed=args.random_voice)
            voice_dir, checkpoint, config = str(built.voice_dir), str(built.checkpoint), str(built.config)
        targets = make_targets(voice_dir, checkpoint, config, args.torch_threads, args.engine_threads, args.max_batch)
        levels = [int(c) for c in args.concurrency.split(",") if c]
        created, load_start = utc_now(), load_average()
        results = asyncio.run(interleaved(targets, args.lengths, levels, args.rounds, args.seed))
    except VitsrtError as exc:
        print(f"headline: error: {exc}", file=sys.stderr)
        return 2
    workload = results.pop("_workload")[0]
    reports = []
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, target in targets.items():
        report = BenchReport(
            created=created, command=command, target=target.info(),
            environment=environment(target.versions(), load_start),
            workload=WorkloadInfo(**workload.describe(), seed=args.seed, warmup=1, requests=None),
            levels=results[name],
        )
        write_report(report, args.out_dir / f"{args.prefix}-{name}.json")
        reports.append(report)
    table = markdown_table(*compare_rows(reports))
    env = reports[0].environment
    text = (f"{table}\n\nRatios: times better than {reports[0].target.label} (>1 is better). "
            f"{env.cpu} x{env.cpu_cores}, load average {env.load_avg_start} -> {env.load_avg_end}.\n")
    (args.out_dir / f"{args.prefix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
