"""Checkpoint I/O in the upstream Bert-VITS2 format, loaded safely.

Only `torch.load(..., weights_only=True)` is used: a pickle that names anything but tensors and plain
containers is refused before any of its code can run. Every failure becomes a one-line CheckpointError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitsrt.errors import CheckpointError, clip

log = logging.getLogger(__name__)

_FOREIGN_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# Lines of torch's loader errors that are advice, not the problem; never shown (one advises weights_only=False).
_ADVICE = ("weights_only", "Weights only", "trusted source", "file an issue", "documentation", "miniz", "likelihood")
_ENFORCE_PREFIX = re.compile(r"^\[enforce fail at [^\]]*\]\s*\.?\s*")
# Up to this many missing/unexpected keys are named one by one; more means the config is not this model's.
FEW_KEYS = 3


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with weights_only=True, translating every failure into a one-line CheckpointError."""
    path = Path(path)
    _check_regular_file(path)
    try:
        # torch warns on stderr about some pickle protocols; a CLI error must stay one line.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_unpickling_message(path, exc)) from None
    except Exception as exc:  # any failure of the loader on an untrusted file is a bad checkpoint
        raise CheckpointError(_load_failure_message(path, exc)) from None
    for warning in caught:
        log.debug("%s: torch.load: %s", path, warning.message)
    return loaded


def _check_regular_file(path: Path) -> None:
    """Refuse what torch.load would misreport or block on (a directory, a FIFO, an empty file)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path} is not a regular file (a FIFO, device or socket cannot be a checkpoint)")
    if info.st_size == 0:
        raise CheckpointError(f"{path} is empty, not a checkpoint")


def _unpickling_message(path: Path, exc: pickle.UnpicklingError) -> str:
    found = _FOREIGN_GLOBAL.search(str(exc))
    if not found:
        return f"{path} is truncated or not a checkpoint ({_reason(exc)})"
    # posix.system is what os.system pickles as; name it the way people write it.
    name = re.sub(r"^(posix|nt)\.", "os.", found.group(1))
    return (
        f"{path} is not a plain checkpoint: it asks to run code ({_shown(name, 60)}); refused "
        "(only tensors and plain containers are loaded)"
    )


def _load_failure_message(path: Path, exc: BaseException) -> str:
    if zipfile.is_zipfile(path):
        return f"{path} is a zip archive but not a PyTorch checkpoint ({_reason(exc)})"
    return f"{path} is truncated or not a checkpoint ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    """The first sentence of a loader error that states the problem, without torch's advice, up to a colon."""
    for line in str(exc).splitlines():
        for sentence in _ENFORCE_PREFIX.sub("", line.strip()).split(". "):
            sentence = sentence.strip().rstrip(".")
            if sentence and not any(advice in sentence for advice in _ADVICE):
                return _shown(sentence.split(": ")[0])
    return type(exc).__name__


def _shown(text: str, limit: int = 80) -> str:
    """Short printable text as is; anything else (long, newlines, from the file) through clip()."""
    return text if len(text) <= limit and text.isprintable() else clip(text, limit)


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The generator weights from an upstream dict (`model` key) or a bare state_dict; strips `module.`."""
    if isinstance(obj, dict) and "model" in obj:
        obj = obj["model"]
        if not isinstance(obj, dict):
            raise CheckpointError(f"{source}: its 'model' entry is a {type(obj).__name__}, not a state_dict")
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{source}: holds a {type(obj).__name__}; expected a state_dict or a dict with a 'model' state_dict"
        )
    if not obj:
        raise CheckpointError(f"{source}: the state_dict is empty")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {clip(key, 60)} is a {type(value).__name__}, not a tensor; not a model state_dict"
            )
        state[key.removeprefix("module.")] = value
    return state


def load_state_dict_checked(
    module: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint", config_source: str | None = None
) -> None:
    """Strict load with errors that name the key and both shapes (torch's own message lists everything).

    When more than FEW_KEYS keys are missing or unexpected, the model is not this checkpoint's: one summary
    line says so (naming `config_source`, the config the module was built from, when given).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if len(missing) + len(unexpected) > FEW_KEYS:
        raise CheckpointError(_mismatch_summary(source, config_source, missing, unexpected, len(state), len(expected)))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{source}: missing key {missing[0]} (expected shape {list(expected[missing[0]].shape)}){more}"
        )
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"{source}: unexpected key {_shown(unexpected[0], 60)} (shape {list(state[unexpected[0]].shape)}){more}; "
            "the config does not describe this checkpoint"
        )
    mismatched = [k for k, t in expected.items() if tuple(state[k].shape) != tuple(t.shape)]
    if mismatched:
        key = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise CheckpointError(
            f"{source}: shape mismatch for {key}: expected {list(expected[key].shape)}, found "
            f"{list(state[key].shape)}{more}; the config does not describe this checkpoint"
        )
    module.load_state_dict(state, strict=True)


def _mismatch_summary(
    source: str, config_source: str | None, missing: list[str], unexpected: list[str], n_state: int, n_model: int
) -> str:
    examples = [f"missing key {k}" for k in missing[:1]] + [f"unexpected key {_shown(k, 50)}" for k in unexpected[:1]]
    who = f"{config_source} does not describe {source}" if config_source else f"{source} does not fit the model"
    question = "; is this the config of this checkpoint?" if config_source else ""
    return (
        f"{who}: {len(missing)} of {n_model} model tensors are not in the checkpoint and {len(unexpected)} of "
        f"{n_state} checkpoint tensors have no place in the model (e.g. {', '.join(examples)}){question}"
    )


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
