"""Checkpoint I/O in the upstream Bert-VITS2 format, loaded safely.

Only `torch.load(..., weights_only=True)` is used: a pickle that names anything but tensors and plain
containers is refused before any of its code can run. Every failure becomes a one-line CheckpointError.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitsrt.errors import CheckpointError

_FOREIGN_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with weights_only=True, translating every failure into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _FOREIGN_GLOBAL.search(str(exc))
        if found:
            raise CheckpointError(
                f"{path}: refusing to load: the pickle references {found.group(1)}, which is not a tensor "
                "or plain container (possible malicious file)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # any failure of the loader on an untrusted file is a bad checkpoint
        message = _first_line(exc)
        if "central directory" in message or "zip archive" in message or isinstance(exc, EOFError):
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({message})") from None
        raise CheckpointError(f"{path}: cannot load checkpoint ({message})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The generator weights from an upstream dict (`model` key) or a bare state_dict; strips `module.`."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source}: expected a state_dict or a dict with a 'model' state_dict")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is not a tensor; not a model state_dict")
        state[key.removeprefix("module.")] = value
    return state


def load_state_dict_checked(module: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load with errors that name the key and both shapes (torch's own message lists everything)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{source}: missing key {missing[0]} (expected shape {list(expected[missing[0]].shape)}){more}"
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{source}: unexpected key {unexpected[0]} (shape {list(state[unexpected[0]].shape)}){more}; "
            "the config does not describe this checkpoint"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: shape mismatch for {key}: expected {list(tensor.shape)}, found {list(state[key].shape)}; "
                "the config does not describe this checkpoint"
            )
    module.load_state_dict(state, strict=True)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    learning_rate: float = 0.0,
    iteration: int = 0,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write `{model, iteration, optimizer, learning_rate}` like upstream, atomically (temp file + rename).

    `extra` goes under the key ``vitsrt`` (tensors and plain containers only, so the file still loads
    with weights_only=True); upstream's loader reads the four keys by name and ignores it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = model.module if hasattr(model, "module") else model
    payload = {
        "model": inner.state_dict(),
        "iteration": int(iteration),
        "optimizer": optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []},
        "learning_rate": float(learning_rate),
    }
    if extra is not None:
        payload["vitsrt"] = extra
    tmp = _create_temp_file(path)
    try:
        torch.save(payload, tmp)
        _fsync(tmp, os.O_RDWR)  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Until the directory is synced, a power cut can still undo the rename: resume would then start from
    # an older step (or find none).
    if hasattr(os, "O_DIRECTORY"):  # Windows cannot open a directory; NTFS journals the rename
        with contextlib.suppress(OSError):  # some network/FUSE mounts refuse it; the file itself is synced
            _fsync(path.parent, os.O_RDONLY | os.O_DIRECTORY)


def _create_temp_file(path: Path) -> Path:
    """An empty `.NAME.<random>.tmp` beside `path`, created with mode 0o666 so the kernel applies the user's
    umask (and the folder's default ACL) as for any file they write; mkstemp's files are always 0600."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary file name beside {path}")


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_STEP_FILE = re.compile(r"^(?P<kind>[A-Za-z]+)_(?P<step>\d+)\.pth$")


def checkpoint_steps(directory: str | Path, kind: str) -> list[int]:
    """Steps of the `{kind}_{step}.pth` files in `directory`, ascending (e.g. kind "G")."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = []
    for path in directory.iterdir():
        match = _STEP_FILE.match(path.name)
        if match and match.group("kind") == kind and path.is_file():
            steps.append(int(match.group("step")))
    return sorted(steps)


def latest_complete_step(directory: str | Path, kinds: tuple[str, ...]) -> int | None:
    """The newest step for which every kind's file exists (a crash between the G_ and D_ saves
    leaves an incomplete newest step, which is then ignored)."""
    common: set[int] | None = None
    for kind in kinds:
        steps = set(checkpoint_steps(directory, kind))
        common = steps if common is None else common & steps
    return max(common) if common else None


def prune_checkpoints(directory: str | Path, kinds: tuple[str, ...], keep: int) -> list[Path]:
    """Delete all but the newest `keep` steps of each kind (`keep` 0 keeps everything).

    Step 0 files are never deleted: they are the base checkpoints a fine-tune starts from.
    """
    removed: list[Path] = []
    if keep <= 0:
        return removed
    directory = Path(directory)
    for kind in kinds:
        steps = [s for s in checkpoint_steps(directory, kind) if s > 0]
        for step in steps[:-keep]:
            path = directory / f"{kind}_{step}.pth"
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
