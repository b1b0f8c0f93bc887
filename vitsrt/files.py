"""Opening files that name themselves in a user's input (voice.json, config.json, graphs) safely.

Opening a FIFO blocks until some writer appears (a server start-up would hang) and a device can read
forever, so only regular files are opened: the type is checked before opening, the open is non-blocking,
and the check is repeated on the descriptor in case the path was swapped in between. Callers word the
refusal for their kind of file.

`read_small_text` reads a small regular UTF-8 file (a manifest, a tokenizer) whole, refusing a larger one after
reading at most one byte past the cap; its one error type says which check failed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Literal

from vitsrt.errors import VitsrtError, clip

SmallFileProblem = Literal["missing", "irregular", "unreadable", "too large", "not UTF-8"]

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegularFileError(OSError):
    """The path exists but is not a regular file; `kind` says what it is ("a FIFO", "a directory", ...)."""

    def __init__(self, path: Path, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


def irregular(mode: int) -> str | None:
    """What a file that is not a regular file is ("a FIFO", ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "a special file")


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file; NotRegularFileError otherwise (OSError,
    e.g. FileNotFoundError, for a path that cannot be opened at all)."""
    kind = irregular(os.stat(path).st_mode)
    if kind is None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        kind = irregular(os.fstat(fd).st_mode)
        if kind is None:
            return os.fdopen(fd, "rb")
        os.close(fd)
    raise NotRegularFileError(path, kind)


class SmallFileError(VitsrtError):
    """A small text file that cannot be read. `problem` says which check failed, `detail` its specifics (the
    kind of file, the OS reason, the cap in MiB, the decoding error), `reason` the generic phrase; the message
    is ``'<path>': <reason>``. Callers with their own wording build it from these."""

    def __init__(self, path: Path, problem: SmallFileProblem, detail: str):
        self.path, self.problem, self.detail = path, problem, detail
        super().__init__(f"{clip(os.fspath(path), 200)}: {self.reason}")

    @property
    def reason(self) -> str:
        return {
            "missing": "not found",
            "irregular": f"is {self.detail}, not a regular file",
            "unreadable": f"cannot be read ({self.detail})",
            "too large": f"larger than {self.detail} MiB",
            "not UTF-8": f"not UTF-8 ({self.detail})",
        }[self.problem]


def read_small_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes` bytes (a whole number of MiB); SmallFileError
    otherwise."""
    try:
        with open_regular(path) as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise SmallFileError(path, "missing", "") from None
    except NotRegularFileError as exc:
        raise SmallFileError(path, "irregular", exc.kind) from None
    except OSError as exc:
        raise SmallFileError(path, "unreadable", exc.strerror or type(exc).__name__) from None
    if len(data) > max_bytes:
        raise SmallFileError(path, "too large", str(max_bytes >> 20))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SmallFileError(path, "not UTF-8", f"{exc.reason} at byte {exc.start}") from None
