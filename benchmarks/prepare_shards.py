"""`vitsrt prepare` throughput: tar-shard input at 1 and 2 workers vs the same recordings as a dataset folder.

    python -m vitsrt.benchmarks.prepare_shards [--shards 16] [--samples 64] [--rate 22050] [--workers 1 2]
        [--rounds 2] [--json FILE]

A quick sanity run (seconds, not a measurement): ``--shards 4 --samples 16 --rounds 1``.

Generates, in a temporary folder, `--shards` WebDataset-style tar shards of `--items` samples each (synthetic
speech-like audio: one harmonic tone per letter of a random sentence, at `--rate`, so prepare resamples it to
the config's 16 kHz; a `.json` transcript with a speaker) and the equivalent dataset folder (the same WAV
bytes plus a metadata file). Then prepares each input at each worker count into a fresh output folder,
interleaving the configurations within each round so slow drift in machine load falls on all of them alike.
A warm-up prepare of a tiny input first absorbs one-off imports.

Reported per configuration (mean over rounds): ingest seconds (reading, cleaning, phonemising, writing the WAVs
and their spectrograms, all in the workers: the part the input format and workers change; it includes starting
the worker processes), spectrogram seconds (the parent's pass over the kept items, writing only spectrograms the
workers left missing: about 0), items/s, shards/s and prepared audio hours per second over the ingest phase. A
check confirms the shard and folder outputs hold the same WAVs, spectrograms (values) and filelists. The load average
before and after is recorded: on a shared machine it is part of the result.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import platform
import random
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("vitsrt.benchmarks.prepare_shards")

WORDS = (
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "small", "birds", "sing", "in",
    "tall", "green", "trees", "near", "old", "houses", "and", "children", "walk", "home", "slowly", "after",
    "school", "under", "grey", "clouds", "that", "promise", "rain", "before", "evening",
)
SPEAKERS = ("ann", "bob", "cat", "dan")


@dataclass
class Run:
    input: str  # "folder" or "shards"
    workers: int
    ingest_s: list[float] = field(default_factory=list)
    spectrograms_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    items: int = 0
    audio_s: float = 0.0
    shards: int = 0

    def row(self) -> dict[str, Any]:
        ingest = statistics.mean(self.ingest_s)
        return {
            "input": self.input,
            "workers": self.workers,
            "ingest_s": self.ingest_s,
            "spectrograms_s": self.spectrograms_s,
            "total_s": self.total_s,
            "items": self.items,
            "audio_hours": self.audio_s / 3600,
            "items_per_s": self.items / ingest,
            "shards_per_s": self.shards / ingest if self.shards else None,
            "audio_hours_per_s": self.audio_s / 3600 / ingest,
        }


def make_dataset(root: Path, n_shards: int, per_shard: int, rate: int, seed: int) -> dict[str, Any]:
    """`root/shards/part-NNNN.tar` and `root/folder` (WAVs + metadata.list) holding the same samples."""
    import soundfile as sf

    from vitsrt.train.smoke import synthesize_utterance

    rng = random.Random(seed)
    (root / "shards").mkdir(parents=True)
    folder = root / "folder"
    folder.mkdir()
    lines, seconds, size = [], 0.0, 0
    for s in range(n_shards):
        with tarfile.open(root / "shards" / f"part-{s:04d}.tar", "w") as tar:
            for i in range(per_shard):
                key = f"s{s:04d}_{i:03d}"
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 9)))
                speaker = SPEAKERS[(s * per_shard + i) % len(SPEAKERS)]
                samples = synthesize_utterance(text, rate, rng.uniform(110.0, 230.0), seed=s * per_shard + i)
                buffer = io.BytesIO()
                sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
                audio = buffer.getvalue()
                transcript = json.dumps({"text": text, "speaker": speaker}).encode()
                for name, data in ((f"{key}.wav", audio), (f"{key}.json", transcript)):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), 1_700_000_000
                    tar.addfile(info, io.BytesIO(data))
                (folder / f"{key}.wav").write_bytes(audio)
                lines.append(f"{key}.wav|{speaker}|en|{text}")
                seconds += len(samples) / rate
                size += len(audio)
    (folder / "metadata.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"shards": n_shards, "items": n_shards * per_shard, "source_audio_hours": seconds / 3600,
            "source_rate": rate, "audio_bytes": size}


def run_once(source: Path, out: Path, config: Path, workers: int) -> Any:
    from vitsrt.train.prepare import PrepareOptions, prepare_dataset

    options = PrepareOptions(frontend="chars", language="en", workers=workers)
    return prepare_dataset(source, out, config, options)


def digest(out: Path) -> str:
    """Hash of the prepared WAVs, spectrogram values and filelists (what must not depend on the input format)."""
    import torch

    sha = hashlib.sha256()
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.name.endswith(".spec.pt"):
            spec = torch.load(path, weights_only=True)
            sha.update(path.relative_to(out).as_posix().encode() + spec.numpy().tobytes())
        elif path.suffix in (".wav", ".list"):
            sha.update(path.relative_to(out).as_posix().encode() + path.read_bytes())
    return sha.hexdigest()


def measure(root: Path, workers: list[int], rounds: int) -> tuple[list[Run], bool]:
    from vitsrt.train.smoke import tiny_config_dict

    config = root / "base.json"
    config.write_text(json.dumps(tiny_config_dict()), encoding="utf-8")
    # warm-up, not recorded: the first prepare in a process pays one-off imports (torch for spectrograms, ...)
    warm = root / "warm-up"
    make_dataset(warm, 1, 2, 22050, seed=99)
    for kind in ("folder", "shards"):
        run_once(warm / kind, warm / f"out-{kind}", config, 1)
    runs = {(kind, w): Run(kind, w) for kind in ("folder", "shards") for w in workers}
    digests: dict[str, set[str]] = {"folder": set(), "shards": set()}
    for r in range(rounds):
        for (kind, w), run in runs.items():
            out = root / f"out-{kind}-w{w}-r{r}"
            report = run_once(root / kind, out, config, w)
            run.ingest_s.append(report.timings["ingest"])
            run.spectrograms_s.append(report.timings["spectrograms"])
            run.total_s.append(report.timings["total"])
            run.items = report.processed
            run.audio_s = sum(report.seconds_per_speaker.values())
            run.shards = report.shards_done
            digests[kind].add(digest(out))
            log.info("round %d %s workers=%d: ingest %.2f s, total %.2f s (load %.2f)", r + 1, kind, w,
                     report.timings["ingest"], report.timings["total"], os.getloadavg()[0])
    same = len(digests["folder"]) == 1 and digests["folder"] == digests["shards"]
    return list(runs.values()), same


def table(rows: list[dict[str, Any]]) -> str:
    base = {row["input"]: row["items_per_s"] for row in rows if row["workers"] == min(r["workers"] for r in rows)}
    lines = [
        "| input | workers | ingest s (per round) | items/s | shards/s | audio h/s | vs 1 worker "
        "| spectrograms s | total s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rounds = " / ".join(f"{v:.2f}" for v in row["ingest_s"])
        shards = f"{row['shards_per_s']:.2f}" if row["shards_per_s"] else "-"
        lines.append(
            f"| {row['input']} | {row['workers']} | {rounds} | {row['items_per_s']:.1f} | {shards} | "
            f"{row['audio_hours_per_s']:.4f} | {row['items_per_s'] / base[row['input']]:.2f}x | "
            f"{statistics.mean(row['spectrograms_s']):.2f} | {statistics.mean(row['total_s']):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.benchmarks.prepare_shards",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=16, help="tar shards to generate (default 16)")
    parser.add_argument("--samples", "--items", dest="items", type=int, default=64,
                        help="samples per shard (default 64)")
    parser.add_argument("--rate", type=int, default=22050, help="sample rate of the generated audio (default 22050)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the full result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = "python -m vitsrt.benchmarks.prepare_shards " + " ".join(sys.argv[1:] if argv is None else argv)
    load_start = os.getloadavg()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="vitsrt-prepare-bench-") as tmp:
        dataset = make_dataset(Path(tmp), args.shards, args.items, args.rate, args.seed)
        t0 = time.perf_counter()
        runs, same = measure(Path(tmp), sorted(args.workers), args.rounds)
        wall = time.perf_counter() - t0
    rows = [run.row() for run in runs]
    result = {
        "benchmark": "prepare_shards",
        "command": command.strip(),
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_s": wall,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor()},
        "load_avg_start": list(load_start),
        "load_avg_end": list(os.getloadavg()),
        "dataset": dataset,
        "outputs_identical": same,
        "runs": rows,
    }
    print(table(rows))
    print(f"shard output == folder output: {'yes' if same else 'NO'}; load average (1/5/15 min) "
          f"{' '.join(f'{v:.2f}' for v in load_start)} -> {' '.join(f'{v:.2f}' for v in result['load_avg_end'])}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
