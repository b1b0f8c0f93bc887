"""`vitsrt prepare`: a folder of recordings + a metadata file, or tar shards -> a training-ready folder.

Output (``OUT``)::

    config.json               the input config with data.training_files/validation_files, spk2id,
                              n_speakers and a top-level "frontend" section (which symbols mean which ids)
    filelists/train.list      upstream 7-field filelists (see vitsrt.train.tokens)
    filelists/val.list
    wavs/<speaker>/<name>.wav 16-bit mono at the config's rate, silence trimmed, peak-normalised,
                              a whole number of hops long
    wavs/<speaker>/<name>.json  what was done (source size/mtime, settings, phonemes): the re-run cache
    wavs/<speaker>/<name>.spec.pt  cached linear spectrogram (upstream's name and layout)
    prepare_report.json       counts, hours per speaker, skipped files with reasons
    shards/<shard>.<hash>.json  (shard input only) one record per finished shard: the re-run/resume state

Paths inside the filelists are relative to ``OUT``; the trainer resolves them against the config's
folder. Worker processes (``workers``) finish each item: the cleaned WAV, its spectrogram, its phonemes and
its sidecar; the parent only merges the records into filelists, config and report. Re-running only does
missing work: an item whose sidecar matches its source file, the audio settings and the front end is reused
as is. Bad files are skipped and reported, never fatal.

Metadata lines (``|``-separated, ``#`` comments allowed): ``path|speaker|language|text``, upstream's
7-field filelist (the phoneme fields are ignored and the text is phonemised again with the chosen
front end), or ``path|text`` (speaker and language from the options). Paths are relative to the
dataset folder; a missing extension means ``.wav``.

Instead of a folder, the input may be WebDataset-style tar shards (files, or a folder holding them and no
metadata file): see `vitsrt.train.shards`. Each worker process streams whole shards; finished shards are
recorded and skipped on re-runs; ``shards`` (``START:STOP``) limits which shards this run processes. The
output is the same layout, with the same files as the equivalent folder would give.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitsrt.config import BertVits2Config, load_config
from vitsrt.errors import ConfigError, InputError, VitsrtError
from vitsrt.text.inventory import default_phoneme_id_map
from vitsrt.text.normalize import normalize_text
from vitsrt.train.audio import AudioError, AudioSettings, clean_audio, write_pcm16
from vitsrt.train.tokens import FilelistEntry, SymbolTable, write_filelist

log = logging.getLogger(__name__)

METADATA_NAMES = ("metadata.list", "metadata.csv", "metadata.txt", "filelist.txt", "esd.list")
# Upstream Bert-VITS2 language codes (and bare ISO codes) -> espeak-ng voices, matched case-insensitively,
# so upstream metadata phonemises out of the box. Other names are taken as espeak-ng voice names.
LANGUAGE_VOICES = {"en": "en-us", "zh": "cmn", "jp": "ja", "ja": "ja"}
FRONTENDS = ("ipa", "chars")


@dataclass(frozen=True)
class MetadataItem:
    source: str  # absolute path of the recording
    speaker: str
    language: str
    text: str
    line: int


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class PrepareOptions:
    frontend: str = "ipa"
    language: str = "en-us"
    speaker: str | None = None
    metadata: str | None = None
    workers: int | None = 1  # None: one per core for shard input, 1 for a folder
    shards: str | None = None  # "START:STOP": the shard indices this run processes (shard input only)
    seed: int = 1234
    val_per_speaker: int = 2
    max_val: int = 12
    min_seconds: float = 0.3
    max_seconds: float = 30.0


def find_metadata(dataset: Path, explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        path = path if path.is_absolute() else dataset / path
        if not path.is_file():
            raise InputError("metadata", f"not found: {path}")
        return path
    for name in METADATA_NAMES:
        if (dataset / name).is_file():
            return dataset / name
    raise InputError("metadata", f"no metadata file in {dataset} (looked for {', '.join(METADATA_NAMES)})")


def parse_metadata(path: Path, dataset: Path, options: PrepareOptions, skipped: list[Skipped]) -> list[MetadataItem]:
    """Metadata lines -> items; malformed lines are skipped with a reason."""
    items: list[MetadataItem] = []
    default_speaker = options.speaker or dataset.resolve().name
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) == 2:
            audio, text = fields
            speaker, language = default_speaker, options.language
        elif len(fields) in (4, 7):
            audio, speaker, language, text = fields[:4]
        else:
            skipped.append(Skipped(f"{path.name}:{number}", f"expected 2, 4 or 7 fields, found {len(fields)}"))
            continue
        if not audio or not text.strip():
            skipped.append(Skipped(f"{path.name}:{number}", "empty path or text"))
            continue
        source = Path(audio)
        source = source if source.is_absolute() else dataset / source
        if not source.suffix:
            source = source.with_suffix(".wav")
        items.append(MetadataItem(str(source), speaker or default_speaker, language or options.language, text, number))
    return items


def frontend_section(
    kind: str, languages: Sequence[str], texts: Iterable[str], add_blank: bool, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The config's `frontend` section (voice.json front-end fields). Keeps a previous table when it fits."""
    previous = previous if previous and previous.get("kind") == ("ipa" if kind == "ipa" else "ids") else None
    lang_ids: dict[str, int] = dict(previous["languages"]) if previous else {}
    for language in sorted(set(languages)):
        if language not in lang_ids:
            lang_ids[language] = len(lang_ids)
    if kind == "ipa":
        id_map = previous["phoneme_id_map"] if previous else default_phoneme_id_map()
        voices = dict(previous.get("espeak_voices", {})) if previous else {}
        for language in lang_ids:
            voices.setdefault(language, LANGUAGE_VOICES.get(language.lower(), language))
        return {
            "kind": "ipa",
            "phoneme_id_map": id_map,
            "pad": "_",
            "bos": "^",
            "eos": "$",
            "add_blank": add_blank,
            "espeak_voices": voices,
            "languages": lang_ids,
            "num_symbols": 1 + max(max(ids) for ids in id_map.values()),
            "num_tones": 1,
            "num_languages": len(lang_ids),
        }
    if previous:
        symbols = list(previous["symbols"])
    else:
        chars = sorted({ch for text in texts for ch in _char_text(text)} - {"_"})
        symbols = ["_", *chars]
    return {
        "kind": "ids",
        "symbols": symbols,
        "add_blank": add_blank,
        "blank_id": 0,
        "languages": lang_ids,
        "num_symbols": len(symbols),
        "num_tones": 1,
        "num_languages": len(lang_ids),
    }


