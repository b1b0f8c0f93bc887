"""`vitsrt clap-features FILELIST... --clap DIR`: a CLAP embedding beside every recording of a training filelist,
for Bert-VITS2 2.2 training data (what upstream's ``clap_gen.py`` does).

For each line of each filelist (``path|...``: the first field is the recording; a relative path is taken from
``--root``, default: the config's directory with ``-c``, else the current directory, as upstream) it writes
``<recording stem>.emo.npy`` beside the recording: the L2-normalised CLAP audio embedding of the clip resampled to
48 kHz, float32 ``[512, 1]`` (the shape upstream's wrapper returns). Files that already have theirs are skipped, so
an interrupted run resumes; each file is written to a temporary name and renamed, so a killed run leaves no partial
file. Worker processes (``--workers``) each run the CLAP towers on onnxruntime (one thread each); a progress bar
counts the files.

``--clap`` is a local Hugging Face CLAP directory (exported to ONNX first, needs torch and transformers; kept in
``--export-dir`` when given) or a directory ``vitsrt export --clap`` wrote (``clap.json``: used as it is).

Differences from upstream: upstream saves the tensor with ``torch.save`` under the ``.emo.npy`` name; this writes a
real NumPy file (``np.load`` reads it). Upstream loads the clip at 44.1 kHz first, then resamples to 48 kHz; this
resamples once, from the file's own rate (soxr), which is the same for the usual 44.1 kHz training data.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vitsrt.errors import InputError, VitsrtError, clip

HELP = "write a CLAP emotion embedding (.emo.npy) beside every recording of a filelist (Bert-VITS2 2.2 training)"
SUFFIX = ".emo.npy"
_CHUNK = 8  # files per worker task (one audio-tower call)

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("filelists", nargs="*", help="filelists (path|speaker|language|text|...), one recording a line")
    parser.add_argument("-c", "--config", help="a config.json: its data.training_files and validation_files")
    parser.add_argument("--clap", required=True, metavar="DIR",
                        help="a local Hugging Face CLAP directory (laion/clap-htsat-fused) or a vitsrt CLAP export")
    parser.add_argument("--root", metavar="DIR", help="base of relative recording paths (default: the config's "
                        "directory with -c, else the current directory)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per core, at most 8)")
    parser.add_argument("--export-dir", metavar="DIR",
                        help="keep the ONNX export of a Hugging Face --clap here (default: a temporary directory)")


def output_path(recording: Path) -> Path:
    """Where a recording's embedding goes: ``x.wav`` -> ``x.emo.npy`` beside it."""
    return recording.with_name(recording.stem + SUFFIX)


def _filelists(args: argparse.Namespace) -> tuple[list[Path], Path]:
    lists = [Path(p) for p in args.filelists]
    root = Path(args.root) if args.root else Path.cwd()
    if args.config:
        from vitsrt.config import load_config

        config = load_config(args.config)
        base = Path(args.config).parent
        lists += [path if path.is_absolute() else base / path
                  for path in (Path(config.data.training_files), Path(config.data.validation_files))]
        root = Path(args.root) if args.root else base
    if not lists:
        raise InputError("filelists", "give filelists, or -c CONFIG for its training and validation lists")
    return lists, root


def recordings(filelists: Sequence[Path], root: Path) -> list[Path]:
    """The recordings the filelists name (first field of each non-empty line), each once, in order."""
    found: dict[Path, None] = {}
    for filelist in filelists:
        try:
            lines = filelist.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise VitsrtError(f"cannot read filelist {clip(str(filelist), 200)}: {type(exc).__name__}") from None
        for line in lines:
            if line.strip():
                path = Path(line.split("|", 1)[0].strip())
                found[path if path.is_absolute() else root / path] = None
    return list(found)


def _clap_directory(source: Path, export_dir: Path | None, scratch: Path) -> Path:
    """An exported CLAP directory: `source` itself when it is one, else its export (torch + transformers)."""
    from vitsrt.text.clap import MANIFEST_NAME

    if (source / MANIFEST_NAME).is_file():
        return source
    from vitsrt.export.clap import export_clap

    return export_clap(source, export_dir or scratch).directory


# ----- workers --------------------------------------------------------------------------------------------------

_TOWERS = None


def _embed_files(clap_dir: str, paths: list[str]) -> list[tuple[str, str | None]]:
    """One worker task: embed these recordings (one audio-tower call) and write each one's .emo.npy; per path,
    None or the reason it failed."""
    import numpy as np

    from vitsrt.serve.engine.clap_stage import ClapTowers

    global _TOWERS
    if _TOWERS is None or str(_TOWERS.directory) != clap_dir:
        _TOWERS = ClapTowers(Path(clap_dir), intra_op_threads=1)
    towers = _TOWERS
    results: list[tuple[str, str | None]] = []
    ready: list[tuple[str, np.ndarray]] = []
    for path in paths:
        try:
            ready.append((path, towers.clip_features(Path(path).read_bytes())))
        except InputError as exc:
            results.append((path, exc.reason))
        except OSError as exc:
            results.append((path, f"cannot read it: {exc.strerror or exc}"))
    if ready:
        embeddings = towers.embed_clips([features for _, features in ready])
        for (path, _), embedding in zip(ready, embeddings, strict=True):
            results.append((path, _write(Path(path), embedding.reshape(-1, 1).astype(np.float32))))
    return results


def _write(recording: Path, embedding: object) -> str | None:
    """Write atomically (temporary name, then rename); the reason on failure."""
    import numpy as np

    target = output_path(recording)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, embedding, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return f"cannot write {target.name}: {exc.strerror or exc}"
    return None


def _run_tasks(clap_dir: Path, todo: list[Path], workers: int) -> list[tuple[str, str | None]]:
    from tqdm import tqdm

    chunks = [[str(p) for p in todo[i : i + _CHUNK]] for i in range(0, len(todo), _CHUNK)]
    results: list[tuple[str, str | None]] = []
    with tqdm(total=len(todo), desc="clap-features", unit="file", disable=None) as bar:
        if workers <= 1 or len(chunks) < 2:
            for chunk in chunks:
                results += _embed_files(str(clap_dir), chunk)
                bar.update(len(chunk))
            return results
        # spawn: workers must not inherit the parent's torch / onnxruntime threads.
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_embed_files, str(clap_dir), chunk) for chunk in chunks]
            for future in concurrent.futures.as_completed(futures):
                done = future.result()
                results += done
                bar.update(len(done))
    return results


def run(args: argparse.Namespace) -> int:
    filelists, root = _filelists(args)
    files = recordings(filelists, root)
    todo = [path for path in files if not output_path(path).is_file()]
    skipped = len(files) - len(todo)
    log.info("%d recordings in %d filelists: %d to embed, %d already done", len(files), len(filelists), len(todo),
             skipped)
    failed: list[tuple[str, str]] = []
    if todo:
        workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
        with tempfile.TemporaryDirectory(prefix="vitsrt-clap-") as scratch:
            clap_dir = _clap_directory(Path(args.clap), Path(args.export_dir) if args.export_dir else None,
                                       Path(scratch))
            results = _run_tasks(clap_dir, todo, max(1, workers))
        failed = [(path, reason) for path, reason in results if reason is not None]
    for path, reason in failed[:20]:
        log.warning("%s: %s", clip(path, 200), reason)
    print(f"{len(todo) - len(failed)} written, {skipped} already done, {len(failed)} failed")
    return 1 if failed else 0
