"""Tar-shard input for `vitsrt prepare`: WebDataset-style shards, streamed member by member.

A shard is a tar file (``.tar``, or compressed ``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``). Members that
share a key, the member path up to the first dot of its file name (``a/b.flac`` and ``a/b.json`` have key
``a/b``), form one sample: one recording (``.wav``, ``.flac``, ``.ogg``, ``.opus``, ``.mp3``) and a
transcript, a ``.txt`` holding the text and/or a ``.json`` object with ``text`` and optional ``speaker`` and
``language`` (``.json`` wins when both give the text). A sample's members are adjacent, as WebDataset writes
them; other members (``.cls``, ``.npy``, ...) are ignored.

Each shard is read once, front to back (`tarfile` stream mode, ``r|*``): only the current sample's members are
in memory, never the whole shard. A worker process takes whole shards and finishes each sample in turn (cleaned
WAV, spectrogram, phonemes, sidecar), so the parent only merges records. When a shard is done, its outcome (per
sample: the prepared item or why it was skipped) is written to ``OUT/shards/<name>.<hash>.json``; a later run
with the same shard file (path, size, mtime), audio/front-end settings and default speaker/language reuses that
record without opening the shard. A sample is named like the same recording in a dataset folder
(``wavs/<speaker>/<key with / as __>.wav``), so shards and the equivalent folder prepare to the same files.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import logging
import lzma
import multiprocessing
import os
import tarfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from vitsrt.errors import InputError

if TYPE_CHECKING:
    from vitsrt.train.prepare import ItemProcessor

log = logging.getLogger(__name__)

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
AUDIO_EXTENSIONS = frozenset({"wav", "flac", "ogg", "opus", "mp3"})
TRANSCRIPT_EXTENSIONS = frozenset({"txt", "json"})
MAX_AUDIO_BYTES = 256 << 20  # a bigger member is skipped unread (a 30 s limit makes it useless anyway)
MAX_TRANSCRIPT_BYTES = 1 << 20
RECORD_VERSION = 1
# what a broken shard raises part-way (truncated tar, bad gzip/xz/bz2 stream, I/O error)
SHARD_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def available_cores() -> int:
    """The CPUs this process may run on (the default worker count for shard input)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class SampleError(Exception):
    """A sample that cannot become a training item; the message is the reason in the report."""


def is_shard(path: Path) -> bool:
    return path.name.lower().endswith(SHARD_SUFFIXES)


def find_shards(inputs: Sequence[str | Path], metadata: str | None = None) -> list[Path] | None:
    """The ordered shard list the inputs name, or None when they name a dataset folder (one folder with a
    metadata file, or an explicit `metadata`). A folder of shards contributes its shards sorted by name."""
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InputError("dataset", "no input given")
    if len(paths) == 1 and paths[0].is_dir() and (metadata or not _shards_in(paths[0]) or _has_metadata(paths[0])):
        return None
    shards: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = _shards_in(path)
            if not found:
                raise InputError("dataset", f"no tar shards in {path}")
            shards.extend(found)
        elif path.is_file() and is_shard(path):
            shards.append(path)
        elif path.exists():
            raise InputError("dataset", f"not a tar shard ({', '.join(SHARD_SUFFIXES)}) or folder: {path}")
        else:
            raise InputError("dataset", f"not found: {path}")
    unique: dict[Path, Path] = {}
    for shard in shards:
        unique.setdefault(shard.resolve(), shard)
    return list(unique.values())


def _shards_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_shard(p) and p.is_file())


def _has_metadata(folder: Path) -> bool:
    from vitsrt.train.prepare import METADATA_NAMES

    return any((folder / name).is_file() for name in METADATA_NAMES)


def parse_shard_range(text: str | None, count: int) -> range:
    """``START:STOP`` (either side may be left out) or one index ``N`` -> the shard indices to process now."""
    if not text:
        return range(count)
    start, sep, stop = text.partition(":")
    try:
        first = int(start) if start.strip() else 0
        last = (int(stop) if stop.strip() else count) if sep else first + 1
    except ValueError:
        raise InputError("shards", f"expected START:STOP shard indices (e.g. 0:100), got {text!r}") from None
    if first < 0 or last < first:
        raise InputError("shards", f"expected 0 <= START <= STOP, got {text!r}")
    return range(min(first, count), min(last, count))


def split_member_name(name: str) -> tuple[str, str]:
    """Member path -> (key, extension): the key is the path up to the first dot of the file name."""
    while name.startswith("./"):
        name = name[2:]
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, extension.lower() if dot else ""


