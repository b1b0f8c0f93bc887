"""Helpers shared by the training tests: a tiny prepared dataset, in-process trainers, subprocess plumbing."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch

from vitsrt.train.distributed import DistContext
from vitsrt.train.loop import RunSettings, Trainer
from vitsrt.train.prepare import PrepareOptions, prepare_dataset
from vitsrt.train.smoke import tiny_config_dict, write_toy_dataset


def prepare(root: Path, n_items: int, val_per_speaker: int, **train) -> Path:
    write_toy_dataset(root / "raw", n_items=n_items)
    (root / "base.json").write_text(json.dumps(tiny_config_dict(**train)), encoding="utf-8")
    options = PrepareOptions(frontend="chars", language="en", val_per_speaker=val_per_speaker)
    prepare_dataset(root / "raw", root / "prepared", root / "base.json", options)
    return root / "prepared" / "config.json"


def trainer(config: Path, run_dir: Path, max_steps: int, **kwargs) -> Trainer:
    settings = RunSettings(config=config, run_dir=run_dir, max_steps=max_steps, progress=False, **kwargs)
    return Trainer(settings, DistContext.from_env(device="cpu"))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("WORLD_SIZE", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_same_state(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where
