"""What the exports of local Hugging Face model directories share (`vitsrt.export.bert`, `vitsrt.export.clap`):
reading the source directory, the content key a finished export is stored under (``<root>/<key>/``), transformers
kept quiet, and publishing a finished staging directory in place of a missing or altered earlier one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vitsrt.errors import clip
from vitsrt.export.onnx_export import ExportError
from vitsrt.voice import sha256_file

__all__ = ["publish", "quiet_transformers", "read_json", "source_key", "unaltered", "weight_files", "where"]

log = logging.getLogger(__name__)


def where(path: Path) -> str:
    """A path as error messages show it (clipped)."""
    return clip(os.fspath(path), 200)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from `path`, or ExportError naming `what`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"{where(path)}: {what} cannot be read ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ExportError(f"{where(path)}: {what} is not a JSON object")
    return data


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files transformers loads: safetensors when present (it prefers them), else .bin."""
    for pattern in ("*.safetensors", "*.bin"):
        found = sorted(p for p in model_dir.glob(pattern) if p.is_file())
        if found:
            return found
    raise ExportError(f"{where(model_dir)}: no weights (model.safetensors or pytorch_model.bin) in the directory")


def source_key(model_dir: Path, header: Mapping[str, Any], files: Iterable[str], weights: Sequence[Path]) -> str:
    """SHA-256 over the export options (`header`) and every file that defines the result: those of `files` that
    exist in `model_dir`, and the weights (name and content hash each)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(header), sort_keys=True).encode())
    names = [*(n for n in files if (model_dir / n).is_file()), *(p.name for p in weights)]
    for name in sorted(set(names)):
        digest.update(f"\n{name}\0{sha256_file(model_dir / name)}".encode())
    return digest.hexdigest()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' load report (e.g. the expected missing later layers) and progress bars, silenced."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def unaltered(directory: Path, key: str, manifest_key: str, files: Mapping[str, str | None], what: str) -> bool:
    """Whether an earlier export in `directory` has this key and every listed file with its recorded sha256."""
    for name, digest in files.items():
        if manifest_key != key or digest is None or not (directory / name).is_file() \
                or sha256_file(directory / name) != digest:
            log.warning("re-exporting over an altered %s export in %s (%s)", what, directory, name)
            return False
    return True


def publish(staging: Path, final: Path, reusable: Callable[[Path], object | None]) -> bool:
    """Move the finished staging directory into place, replacing a broken earlier export; False (and nothing
    moved) when a concurrent export of the same model got there first (`reusable(final)` is not None)."""
    if final.exists():
        if reusable(final) is not None:
            return False
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=final.parent))
        os.replace(final, trash / "old")
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, final)
    return True
