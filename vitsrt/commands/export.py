"""`vitsrt export CHECKPOINT -c CONFIG -o VOICE_DIR`: a Bert-VITS2 checkpoint -> a voice bundle."""

from __future__ import annotations

import argparse
import logging

HELP = "export a Bert-VITS2 checkpoint to a voice bundle (voice.json + encoder/duration/flow/decoder ONNX graphs)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="G_*.pth generator checkpoint (upstream format or bare state_dict)")
    parser.add_argument("-c", "--config", required=True, help="the model's config.json")
    parser.add_argument("-o", "--output", required=True, metavar="VOICE_DIR", help="voice directory to create")
    parser.add_argument("--name", help="voice name in voice.json (default: the directory name)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..22 (default 17)")
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare every graph with PyTorch on onnxruntime CPU and fail over tolerance (default on)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty VOICE_DIR")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for --verify")


def run(args: argparse.Namespace) -> int:
    from vitsrt.export.bundle import export_voice

    out = export_voice(
        args.checkpoint,
        args.config,
        args.output,
        name=args.name,
        opset=args.opset,
        verify=args.verify,
        force=args.force,
        threads=args.threads,
    )
    print(out)
    return 0
