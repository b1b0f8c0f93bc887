"""`vitsrt prepare DATASET -o PREPARED_DIR -c CONFIG`: recordings + metadata, or tar shards -> a training-ready
folder."""

from __future__ import annotations

import argparse

HELP = "resample, trim, normalise and phonemise a dataset; write filelists, spectrograms and a training config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        nargs="+",
        help="folder with the recordings and a metadata file (path|speaker|language|text), or WebDataset-style "
        "tar shards (audio + .txt/.json transcript per key): shard files and/or folders of shards",
    )
    parser.add_argument("-o", "--output", required=True, help="prepared dataset folder (re-runs only do missing work)")
    parser.add_argument("-c", "--config", required=True, help="base config.json (model size, sample rate, training)")
    parser.add_argument(
        "--frontend", choices=("ipa", "chars"), default="ipa", help="text front end (default: ipa, espeak-ng)"
    )
    parser.add_argument("--language", default="en-us", help="language for metadata lines without one (default: en-us)")
    parser.add_argument(
        "--speaker", help="speaker for items that name none (default: the dataset's or shards' folder name)"
    )
    parser.add_argument(
        "--metadata", help="metadata file, relative to the dataset folder (default: metadata.list/.csv/.txt)"
    )
    parser.add_argument(
        "--workers", type=int, help="parallel worker processes (default: one per core for shards, 1 for a folder)"
    )
    parser.add_argument(
        "--shards",
        metavar="START:STOP",
        help="shard input: prepare only these shard indices now (finished shards are always reused and listed)",
    )
    parser.add_argument("--seed", type=int, default=1234, help="seed of the train/val split")
    parser.add_argument("--val-per-speaker", type=int, default=2, help="validation items per speaker (default: 2)")
    parser.add_argument("--max-val", type=int, default=12, help="validation items at most (default: 12)")
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--max-seconds", type=float, default=30.0)


def run(args: argparse.Namespace) -> int:
    from vitsrt.train.prepare import PrepareOptions, prepare_dataset

    options = PrepareOptions(
        frontend=args.frontend,
        language=args.language,
        speaker=args.speaker,
        metadata=args.metadata,
        workers=None if args.workers is None else max(1, args.workers),
        shards=args.shards,
        seed=args.seed,
        val_per_speaker=args.val_per_speaker,
        max_val=args.max_val,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
    )
    report = prepare_dataset(args.dataset, args.output, args.config, options)
    print(report.render())
    return 0