def key_parts(key: str) -> list[str]:
    """A key's path parts without empty, '.', '..' or root parts (they never leave the speaker's folder)."""
    return [part for part in PurePosixPath(key).parts if part not in ("", ".", "..", "/")]


@dataclass
class AudioMember:
    extension: str
    data: bytes
    mtime_ns: int


@dataclass
class Sample:
    """The members of one key that prepare reads; problems found while reading them skip the sample."""

    key: str
    position: int  # index of its first member in the shard
    audio: AudioMember | None = None
    transcripts: dict[str, bytes] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, extension: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        if extension in AUDIO_EXTENSIONS:
            if self.audio is not None:
                self.problems.append(f"several audio members (.{self.audio.extension}, .{extension})")
            elif member.size > MAX_AUDIO_BYTES:
                self.problems.append(f"audio member too large ({member.size >> 20} MiB > {MAX_AUDIO_BYTES >> 20})")
            else:
                self.audio = AudioMember(extension, _read(tar, member), int(member.mtime * 1_000_000_000))
        elif extension in TRANSCRIPT_EXTENSIONS:
            if member.size > MAX_TRANSCRIPT_BYTES:
                self.problems.append(f".{extension} transcript too large ({member.size} bytes)")
            else:
                self.transcripts[extension] = _read(tar, member)
        else:
            self.others.append(extension or "(no extension)")


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else b""


def iter_samples(shard: str | Path | BinaryIO) -> Iterator[Sample]:
    """The samples of a shard in order, reading it once from the front (works on pipes: no seeking).
    Broken shards raise one of `SHARD_ERRORS` part-way, after the samples before the damage."""
    named = {"fileobj": shard} if hasattr(shard, "read") else {"name": str(shard)}
    with tarfile.open(mode="r|*", **named) as tar:  # type: ignore[call-overload]
        sample: Sample | None = None
        for position, member in enumerate(tar):
            if not member.isfile():
                continue
            key, extension = split_member_name(member.name)
            if sample is None or key != sample.key:
                if sample is not None:
                    yield sample
                sample = Sample(key, position)
            sample.add(extension, member, tar)
        if sample is not None:
            yield sample


