"""`vitsrt train -c CONFIG -m RUN_DIR`: train or fine-tune a voice.

The implementation lives in `vitsrt.train.cli`, which `python -m vitsrt.train` (and torchrun) uses too:
the command calls into the wing, never the other way round (docs/architecture.md)."""

from __future__ import annotations

from vitsrt.train.cli import HELP, add_arguments, run

__all__ = ["HELP", "add_arguments", "run"]
