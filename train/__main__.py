"""`python -m vitsrt.train` / `torchrun --nproc_per_node N -m vitsrt.train -c CONFIG -m RUN_DIR`.

Same arguments as `vitsrt train`. Every rank logs; rank 0 at INFO, the others at WARNING with
their rank in the prefix, so a problem on any rank reaches the console.

Stopping: SIGTERM or SIGINT to a worker (or to torchrun, which forwards it to every worker) makes all
ranks stop after the same step; rank 0 writes a checkpoint and the workers exit 0. torchrun itself exits
non-zero when it was the one signalled, and kills workers still running after --shutdown_timeout
(30 s by default): raise it if a step plus a checkpoint takes longer.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vitsrt.errors import VitsrtError
from vitsrt.train import cli as train_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.train", description=train_cli.HELP)
    train_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(levelname)s [rank{rank}] %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    try:
        return train_cli.run(args)
    except VitsrtError as exc:
        print(f"vitsrt.train [rank{rank}]: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C in a single-process run: stopped without a checkpoint
        print(f"vitsrt.train [rank{rank}]: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
