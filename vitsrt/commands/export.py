"""`vitsrt export CHECKPOINT -c CONFIG -o VOICE_DIR`: a Bert-VITS2 checkpoint -> a voice bundle."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from vitsrt.commands import add_sampling_arguments, sampling_arguments

if TYPE_CHECKING:
    from vitsrt.voice import InferenceDefaults

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
    parser.add_argument("--weights", choices=["fp32", "fp16"], default="fp32",
                        help="how the graphs store their weights: fp16 halves the bundle (computed in float32; "
                        "verified against PyTorch at looser tolerances)")
    add_sampling_arguments(parser, "sampling defaults stored in voice.json (unset: upstream's web UI values: "
                           "length 1.0, noise 0.6, noise_w 0.9, SDP ratio 0.5)")


def inference_defaults(args: argparse.Namespace) -> InferenceDefaults:
    """The sampling defaults the command line sets (unset ones keep InferenceDefaults' values)."""
    from pydantic import ValidationError

    from vitsrt.errors import InputError
    from vitsrt.voice import InferenceDefaults

    try:
        return InferenceDefaults(**sampling_arguments(args))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"--{str(error['loc'][0]).replace('_', '-')}", error["msg"]) from None


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
        inference=inference_defaults(args),
        weights=args.weights,
    )
    print(out)
    return 0
