"""Opening files that name themselves in a user's input (voice.json, config.json, graphs) safely.

Opening a FIFO blocks until some writer appears (a server start-up would hang) and a device can read
forever, so only regular files are opened: the type is checked before opening, the open is non-blocking,
and the check is repeated on the descriptor in case the path was swapped in between. Callers word the
refusal for their kind of file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

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