def _char_text(text: str) -> str:
    return normalize_text(text, keep_newlines=False).lower()


def stft_settings(config: BertVits2Config) -> tuple[Any, ...]:
    """The `SpectrogramTransform` arguments of a config's data section (picklable, for worker processes)."""
    data = config.data
    return (data.sampling_rate, data.filter_length, data.hop_length, data.win_length, data.n_mel_channels,
            data.mel_fmin, data.mel_fmax)


def spectrogram_is_current(wav: Path) -> bool:
    spec_path = wav.with_suffix(".spec.pt")
    return spec_path.is_file() and spec_path.stat().st_mtime_ns >= wav.stat().st_mtime_ns


def write_spectrogram(wav: Path, transform: Any) -> None:
    """Cache the upstream-layout linear spectrogram ([n_fft/2+1, frames] float32) of a prepared WAV next to it,
    computed from the WAV as written (16-bit), so every path to it gives the same values."""
    import soundfile as sf
    import torch

    spec_path = wav.with_suffix(".spec.pt")
    samples, _ = sf.read(str(wav), dtype="float32")
    spec = transform.linear(torch.from_numpy(samples))
    tmp = spec_path.with_name(f".{spec_path.name}.tmp")
    torch.save(spec.contiguous(), tmp)
    tmp.replace(spec_path)


