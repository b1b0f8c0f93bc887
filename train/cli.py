"""`vitsrt train -c CONFIG -m RUN_DIR`: train or fine-tune a voice (also `torchrun -m vitsrt.train ...`).

The arguments and the run, shared by `vitsrt train` (vitsrt.commands.train) and `python -m vitsrt.train`.
Light at import: the CLI builds every subcommand's parser; torch is imported inside `run`.

SIGTERM or Ctrl-C stops the run after the current step with a checkpoint and exit status 0; the same
command resumes it. A second Ctrl-C stops at once (exit 130).
"""

from __future__ import annotations

import argparse
import json

HELP = "train a voice from a prepared dataset (multi-GPU / multi-process: torchrun -m vitsrt.train ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="config.json written by `vitsrt prepare`")
    parser.add_argument("-m", "--model-dir", help="run folder: checkpoints, tensorboard logs, a copy of the config")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (default: train.epochs)")
    parser.add_argument("--init-g", help="base generator to fine-tune from (default: RUN_DIR/G_0.pth if present)")
    parser.add_argument("--init-d", help="base multi-period discriminator (default: RUN_DIR/D_0.pth if present)")
    parser.add_argument("--init-dur", help="base duration discriminator (default: RUN_DIR/DUR_0.pth if present)")
    parser.add_argument(
        "--allow-partial-init",
        action="store_true",
        help="start from a base generator even if some of its tensors do not fit this config (they keep their "
        "fresh init); without it such a base is refused (a different speaker count alone is always accepted)",
    )
    parser.add_argument(
        "--backend", choices=("nccl", "gloo"), help="distributed backend (default: nccl on GPU, gloo on CPU)"
    )
    parser.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK when available, else cpu)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a train-section key for this run, VALUE as JSON (e.g. --set batch_size=8)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--smoke", action="store_true", help="train a few steps on a generated dataset (install check)")
    parser.add_argument("--smoke-steps", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--smoke-family", choices=("bert-vits2", "bert-vits2-2.2", "vits"), default="bert-vits2",
                        help="with --smoke: the model family to train (default: bert-vits2)")
    parser.add_argument("--param-digest", action="store_true", help=argparse.SUPPRESS)


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    from vitsrt.errors import InputError

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError("--set", f"expected KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitsrt.errors import InputError

    if args.smoke:
        from vitsrt.train.smoke import run_smoke

        report = run_smoke(Path(args.model_dir) if args.model_dir else None, steps=args.smoke_steps,
                           family=args.smoke_family)
        print(report)
        return 0
    if not args.config or not args.model_dir:
        raise InputError("arguments", "-c CONFIG and -m RUN_DIR are required (or --smoke)")
    from vitsrt.train.loop import RunSettings, run_training

    settings = RunSettings(
        config=Path(args.config),
        run_dir=Path(args.model_dir),
        max_steps=args.max_steps,
        init_generator=Path(args.init_g) if args.init_g else None,
        init_discriminator=Path(args.init_d) if args.init_d else None,
        init_duration_discriminator=Path(args.init_dur) if args.init_dur else None,
        backend=args.backend,
        device=args.device,
        progress=not args.no_progress,
        allow_partial_init=args.allow_partial_init,
        param_digest=args.param_digest,
        overrides=parse_overrides(args.set),
    )
    position = run_training(settings)
    if position.stopped_by:
        print(f"stopped by {position.stopped_by} at step {position.step}; checkpoint in {settings.run_dir}")
    else:
        print(f"finished at step {position.step} (epoch {position.epoch}); checkpoints in {settings.run_dir}")
    return 0
