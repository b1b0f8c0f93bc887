"""Training throughput and alignment-search speed on this machine: `python -m vitsrt.train.bench`.

Throughput: a generated dataset (toy utterances, as `--smoke` uses) is prepared, a `Trainer` is
built, and after warm-up steps the wall time of N full optimisation steps (generator and both
discriminators) is taken. Reported per step: steps/s and audio-seconds/s (seconds of training
utterances consumed per wall second, all ranks; the decoder itself only sees the random windows).
Alignment: the vectorised search against the plain per-cell reference on random scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitsrt.train.alignment import maximum_path_numpy, maximum_path_reference
from vitsrt.train.smoke import tiny_config_dict, write_toy_dataset


def small_voice_config(**train: Any) -> dict[str, Any]:
    """A small 16 kHz voice of the size issue 9 aims at (residual flow, small discriminator)."""
    config = tiny_config_dict(**train)
    config["data"].update({"hop_length": 256, "filter_length": 1024, "win_length": 1024, "n_mel_channels": 80})
    config["model"].update(
        {
            "inter_channels": 96,
            "hidden_channels": 96,
            "filter_channels": 384,
            "n_heads": 2,
            "n_layers": 4,
            "gin_channels": 64,
            "upsample_rates": [8, 8, 4],
            "upsample_kernel_sizes": [16, 16, 8],
            "upsample_initial_channel": 192,
            "resblock": "2",
            "resblock_kernel_sizes": [3, 5],
            "resblock_dilation_sizes": [[1, 3], [1, 3]],
        }
    )
    config["train"].update({"segment_size": 8192, "mpd_periods": [2, 3, 5, 7, 11], "mpd_channel_divisor": 8})
    config["train"]["bucket_boundaries"] = [8, 64, 128, 256, 512]
    return config


CONFIGS = {"tiny": tiny_config_dict, "small": small_voice_config}


def measure_training(
    name: str, batch_size: int, steps: int, warmup: int, threads: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    from vitsrt.train.distributed import DistContext
    from vitsrt.train.loop import RunSettings, Trainer
    from vitsrt.train.prepare import PrepareOptions, prepare_dataset

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="vitsrt-bench-") as scratch:
        work = Path(scratch)
        write_toy_dataset(work / "raw", n_items=max(16, 2 * batch_size))
        config = CONFIGS[name](batch_size=batch_size, eval_interval=10**9, log_interval=10**9)
        config["train"].update(overrides or {})
        (work / "base.json").write_text(json.dumps(config), encoding="utf-8")
        options = PrepareOptions(frontend="chars", language="en", val_per_speaker=0)
        prepare_dataset(work / "raw", work / "prepared", work / "base.json", options)
        settings = RunSettings(config=work / "prepared" / "config.json", run_dir=work / "run", progress=False)
        trainer = Trainer(settings, DistContext.from_env(device="cpu"))
        batches = [b.to(trainer.device) for b in trainer.loader]
        rate = trainer.config.data.sampling_rate
        for i in range(warmup):
            trainer.train_step(batches[i % len(batches)])
        audio_seconds = 0.0
        cpu_started = time.process_time()
        started = time.perf_counter()
        for i in range(steps):
            batch = batches[i % len(batches)]
            trainer.train_step(batch)
            audio_seconds += float(batch.audio_lengths.sum()) / rate
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        params = {
            "generator": sum(p.numel() for p in trainer.generator.parameters()),
            "mpd": sum(p.numel() for p in trainer.discriminator.parameters()),
            "dur_disc": sum(p.numel() for p in trainer.duration_discriminator.parameters())
            if trainer.duration_discriminator
            else 0,
        }
        return {
            "config": name,
            "batch_size": batch_size,
            "threads": threads,
            "overrides": overrides or {},
            "steps": steps,
            "seconds_per_step": elapsed / steps,
            # CPU seconds used per step: with 1 thread, the wall time the step takes on an idle core.
            "cpu_seconds_per_step": cpu / steps,
            "steps_per_s": steps / elapsed,
            "audio_s_per_s": audio_seconds / elapsed,
            "mean_utterance_s": audio_seconds / steps / batch_size,
            "parameters": params,
        }


def measure_alignment(sizes: list[tuple[int, int, int]], repeats: int = 3) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for batch, tokens, frames in sizes:
        values = rng.standard_normal((batch, tokens, frames)).astype(np.float32)
        t_len, f_len = np.full(batch, tokens), np.full(batch, frames)
        fast = min(_timed(maximum_path_numpy, values, t_len, f_len) for _ in range(repeats))
        slow = _timed(maximum_path_reference, values, t_len, f_len)
        rows.append({"batch": batch, "tokens": tokens, "frames": frames, "vectorised_s": fast, "reference_s": slow})
    return rows


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.train.bench", description=__doc__)
    parser.add_argument("--configs", nargs="+", default=["tiny", "small"], choices=sorted(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="train-section override")
    parser.add_argument("--skip-alignment", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    overrides = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    results["training"] = [
        measure_training(name, args.batch_size, args.steps, args.warmup, args.threads, overrides)
        for name in args.configs
    ]
    for row in results["training"]:
        print(
            f"train {row['config']:<6} batch {row['batch_size']} threads {row['threads']} {row['overrides'] or ''}: "
            f"{row['seconds_per_step']:.3f} s/step ({row['cpu_seconds_per_step']:.3f} CPU-s), "
            f"{row['steps_per_s']:.2f} steps/s, "
            f"{row['audio_s_per_s']:.2f} audio-s/s  (G {row['parameters']['generator']:,} "
            f"MPD {row['parameters']['mpd']:,} DUR {row['parameters']['dur_disc']:,} params)"
        )
    if not args.skip_alignment:
        results["alignment"] = measure_alignment([(16, 50, 200), (16, 100, 400), (8, 200, 800)])
        for row in results["alignment"]:
            speedup = row["reference_s"] / row["vectorised_s"]
            print(
                f"MAS B={row['batch']} T={row['tokens']} F={row['frames']}: "
                f"vectorised {row['vectorised_s'] * 1e3:.1f} ms, "
                f"reference {row['reference_s'] * 1e3:.0f} ms ({speedup:.0f}x)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
