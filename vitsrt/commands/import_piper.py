"""`vitsrt import-piper VOICE.onnx [-c VOICE.onnx.json] -o VOICE_DIR`: a piper voice -> a vitsrt voice bundle."""

from __future__ import annotations

import argparse

HELP = ("rebuild a piper voice (VOICE.onnx + VOICE.onnx.json) as a vitsrt voice bundle: split graphs checked "
        "against the piper graph itself")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="VOICE.onnx", help="the piper voice's ONNX graph")
    parser.add_argument("-c", "--config", metavar="VOICE.onnx.json",
                        help="the piper voice's config (default: the graph's path + .json)")
    parser.add_argument("-o", "--output", required=True, metavar="VOICE_DIR", help="voice directory to create")
    parser.add_argument("--name", help="voice name in voice.json (default: the directory name)")
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare the rebuilt model and the bundle with the piper graph (noise 0, per sample, 1e-4) and the "
        "split graphs with the model; fail over tolerance (default on)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty VOICE_DIR")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for --verify")


def run(args: argparse.Namespace) -> int:
    from vitsrt.export.piper_import import import_piper
    from vitsrt.export.verify import render_parity_table

    out, parity = import_piper(args.model, args.output, config_path=args.config, name=args.name, force=args.force,
                               verify=args.verify, threads=args.threads)
    if parity:
        print(render_parity_table(parity))
    print(out)
    return 0
