"""Subcommands of the `vitsrt` CLI: argument parsing here, heavy imports inside each `run`."""

from __future__ import annotations

import argparse

# The per-request sampling controls, by their SynthesisRequest / voice.json field names.
SAMPLING_HELP = {
    "length_scale": "speaking rate, >1 slower",
    "noise_scale": "prior noise",
    "noise_scale_w": "stochastic duration noise",
    "sdp_ratio": "stochastic share of the durations, 0..1",
}


def add_sampling_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    """--length-scale, --noise-scale, --noise-scale-w, --sdp-ratio (floats, unset = None) in a group `title`."""
    group = parser.add_argument_group(title)
    for field, help_text in SAMPLING_HELP.items():
        group.add_argument("--" + field.replace("_", "-"), type=float, help=help_text)


def sampling_arguments(args: argparse.Namespace) -> dict[str, float]:
    """The sampling controls the command line set, by field name (unset ones left out)."""
    return {field: value for field in SAMPLING_HELP if (value := getattr(args, field)) is not None}