def limit_worker_threads() -> None:
    """Pool worker initializer: one torch intra-op thread per worker process (the workers are the parallelism;
    one item's spectrogram is too small to split: on 2 cores, 2 threads took 5.7 ms for a 2 s clip, 1 took 0.3)."""
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """`limit_worker_threads` for items prepared in this process, with the thread count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ItemProcessor:
    """One metadata item -> cleaned WAV, its spectrogram and phonemes: a finished item. Picklable; the front end
    and the spectrogram transform are built lazily per process."""

    def __init__(self, audio: AudioSettings, frontend: dict[str, Any], settings_key: str, stft: tuple[Any, ...]):
        self.audio = audio
        self.frontend = frontend
        self.settings_key = settings_key
        self.stft = stft
        self._ipa = None
        self._transform = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ipa"] = None  # espeak handles do not cross processes
        state["_transform"] = None  # rebuilt where it is used
        return state

    def spectrogram(self, wav_path: str, *, fresh: bool = False) -> None:
        """Write the WAV's spectrogram: always for a `fresh` WAV, else unless a current one is there (a reused
        item's may be missing or predate its WAV)."""
        if not fresh and spectrogram_is_current(Path(wav_path)):
            return
        if self._transform is None:
            from vitsrt.train.mel import SpectrogramTransform

            self._transform = SpectrogramTransform(*self.stft)
        write_spectrogram(Path(wav_path), self._transform)

    def phonemize(self, text: str, language: str) -> list[str]:
        if self.frontend["kind"] == "ids":
            symbols = self.frontend.get("symbols")
            if symbols is None:  # shard input: the table is known only at the end, which filters then
                return list(_char_text(text))
            table = set(symbols)
            return [ch for ch in _char_text(text) if ch in table]
        return list(self._ipa_frontend(language).from_text(text, language=language).phonemes)

    def _ipa_frontend(self, language: str) -> Any:
        """The espeak front end; a language the section does not list yet (shard input, where languages are
        found while reading) is added with its default espeak voice, as `frontend_section` will add it."""
        if self._ipa is not None and language in self._ipa.languages:
            return self._ipa
        from vitsrt.text.ipa import IpaFrontEnd

        languages = dict(self.frontend["languages"])
        voices = dict(self.frontend["espeak_voices"])
        if language not in languages:
            languages[language] = len(languages)
            voices.setdefault(language, LANGUAGE_VOICES.get(language.lower(), language))
            self.frontend = {**self.frontend, "languages": languages, "espeak_voices": voices}
        self._ipa = IpaFrontEnd(
            self.frontend["phoneme_id_map"],
            languages,
            espeak_voices=voices,
            add_blank=self.frontend["add_blank"],
            phonemizer=self._ipa.phonemizer if self._ipa is not None else None,
        )
        return self._ipa

    def _key(self, item: MetadataItem, size: int, mtime_ns: int) -> dict[str, Any]:
        return {
            "source": item.source,
            "source_size": size,
            "source_mtime_ns": mtime_ns,
            "settings": self.settings_key,
            "text": item.text,
            "language": item.language,
        }

    def process(self, item: MetadataItem, wav_path: str) -> dict[str, Any]:
        """Returns the sidecar record, or {"error": reason}. Reuses the existing output when it is current."""
        try:
            stat = os.stat(item.source)
        except OSError as exc:
            return {"error": f"cannot read file ({exc.strerror or exc})"}
        return self._process(item, self._key(item, stat.st_size, stat.st_mtime_ns), item.source, wav_path)

    def process_bytes(self, item: MetadataItem, data: bytes, mtime_ns: int, wav_path: str) -> dict[str, Any]:
        """The same for a recording held in memory (a tar shard's member); `item.source` names it."""
        from vitsrt.train.shards import named_bytes

        return self._process(item, self._key(item, len(data), mtime_ns), named_bytes(data, item.source), wav_path)

    def _process(self, item: MetadataItem, key: dict[str, Any], audio_source: Any, wav_path: str) -> dict[str, Any]:
        sidecar = Path(wav_path).with_suffix(".json")
        if sidecar.is_file() and Path(wav_path).is_file():
            try:
                record = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                record = {}
            if record.get("key") == key:
                self.spectrogram(wav_path)
                record["reused"] = True
                return record
        try:
            clean = clean_audio(audio_source, self.audio)
        except AudioError as exc:
            return {"error": str(exc)}
        try:
            phonemes = self.phonemize(item.text, item.language)
        except (InputError, ValueError, RuntimeError) as exc:
            return {"error": f"cannot phonemise text ({exc})"}
        if not phonemes:
            return {"error": "text has no symbols the front end knows"}
        Path(wav_path).parent.mkdir(parents=True, exist_ok=True)
        write_pcm16(wav_path, clean.samples, self.audio.sampling_rate)
        self.spectrogram(wav_path, fresh=True)  # before the sidecar: an item with a sidecar has its spectrogram
        record = {
            "key": key,
            "phonemes": phonemes,
            "seconds": len(clean.samples) / self.audio.sampling_rate,
            "source_rate": clean.source_rate,
            "source_channels": clean.source_channels,
        }
        tmp = sidecar.with_name(f".{sidecar.name}.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        tmp.replace(sidecar)
        record["reused"] = False
        return record

    def process_chunk(self, jobs: list[tuple[MetadataItem, str]]) -> list[dict[str, Any]]:
        return [self.process(item, wav) for item, wav in jobs]


@dataclass
class PrepareReport:
    output: str
    processed: int = 0
    reused: int = 0
    train: int = 0
    val: int = 0
    seconds_per_speaker: dict[str, float] = field(default_factory=dict)
    files_per_speaker: dict[str, int] = field(default_factory=dict)
    resampled: int = 0
    downmixed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    # shard input only: shards in the input, prepared by this run, reused from an earlier run's record,
    # and neither (outside this run's `shards` range and never finished)
    shards_total: int = 0
    shards_done: int = 0
    shards_reused: int = 0
    shards_pending: int = 0
    spectrograms_late: int = 0  # spectrograms the parent wrote after the workers (missing or stale ones)
    # wall seconds: ingest (the workers: WAVs, spectrograms, phonemes), spectrograms (only those still missing
    # after the workers), total
    timings: dict[str, float] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"prepared dataset: {self.output}", "", f"{'speaker':<24}{'files':>8}{'hours':>10}"]
        for speaker in sorted(self.files_per_speaker):
            hours = self.seconds_per_speaker[speaker] / 3600
            lines.append(f"{speaker:<24}{self.files_per_speaker[speaker]:>8}{hours:>10.3f}")
        total_hours = sum(self.seconds_per_speaker.values()) / 3600
        lines.append(f"{'total':<24}{sum(self.files_per_speaker.values()):>8}{total_hours:>10.3f}")
        lines.append("")
        lines.append(
            f"train {self.train}, val {self.val}; new {self.processed}, reused {self.reused}; "
            f"resampled {self.resampled}, downmixed to mono {self.downmixed}"
        )
        if self.shards_total:
            lines.append(
                f"shards {self.shards_total}: prepared now {self.shards_done}, done before {self.shards_reused}, "
                f"not yet prepared {self.shards_pending}"
            )
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            reasons = Counter(s.reason for s in self.skipped)
            for skip in self.skipped:
                lines.append(f"  {skip.path}: {skip.reason}")
            if len(reasons) > 1:
                lines.append("  by reason: " + ", ".join(f"{r} x{n}" for r, n in reasons.most_common()))
        else:
            lines.append("skipped 0")
        return "\n".join(lines)


