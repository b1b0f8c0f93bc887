"""Subcommands of the `vitsrt` CLI: argument parsing here, heavy imports inside each `run`."""

from __future__ import annotations

import argparse

from vitsrt.sampling import Sampling


def add_sampling_arguments(parser: argparse.ArgumentParser, title: str) -> None:
    """A float flag per Sampling field (--length-scale for length_scale; unset = None) in a group `title`."""
    group = parser.add_argument_group(title)
    for field, info in Sampling.model_fields.items():
        group.add_argument("--" + field.replace("_", "-"), type=float, help=info.description)


def sampling_arguments(args: argparse.Namespace) -> dict[str, float]:
    """The sampling values the command line set, by field name (unset ones left out)."""
    return {field: value for field in Sampling.model_fields if (value := getattr(args, field)) is not None}
