"""`vitsrt bench`: time to first audio, latency percentiles, real-time factor and throughput under load.

The implementation lives in `vitsrt.benchmarks.cli` (light at import; heavy modules load inside `run`)."""

from __future__ import annotations

import argparse

HELP = "benchmark the engine, a gRPC/Triton server or PyTorch eager: TTFA, latency percentiles, RTF, throughput"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vitsrt.benchmarks.cli import add_arguments as bench_arguments

    bench_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from vitsrt.benchmarks.cli import run as bench_run

    return bench_run(args)
