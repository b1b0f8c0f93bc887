"""`vitsrt build-engines VOICE_DIR`: TensorRT plans for every stage, recorded in voice.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitsrt.serve.engine.windows import WindowPolicy, add_window_arguments, window_fields

HELP = "build TensorRT engines for a voice bundle's stages on this GPU (stored under VOICE_DIR/engines/)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("voice", help="voice bundle directory (voice.json + graphs)")
    parser.add_argument("--precision", choices=("fp32", "tf32", "fp16", "bf16"), default="fp32",
                        help="fp32 (TF32 off, closest to the ONNX graphs), tf32, or reduced precision with the "
                             "numerically sensitive ops kept in fp32 (default fp32)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch of every profile (default 8)")
    parser.add_argument("--max-text-len", type=int, default=512,
                        help="longest phone sequence (with blanks) the encoder/duration profiles accept (default 512)")
    parser.add_argument("--max-frames", type=int, default=4096,
                        help="longest utterance in frames for the flow and one-shot decoding (default 4096)")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit (default 4 GiB)")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="read and update this TensorRT timing cache file (faster rebuilds)")
    parser.add_argument("--stages", default=None, help="comma-separated subset of stages (default: all)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--strongly-typed", action="store_true",
                        help="TensorRT 10: use the mixed-precision ONNX + strongly typed network route "
                             "(always used on TensorRT 11)")
    add_window_arguments(parser, "the engine's decode windows (they size the decoder's window profile)")


def run(args: argparse.Namespace) -> int:
    from vitsrt.export.tensorrt_build import BuildOptions, ProfileLimits, build_engines

    options = BuildOptions(
        precision=args.precision,
        limits=ProfileLimits(max_batch=args.max_batch, max_text_len=args.max_text_len, max_frames=args.max_frames),
        policy=WindowPolicy(**window_fields(args)),
        workspace_gb=args.workspace_gb,
        timing_cache=args.timing_cache,
        stages=tuple(s for s in args.stages.split(",") if s) if args.stages else None,
        device_id=args.device,
        strongly_typed=True if args.strongly_typed else None,
    )
    built = build_engines(args.voice, options)
    for engine in built:
        print(f"{engine.stage:17s} {engine.file}")
    return 0