def read_transcript(sample: Sample, speaker: str, language: str) -> tuple[str, str, str]:
    """(text, speaker, language) of a sample; the defaults fill what the .json does not give."""
    meta: dict[str, Any] = {}
    if "json" in sample.transcripts:
        try:
            loaded = json.loads(sample.transcripts["json"].decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SampleError(f"unreadable .json transcript ({exc})") from None
        if not isinstance(loaded, dict):
            raise SampleError(".json transcript is not an object")
        meta = loaded
    text = meta.get("text")
    if text is None and "txt" in sample.transcripts:
        try:
            text = sample.transcripts["txt"].decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SampleError(".txt transcript is not UTF-8") from None
    if text is None:
        raise SampleError("no transcript text (.txt, or .json with 'text')")
    values = {"text": text, "speaker": meta.get("speaker", speaker), "language": meta.get("language", language)}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise SampleError(f".json field {name!r} is not a string")
        value = str(value).strip()
        if "|" in value or (name != "text" and ("\n" in value or "\r" in value)):
            raise SampleError(f"{name} contains '|' or a line break, which filelists cannot hold")
        values[name] = value
    if not values["text"]:
        raise SampleError("empty transcript")
    return values["text"], values["speaker"] or speaker, values["language"] or language


class _NamedBytes(io.BytesIO):
    """An in-memory member that soundfile's errors name by its shard and key, not by an object address."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self._label = name

    def __repr__(self) -> str:
        return repr(self._label)


def named_bytes(data: bytes, name: str) -> BinaryIO:
    return _NamedBytes(data, name)


@dataclass(frozen=True)
class ShardJob:
    """One shard for one worker: where it is, where its outputs and record go, what fills missing fields."""

    index: int
    path: str
    out: str
    record_path: str
    signature: dict[str, Any]  # what its record must match to be reused (shard identity, settings, defaults)
    processor: ItemProcessor

    @property
    def speaker(self) -> str:
        return self.signature["speaker"]

    @property
    def language(self) -> str:
        return self.signature["language"]


def shard_signature(path: Path, settings: str, speaker: str, language: str) -> dict[str, Any]:
    stat = path.stat()
    return {
        "version": RECORD_VERSION,
        "shard": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "settings": settings,
        "speaker": speaker,
        "language": language,
    }


def record_path(out: Path, shard: Path) -> Path:
    digest = hashlib.sha1(str(shard.resolve()).encode("utf-8")).hexdigest()[:10]
    return out / "shards" / f"{shard.name}.{digest}.json"


def load_record(path: Path, signature: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """A finished shard's record when it matches `signature` and its prepared WAVs are all still there."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or any(record.get(k) != v for k, v in signature.items()):
        return None
    if not all((out / item["wav"]).is_file() for item in record["items"] if "record" in item):
        return None
    return record


def prepare_shard(job: ShardJob) -> dict[str, Any]:
    """Stream one shard, prepare its samples, write and return its record. Runs in a worker process."""
    items: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    started = time.perf_counter()
    try:
        for sample in iter_samples(job.path):
            _take_sample(job, sample, seen, items, skipped)
    except SHARD_ERRORS as exc:
        reason = f"unreadable shard after {len(seen)} sample(s) ({exc or type(exc).__name__})"
        skipped.append({"path": job.path, "reason": reason})
    record = {**job.signature, "items": items, "skipped": skipped, "seconds": time.perf_counter() - started}
    path = Path(job.record_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return record


def _take_sample(job: ShardJob, sample: Sample, seen: set[str], items: list[dict[str, Any]],
                 skipped: list[dict[str, str]]) -> None:
    from vitsrt.train.prepare import MetadataItem, wav_name

    where = f"{job.path}:{sample.key}"
    try:
        if sample.key in seen:
            raise SampleError("duplicate key (its members are not adjacent in the shard)")
        seen.add(sample.key)
        if not key_parts(sample.key) or any(c in sample.key for c in "|\n\r"):
            raise SampleError("member name gives no usable key")
        if sample.problems:
            raise SampleError("; ".join(sample.problems))
        if sample.audio is None and not sample.transcripts:
            raise SampleError(f"no audio or transcript member (found .{', .'.join(sample.others)})")
        if sample.audio is None:
            raise SampleError("no audio member")
        if not sample.transcripts:
            raise SampleError("no transcript (.txt or .json member)")
        text, speaker, language = read_transcript(sample, job.speaker, job.language)
    except SampleError as exc:
        skipped.append({"path": where, "reason": str(exc)})
        return
    source = f"{job.path}:{sample.key}.{sample.audio.extension}"
    item = MetadataItem(source, speaker, language, text, sample.position)
    wav = wav_name(speaker, key_parts(sample.key))
    result = job.processor.process_bytes(item, sample.audio.data, sample.audio.mtime_ns, str(Path(job.out) / wav))
    entry: dict[str, Any] = {"source": source, "speaker": speaker, "language": language, "text": text, "wav": wav}
    if "error" in result:
        entry["error"] = result["error"]
    else:
        entry["record"] = {k: result[k] for k in ("phonemes", "seconds", "source_rate", "source_channels", "reused")}
    items.append(entry)


class _Meter:
    """The progress bar: shards/s is tqdm's own rate; prepared audio hours per second goes in the postfix."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="shards", unit="shard", disable=None)
        self.started = time.perf_counter()
        self.seconds = 0.0

    def done(self, record: dict[str, Any]) -> None:
        self.seconds += sum(item["record"]["seconds"] for item in record["items"] if "record" in item)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix_str(f"{self.seconds / 3600 / elapsed:.4f} audio-h/s", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_shards(jobs: Sequence[ShardJob], workers: int) -> list[dict[str, Any]]:
    """Each job's record, in job order: in this process for one worker, else one shard per task in a pool of
    `workers` spawned processes (one torch thread each). A dead worker raises BrokenProcessPool; finished shards
    keep their records."""
    from vitsrt.train.prepare import limit_worker_threads, one_torch_thread

    if not jobs:
        return []
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    meter = _Meter(len(jobs))
    try:
        if workers <= 1 or len(jobs) < 2:
            with one_torch_thread():
                for i, job in enumerate(jobs):
                    results[i] = prepare_shard(job)
                    meter.done(results[i])
        else:
            # spawn: workers must not inherit a parent's torch/OpenMP state or espeak handles.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                                        initializer=limit_worker_threads) as pool:
                futures = {pool.submit(prepare_shard, job): i for i, job in enumerate(jobs)}
                for future in concurrent.futures.as_completed(futures):
                    results[futures[future]] = future.result()
                    meter.done(future.result())
    finally:
        meter.close()
    return [r for r in results if r is not None]
