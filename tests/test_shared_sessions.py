"""`vitsrt.serve.engine.shared.DirectoryCache`: the one loaded model per exported directory that the BERT and CLAP
stages share between voices."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from vitsrt.serve.engine import bert_stage, clap_stage
from vitsrt.serve.engine.shared import DirectoryCache


def test_one_object_per_resolved_directory_and_thread_count(tmp_path):
    built: list[tuple[Path, int | None]] = []

    def build(directory: Path, threads: int | None) -> object:
        built.append((directory, threads))
        return object()

    cache = DirectoryCache(build)
    model = tmp_path / "bert" / "abc123"
    model.mkdir(parents=True)
    (tmp_path / "link").symlink_to(model)
    first = cache.get(model)
    assert cache.get(tmp_path / "bert" / ".." / "bert" / "abc123") is first  # same directory, other spelling
    assert cache.get(tmp_path / "link") is first
    assert len(built) == 1
    # negative controls: another directory, or another thread count, is another object
    other = tmp_path / "bert" / "def456"
    other.mkdir()
    assert cache.get(other) is not first and cache.get(model, 2) is not first
    assert cache.get(model, 2) is cache.get(model, 2) and len(built) == 3


def test_concurrent_first_use_builds_once(tmp_path):
    calls = []

    def slow_build(directory: Path, threads: int | None) -> object:
        calls.append(directory)
        time.sleep(0.05)  # a session load takes a while; a second caller arrives meanwhile
        return object()

    cache = DirectoryCache(slow_build)
    got: list[object] = []
    workers = [threading.Thread(target=lambda: got.append(cache.get(tmp_path))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(calls) == 1 and len(got) == 4 and all(g is got[0] for g in got)


def test_both_stages_use_a_directory_cache():
    assert isinstance(bert_stage._SHARED, DirectoryCache) and isinstance(clap_stage._SHARED, DirectoryCache)
    assert bert_stage._SHARED is not clap_stage._SHARED
