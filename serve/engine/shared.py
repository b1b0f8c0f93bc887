"""One process-wide object per exported model directory: the sessions that voices naming the same model share.

A BERT graph (:mod:`vitsrt.serve.engine.bert_stage`) and a CLAP export (:mod:`vitsrt.serve.engine.clap_stage`)
live in content-addressed directories of a bundle; every voice that names one gets the same loaded object, keyed
by the directory's resolved path and the session's intra-op thread count. The first caller builds it, under a
lock, so two voices loading at once do not build it twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["DirectoryCache"]

T = TypeVar("T")


class DirectoryCache(Generic[T]):
    """`build(directory, intra_op_threads)` once per (resolved directory, intra_op_threads), for the process."""

    def __init__(self, build: Callable[[Path, int | None], T]):
        self._build = build
        self._items: dict[tuple[str, int | None], T] = {}
        self._lock = threading.Lock()

    def get(self, directory: Path, intra_op_threads: int | None = None) -> T:
        key = (str(directory.resolve()), intra_op_threads)
        with self._lock:
            if key not in self._items:
                self._items[key] = self._build(directory, intra_op_threads)
            return self._items[key]