def wav_name(speaker: str, parts: Sequence[str]) -> str:
    """The prepared WAV of a recording (relative to the output): its path parts joined by ``__``."""
    safe_speaker = speaker.replace("/", "_").replace("\\", "_") or "speaker"
    return f"wavs/{safe_speaker}/{'__'.join(parts)}.wav"


def _output_name(item: MetadataItem, dataset: Path) -> str:
    source = Path(item.source)
    try:
        parts: Sequence[str] = source.resolve().relative_to(dataset.resolve()).with_suffix("").parts
    except ValueError:
        parts = [source.stem]
    return wav_name(item.speaker, parts)


def _chunks(jobs: list[Any], size: int) -> list[list[Any]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def _run_jobs(processor: ItemProcessor, jobs: list[tuple[MetadataItem, str]], workers: int) -> list[dict[str, Any]]:
    from tqdm import tqdm

    if workers <= 1 or len(jobs) < 2:
        with one_torch_thread():
            return [processor.process(item, wav) for item, wav in tqdm(jobs, desc="prepare", unit="file", disable=None)]
    chunk_size = max(1, min(32, len(jobs) // (workers * 4) or 1))
    chunks = _chunks(jobs, chunk_size)
    results: list[list[dict[str, Any]] | None] = [None] * len(chunks)
    # spawn: workers must not inherit a parent's torch/OpenMP state or espeak handles.
    context = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                               initializer=limit_worker_threads) as pool,
        tqdm(total=len(jobs), desc="prepare", unit="file", disable=None) as bar,
    ):
        futures = {pool.submit(processor.process_chunk, chunk): i for i, chunk in enumerate(chunks)}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(len(chunks[futures[future]]))
    return [record for chunk in results for record in (chunk or [])]


def _write_missing_spectrograms(out: Path, wavs: list[str], config: BertVits2Config) -> int:
    """The workers write each item's spectrogram with its WAV; this writes those still missing or stale (a shard
    reused from its record whose spectrogram was deleted, an output from before they did). Returns how many."""
    stale = [out / rel for rel in wavs if not spectrogram_is_current(out / rel)]
    if not stale:
        return 0
    from tqdm import tqdm

    from vitsrt.train.mel import SpectrogramTransform

    transform = SpectrogramTransform(*stft_settings(config))
    with one_torch_thread():
        for wav in tqdm(stale, desc="spectrograms", unit="file", disable=None):
            write_spectrogram(wav, transform)
    return len(stale)


def _split(entries: list[FilelistEntry], options: PrepareOptions) -> tuple[list[FilelistEntry], list[FilelistEntry]]:
    """Seeded per-speaker validation picks; every speaker keeps at least one training item."""
    rng = random.Random(options.seed)
    by_speaker: dict[str, list[FilelistEntry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e.audio):
        by_speaker[entry.speaker].append(entry)
    train: list[FilelistEntry] = []
    val: list[FilelistEntry] = []
    for speaker in sorted(by_speaker):
        group = by_speaker[speaker]
        rng.shuffle(group)
        take = min(options.val_per_speaker, len(group) - 1, options.max_val - len(val))
        take = max(take, 0)
        val.extend(group[:take])
        train.extend(group[take:])
    return train, val


Ingested = tuple[dict[str, Any], list[tuple[MetadataItem, str]], list[dict[str, Any]]]


def prepare_dataset(
    dataset_dir: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    config_path: str | Path,
    options: PrepareOptions,
) -> PrepareReport:
    """Prepare a dataset folder, or tar shards (shard files and/or folders of shards, one path or several)."""
    from vitsrt.train.shards import find_shards

    started = time.perf_counter()
    inputs = [dataset_dir] if isinstance(dataset_dir, str | Path) else list(dataset_dir)
    shards = find_shards(inputs, options.metadata)
    if shards is None and options.shards:
        raise InputError("shards", "a shard range applies to tar-shard input only, not to a dataset folder")
    if options.frontend not in FRONTENDS:
        raise InputError("frontend", f"must be one of {', '.join(FRONTENDS)}")
    out = Path(output_dir)
    config = load_config(config_path)
    report = PrepareReport(output=str(out))
    audio = AudioSettings(
        config.data.sampling_rate,
        config.data.hop_length,
        min_seconds=options.min_seconds,
        max_seconds=options.max_seconds,
    )
    settings_key = json.dumps({"audio": asdict(audio), "frontend": options.frontend}, sort_keys=True)
    if shards is None:
        frontend, jobs, records = _ingest_folder(Path(inputs[0]), out, config, options, report, audio, settings_key)
    else:
        frontend, jobs, records = _ingest_shards(shards, out, config, options, report, audio, settings_key)
    report.timings["ingest"] = time.perf_counter() - started
    entries = _collect_entries(jobs, records, out, audio.sampling_rate, report)
    if not entries:
        raise InputError("dataset", "no recording could be prepared:\n" + report.render())
    kept = _covered_by_table(entries, frontend, report)

    spectrograms = time.perf_counter()
    report.spectrograms_late = _write_missing_spectrograms(out, [e.audio for e in kept], config)
    if report.spectrograms_late:
        log.info("wrote %d missing spectrogram(s) after the workers", report.spectrograms_late)
    report.timings["spectrograms"] = time.perf_counter() - spectrograms
    _write_filelists(out, kept, options, report)
    _write_json(out / "config.json", _training_config(config, kept, frontend))
    report.timings["total"] = time.perf_counter() - started
    _write_json(out / "prepare_report.json", asdict(report))
    return report


def _ingest_folder(dataset: Path, out: Path, config: BertVits2Config, options: PrepareOptions,
                   report: PrepareReport, audio: AudioSettings, settings_key: str) -> Ingested:
    """A dataset folder's recordings, cleaned and phonemised: (front-end section, jobs, per-job records)."""
    metadata = find_metadata(dataset, options.metadata)
    items = parse_metadata(metadata, dataset, options, report.skipped)
    if not items:
        raise InputError("metadata", f"{metadata} lists no usable recordings")
    frontend = frontend_section(
        options.frontend, [i.language for i in items], [i.text for i in items], config.data.add_blank,
        _previous_frontend(out),
    )
    processor = ItemProcessor(audio, frontend, settings_key, stft_settings(config))
    out.mkdir(parents=True, exist_ok=True)
    jobs = _plan_jobs(items, dataset, out, report)
    return frontend, jobs, _run_jobs(processor, jobs, options.workers or 1)


def _ingest_shards(shards: list[Path], out: Path, config: BertVits2Config, options: PrepareOptions,
                   report: PrepareReport, audio: AudioSettings, settings_key: str) -> Ingested:
    """Tar shards, streamed by worker processes (finished shards reused from their records); the same triple
    as `_ingest_folder`, over every finished shard of the input, not only those of this run's range."""
    from concurrent.futures.process import BrokenProcessPool

    from vitsrt.train import shards as shard_io

    previous = _previous_frontend(out)
    # Workers cannot know the final table (it covers every transcript); "chars" phonemes are filtered at the end.
    provisional = frontend_section(options.frontend, [], [], config.data.add_blank, previous)
    if provisional["kind"] == "ids":
        provisional["symbols"] = None
    processor = ItemProcessor(audio, provisional, settings_key, stft_settings(config))
    speaker = options.speaker or shards[0].resolve().parent.name
    todo = shard_io.parse_shard_range(options.shards, len(shards))
    out.mkdir(parents=True, exist_ok=True)
    records: dict[int, dict[str, Any]] = {}
    jobs: list[shard_io.ShardJob] = []
    for index, shard in enumerate(shards):
        signature = shard_io.shard_signature(shard, settings_key, speaker, options.language)
        path = shard_io.record_path(out, shard)
        record = shard_io.load_record(path, signature, out)
        if record is not None:
            records[index] = {**record, "reused": True}
        elif index in todo:
            jobs.append(shard_io.ShardJob(index, str(shard), str(out), str(path), signature, processor))
        else:
            report.shards_pending += 1
    report.shards_total, report.shards_reused = len(shards), len(records)
    log.info("%d shards: %d to prepare now, %d done before", len(shards), len(jobs), len(records))
    try:
        done = shard_io.run_shards(jobs, options.workers or shard_io.available_cores())
    except BrokenProcessPool as exc:
        raise VitsrtError(f"a shard worker died ({exc}); finished shards are recorded: run again to resume") from None
    report.shards_done = len(done)
    records.update({job.index: record for job, record in zip(jobs, done, strict=True)})
    return _shard_items([records[i] for i in sorted(records)], out, options, previous, config, report)


def _shard_items(records: list[dict[str, Any]], out: Path, options: PrepareOptions, previous: dict[str, Any] | None,
                 config: BertVits2Config, report: PrepareReport) -> Ingested:
    """Shard records -> the front-end section over all their transcripts, and jobs with records for them."""
    jobs: list[tuple[MetadataItem, str]] = []
    results: list[dict[str, Any]] = []
    for record in records:
        report.skipped.extend(Skipped(s["path"], s["reason"]) for s in record["skipped"])
        for entry in record["items"]:
            jobs.append((MetadataItem(entry["source"], entry["speaker"], entry["language"], entry["text"], 0),
                         str(out / entry["wav"])))
            result = dict(entry["record"]) if "record" in entry else {"error": entry["error"]}
            result["reused"] = bool(result.get("reused") or record.get("reused"))
            results.append(result)
    frontend = frontend_section(options.frontend, [item.language for item, _ in jobs],
                                [item.text for item, _ in jobs], config.data.add_blank, previous)
    claims: dict[str, list[str]] = defaultdict(list)
    for item, wav in jobs:
        claims[wav].append(item.source)
    symbols = set(frontend["symbols"]) if frontend["kind"] == "ids" else None
    for i, ((item, wav), result) in enumerate(zip(jobs, results, strict=True)):
        if len(claims[wav]) > 1:
            others = [source for source in claims[wav] if source != item.source]
            results[i] = {"error": f"same output file as {', '.join(others)} (keys must be unique)"}
        elif symbols is not None and "error" not in result:
            phonemes = [ch for ch in result["phonemes"] if ch in symbols]
            results[i] = {**result, "phonemes": phonemes} if phonemes else {
                "error": "text has no symbols the front end knows"}
    return frontend, jobs, results


def _previous_frontend(out: Path) -> dict[str, Any] | None:
    """The front-end section of an earlier run's config in `out`, so a re-run keeps its symbol table."""
    previous_out = out / "config.json"
    if not previous_out.is_file():
        return None
    return (load_config(previous_out).model_extra or {}).get("frontend")


def _plan_jobs(items: list[MetadataItem], dataset: Path, out: Path,
               report: PrepareReport) -> list[tuple[MetadataItem, str]]:
    """(item, output WAV path) for each recording; the same recording listed twice keeps the first."""
    names: dict[str, int] = Counter()
    jobs: list[tuple[MetadataItem, str]] = []
    for item in items:
        name = _output_name(item, dataset)
        names[name] += 1
        if names[name] > 1:
            report.skipped.append(Skipped(item.source, f"listed twice (metadata line {item.line})"))
            continue
        jobs.append((item, str(out / name)))
    return jobs


def _collect_entries(jobs: list[tuple[MetadataItem, str]], records: list[dict[str, Any]], out: Path,
                     sampling_rate: int, report: PrepareReport) -> list[FilelistEntry]:
    """Filelist entries for the prepared recordings; failed ones go to the report's skipped list."""
    entries: list[FilelistEntry] = []
    for (item, wav), record in zip(jobs, records, strict=True):
        if "error" in record:
            report.skipped.append(Skipped(item.source, record["error"]))
            log.warning("skipped %s: %s", item.source, record["error"])
            continue
        _count_record(report, item, record, sampling_rate)
        phonemes = record["phonemes"]
        entries.append(
            FilelistEntry(
                str(Path(wav).relative_to(out).as_posix()),
                item.speaker,
                item.language,
                " ".join(item.text.split()),
                phonemes,
                [0] * len(phonemes),
                [1] * len(phonemes),
            )
        )
    return entries


def _count_record(report: PrepareReport, item: MetadataItem, record: dict[str, Any], sampling_rate: int) -> None:
    report.reused += int(record.get("reused", False))
    report.processed += int(not record.get("reused", False))
    report.resampled += int(record["source_rate"] != sampling_rate)
    report.downmixed += int(record["source_channels"] > 1)
    report.seconds_per_speaker[item.speaker] = report.seconds_per_speaker.get(item.speaker, 0.0) + record["seconds"]
    report.files_per_speaker[item.speaker] = report.files_per_speaker.get(item.speaker, 0) + 1


def _covered_by_table(entries: list[FilelistEntry], frontend: dict[str, Any],
                      report: PrepareReport) -> list[FilelistEntry]:
    """The entries whose symbols are all in the table (a reused "ids" table may lack characters of new text)."""
    table = SymbolTable(frontend)
    kept = []
    for entry in entries:
        missing = sorted({s for s in entry.phonemes if not table.known(s)})
        if missing:
            report.skipped.append(Skipped(entry.audio, f"symbols missing from the voice's table: {missing}"))
            continue
        kept.append(entry)
    return kept


def _write_filelists(out: Path, kept: list[FilelistEntry], options: PrepareOptions, report: PrepareReport) -> None:
    train, val = _split(kept, options)
    (out / "filelists").mkdir(exist_ok=True)
    write_filelist(out / "filelists" / "train.list", train)
    write_filelist(out / "filelists" / "val.list", val)
    report.train, report.val = len(train), len(val)


def _training_config(config: BertVits2Config, kept: list[FilelistEntry], frontend: dict[str, Any]) -> dict[str, Any]:
    """The input config pointing at the filelists, with the speaker table and the front-end section."""
    speakers = sorted({e.speaker for e in kept})
    # speakers the input config already numbers keep their ids (a model trained with that config still finds
    # them); new speakers are numbered after the highest
    spk2id = {name: sid for name, sid in config.data.spk2id.items() if name in speakers}
    for name in speakers:
        if name not in spk2id:
            spk2id[name] = max(spk2id.values(), default=-1) + 1
    raw = json.loads(config.to_json())
    raw["data"]["training_files"] = "filelists/train.list"
    raw["data"]["validation_files"] = "filelists/val.list"
    raw["data"]["spk2id"] = spk2id
    raw["data"]["n_speakers"] = max(spk2id.values()) + 1
    raw["frontend"] = frontend
    return raw


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_prepared_config(path: str | Path) -> BertVits2Config:
    """A prepared config, checked to carry the front-end section the trainer needs."""
    config = load_config(path)
    if not (config.model_extra or {}).get("frontend"):
        raise ConfigError(f"{path} has no 'frontend' section; run `vitsrt prepare` to make a training config")
    return config
