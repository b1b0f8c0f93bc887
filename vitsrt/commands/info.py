"""`vitsrt info CHECKPOINT -c CONFIG`: what a Bert-VITS2 checkpoint is."""

from __future__ import annotations

import argparse

HELP = "describe a Bert-VITS2 checkpoint: version, speakers, sample rate, parameter counts per module"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="G_*.pth generator checkpoint (upstream format or bare state_dict)")
    parser.add_argument("-c", "--config", required=True, help="the model's config.json")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from vitsrt.train.info import describe_checkpoint

    report = describe_checkpoint(args.checkpoint, args.config)
    print(report.model_dump_json(indent=2) if args.json else report.render())
    return 0
