"""The `vitsrt` command.

Each subcommand is a light module in `vitsrt.commands` (argument parsing only); the heavy imports (torch,
onnxruntime, grpc) happen inside its `run`, so `vitsrt serve` never imports torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from vitsrt import __version__
from vitsrt.errors import VitsrtError

log = logging.getLogger("vitsrt")

# Subcommand modules in vitsrt.commands; each defines HELP, `add_arguments(parser)` and `run(args) -> int`.
SUBCOMMANDS = (
    "info", "export", "synth", "serve", "client", "prepare", "train", "bench", "build-engines", "triton-repo",
    "triton-serve", "eval", "doctor", "g2p", "import-piper", "clap-features",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitsrt", description="Deployment engine for VITS-family TTS.")
    parser.add_argument("--version", action="version", version=f"vitsrt {__version__}")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"vitsrt.commands.{name.replace('-', '_')}")
        child = sub.add_parser(name, help=module.HELP, description=module.HELP)
        child.set_defaults(_run=module.run)
        module.add_arguments(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    run: Callable[[argparse.Namespace], int] = args._run
    try:
        return int(run(args) or 0)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        print(f"vitsrt {args.command}: error: needs PyTorch: pip install 'vitsrt[torch]'", file=sys.stderr)
        return 2
    except VitsrtError as exc:
        print(f"vitsrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # an option model (EngineOptions, ServerConfig, ...) refused a flag's value
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or exc.title
        print(f"vitsrt {args.command}: error: {where}: {first['msg']}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vitsrt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
