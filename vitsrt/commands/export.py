"""`vitsrt export CHECKPOINT -c CONFIG -o VOICE_DIR`: a Bert-VITS2 checkpoint -> a voice bundle."""

from __future__ import annotations

import argparse
import logging

from pydantic import ValidationError

from vitsrt.commands import add_sampling_arguments, sampling_arguments
from vitsrt.errors import InputError
from vitsrt.sampling import Sampling

HELP = "export a Bert-VITS2 checkpoint to a voice bundle (voice.json + encoder/duration/flow/decoder ONNX graphs)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="G_*.pth generator checkpoint (upstream format or bare state_dict)")
    parser.add_argument("-c", "--config", required=True, help="the model's config.json")
    parser.add_argument("-o", "--output", required=True, metavar="VOICE_DIR", help="voice directory to create")
    parser.add_argument("--name", help="voice name in voice.json (default: the directory name)")
    parser.add_argument("--format", choices=["bundle", "piper"], default="bundle",
                        help="bundle: a vitsrt voice directory (default); piper: one VOICE.onnx + VOICE.onnx.json that "
                        "piper-tts, sherpa-onnx and Home Assistant load (vits-family checkpoints; -o names the .onnx "
                        "file or a directory for NAME.onnx; unset sampling values take piper's defaults)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..22 (default 17)")
    parser.add_argument("--decoder-layout", choices=["1d", "2d"], default=None,
                        help="how the decoder graph computes: 2d (default) runs HiFi-GAN as 2-D convolutions, which "
                        "onnxruntime's CPU provider executes faster; 1d the plain graph. Same inputs and outputs")
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
    parser.add_argument("--bert", action="append", default=[], metavar="LANG=DIR",
                        help="Bert-VITS2 text with BERT features: a local Hugging Face BERT directory for language "
                        "zh, ja or en (repeat per language), exported into the bundle; implies --front-end bv2")
    parser.add_argument("--front-end", choices=["ids", "bv2"], default=None,
                        help="Bert-VITS2 voices: ids (phoneme ids only; the default without --bert) or bv2 (text in "
                        "Chinese, Japanese, English; BERT features only for the --bert languages)")
    parser.add_argument("--clap", metavar="DIR", default=None,
                        help="Bert-VITS2 2.2 voices: a local Hugging Face CLAP directory (laion/clap-htsat-fused), "
                        "exported into the bundle so requests can give their emotion as a text prompt or a "
                        "reference clip")
    parser.add_argument("--emotion-prompt", metavar="TEXT", default=None,
                        help="Bert-VITS2 2.2 voices with --clap: the emotion prompt of requests that give none "
                        "(unset: a zero embedding)")
    upstream = ", ".join(f"{field} {value:g}" for field, value in Sampling())
    add_sampling_arguments(parser, f"sampling defaults stored in voice.json (unset: upstream's web UI values, "
                           f"{upstream})")


def inference_defaults(args: argparse.Namespace) -> Sampling:
    """The sampling defaults the command line sets (unset ones keep Sampling's, upstream's web UI values)."""
    try:
        return Sampling(**sampling_arguments(args))
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = "--" + str(error["loc"][0]).replace("_", "-")
        raise InputError(flag, error["msg"].removeprefix("Value error, ")) from None


def bert_arguments(args: argparse.Namespace) -> dict[str, str] | None:
    """``--bert LANG=DIR`` flags as {LANG: DIR}; None when the voice keeps the ids front end."""
    bert: dict[str, str] = {}
    for value in args.bert:
        language, sep, directory = value.partition("=")
        if not sep or not language or not directory:
            raise InputError("--bert", f"expected LANG=DIR (e.g. zh=./chinese-roberta-wwm-ext-large), got {value!r}")
        if language in bert:
            raise InputError("--bert", f"language {language!r} given twice")
        bert[language] = directory
    if args.front_end == "ids" and bert:
        raise InputError("--front-end", "--bert needs the bv2 front end")
    return bert if bert or args.front_end == "bv2" else None


def run(args: argparse.Namespace) -> int:
    if args.format == "piper":
        return _run_piper(args)
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
        bert=bert_arguments(args),
        clap=args.clap,
        emotion_prompt=args.emotion_prompt,
        **({} if args.decoder_layout is None else {"decoder_layout": args.decoder_layout}),
    )
    print(out)
    return 0


def _run_piper(args: argparse.Namespace) -> int:
    """``--format piper``: one piper voice file pair (vitsrt.export.piper_export)."""
    from vitsrt.export.piper_export import PIPER_SAMPLING, export_piper_voice

    if args.weights != "fp32" or getattr(args, "bert", None) or getattr(args, "clap", None):
        raise InputError("--format", "piper voices are one float32 graph: --weights fp16, --bert and --clap do not "
                         "apply")
    if getattr(args, "decoder_layout", None) is not None:
        raise InputError("--decoder-layout", "applies to bundles only (a piper voice is one graph)")
    inference_defaults(args)  # checks the sampling flags' ranges
    inference = PIPER_SAMPLING.model_copy(update=sampling_arguments(args))
    out = export_piper_voice(args.checkpoint, args.config, args.output, name=args.name, inference=inference,
                             verify=args.verify, force=args.force, threads=args.threads)
    print(out)
    return 0
