"""Finish a lock written by pip-compile: drop vitsrt's own entry, keep everything else as resolved.

pip-compile lists the project itself (`vitsrt @ file:///...`, an absolute path of the machine that ran it)
because the `train` extra names `vitsrt[torch]`; the Makefile installs vitsrt from the checkout instead.

    python requirements/finish_lock.py requirements/test.lock.new requirements/test.lock
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = "# Written by `make lock` (pip-compile from pyproject.toml's ranges + requirements/pins.txt); do not edit.\n"


def finish(text: str) -> str:
    kept: list[str] = []
    skipping = False
    lines = text.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("#")):  # pip-compile's header names paths
        lines.pop(0)
    for line in lines:
        if line.startswith("vitsrt @ "):
            skipping = True
            continue
        if skipping and line.startswith("    "):  # the entry's "# via" lines
            continue
        skipping = False
        if not line.startswith("# WARNING") and "hashable URL" not in line:
            kept.append(line)
    return HEADER + "\n".join(kept).strip("\n") + "\n"


def main(source: str, target: str) -> int:
    new = Path(source)
    Path(target).write_text(finish(new.read_text()))
    new.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
