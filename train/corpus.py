"""Build the default voice's training corpus from speech engines installed as Debian *main* packages.

Nothing here reaches the network: the voices are CMU Flite's built-in English voices (Debian ``flite``)
and the sentences come from the public-domain *Alice* chapters that ship in that same package plus a
sentence generator in this module. The licences are recorded in ``recipes/default-voice/LICENSES.md``.

Output (``OUT``)::

    metadata.csv              path|speaker|language|text, the format ``vitsrt prepare`` reads
    wavs/<speaker>/<id>.wav   flite's output (16 kHz mono for the default voices); <id> hashes the text
    heldout.txt               the held-out sentences (never in metadata.csv), one a line
    corpus.json               settings, speaker -> flite voice, counts and hours per speaker

Re-running only synthesises what is missing (a WAV is written under a temporary name and renamed, so a
killed run never leaves half a file behind). The selection is a pure function of ``--seed``,
``--hours`` and the speakers, so two machines build the same corpus.

Run ``python -m vitsrt.train.corpus OUT [--hours 2]`` (``make corpus`` installs flite first).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Speaker name -> flite voice. All four are CMU Flite's built-in US-English voices (flite -lv); "kal" (8 kHz)
# and "awb_time" (a talking-clock limited-domain voice) are left out.
FLITE_VOICES = {"slt": "slt", "rms": "rms", "awb": "awb", "kal": "kal16"}
DEFAULT_SPEAKERS = tuple(FLITE_VOICES)
ALICE_PATH = Path("/usr/share/doc/flite/examples/alice")
MIN_WORDS, MAX_WORDS = 4, 25
# Rough flite speaking rate, used only to size each round of synthesis; the hours reported are measured.
SECONDS_PER_WORD = 0.36
SECONDS_PER_SENTENCE = 0.5
HELDOUT_ALICE = 15
HELDOUT_GENERATED = 15

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])['\"]?\s+")
_CLAUSE_END = re.compile(r"\s*[;:]\s+")


class CorpusError(RuntimeError):
    """A problem that stops the corpus build (flite missing, a voice missing, no sentences)."""


@dataclass(frozen=True)
class Utterance:
    speaker: str
    text: str

    @property
    def uid(self) -> str:
        digest = hashlib.sha1(f"{self.speaker}\n{self.text}".encode()).hexdigest()[:12]
        return f"{self.speaker}_{digest}"

    @property
    def relpath(self) -> str:
        return f"wavs/{self.speaker}/{self.uid}.wav"


# --- sentences ---------------------------------------------------------------------------------------------


def clean_sentence(raw: str) -> str | None:
    """One sentence ready to read aloud, or None when it should not be used.

    Kept: plain ASCII letters with ``, . ; : ' ? ! -``, 4-25 words, a capital first letter and a final
    ``. ! ?``. Quote marks (Alice uses backtick/apostrophe pairs) and brackets are dropped; digits and other
    symbols reject the sentence, because flite and espeak-ng read them differently and the transcript
    would no longer say what the audio says."""
    text = raw.replace("`", "").replace('"', "").replace("--", ", ")
    text = re.sub(r"[()\[\]_*]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^'+|(?<=\s)'+|'+(?=[\s,.;:!?]|$)", "", text)  # quote marks, not apostrophes
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?=[,;:.!?])", "", text)
    text = text.strip(" ,;:-")
    if not text or not re.fullmatch(r"[A-Za-z ,.;:'?!-]+", text):
        return None
    if not text[0].isupper() or text[-1] not in ".!?":
        return None
    words = _WORD.findall(text)
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    # Capitals open a heading ("CHAPTER I: ..."); inside a sentence they are emphasis ("so VERY tired").
    if (words[0].isupper() and len(words[0]) > 1) or sum(w.isupper() and len(w) > 1 for w in words) > 1:
        return None
    return text


def split_sentences(text: str) -> list[str]:
    """Sentences of running prose (paragraph breaks and sentence-final punctuation)."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = re.sub(r"\s+", " ", paragraph).strip()
        sentences.extend(s for s in _SENTENCE_END.split(flat) if s)
    return sentences


def dedupe(sentences: Iterable[str]) -> list[str]:
    """First occurrence of each sentence, compared case- and punctuation-insensitively."""
    seen: set[str] = set()
    kept = []
    for sentence in sentences:
        key = " ".join(_WORD.findall(sentence.lower()))
        if key not in seen:
            seen.add(key)
            kept.append(sentence)
    return kept


def sentence_candidates(sentence: str) -> list[str]:
    """The sentence itself, or, when it is too long to use, its clauses between ``;`` and ``:`` made into
    sentences of their own (Victorian prose chains many clauses into one sentence)."""
    if len(_WORD.findall(sentence)) <= MAX_WORDS:
        return [sentence]
    clauses = [c.strip(" ,-'`") for c in _CLAUSE_END.split(sentence.rstrip(".!?'` "))]
    return [_capital(c) + "." for c in clauses if c]


def alice_sentences(path: Path = ALICE_PATH) -> list[str]:
    """Usable sentences of the two public-domain Alice chapters shipped in Debian's flite package."""
    if not path.is_file():
        raise CorpusError(f"{path} not found: install Debian's flite package (apt-get install flite)")
    raw = split_sentences(path.read_text(encoding="latin-1"))
    cleaned = (clean_sentence(c) for s in raw for c in sentence_candidates(s))
    return dedupe(s for s in cleaned if s)


# The generator's vocabulary: everyday words chosen to cover English phones in many contexts.
_NAMES = ("Anna", "Peter", "Maria", "Thomas", "Grace", "Oliver", "Helen", "Victor", "Julia", "Samuel")
_PEOPLE = ("the teacher", "my neighbour", "the old farmer", "a young doctor", "the driver", "her brother",
           "the children", "our guide", "the baker", "a tall stranger", "the captain", "his sister")
_THINGS = ("the red box", "a warm coat", "the heavy chair", "a blue bottle", "the garden gate", "an empty cup",
           "the kitchen window", "a long letter", "the broken clock", "a bag of apples", "the wooden bridge",
           "a yellow kite", "the quiet village", "a map of the coast", "the morning train", "a bowl of soup")
_VERBS_PAST = ("opened", "painted", "carried", "found", "washed", "repaired", "watched", "dropped", "bought",
               "cleaned", "moved", "forgot", "brought", "showed", "sold", "noticed")
_PLACES = ("near the river", "behind the station", "in the small shop", "at the end of the road",
           "under the old tree", "beside the harbour", "in the north of the city", "on the top floor",
           "across the valley", "inside the museum")
_TIMES = ("this morning", "last winter", "every Sunday", "before dinner", "after the storm",
          "in the evening", "on Monday", "at midnight", "during the summer", "a week ago")
_ADJECTIVES = ("quiet", "bright", "cold", "strange", "pleasant", "noisy", "careful", "gentle", "busy", "tired")
_QUESTIONS = ("Where did", "Why did", "When did", "How often did")
_VERBS_BASE = ("open", "paint", "carry", "find", "wash", "repair", "watch", "drop", "buy", "clean", "move",
               "bring", "show", "sell", "notice")
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty",
            "forty", "a hundred")
_NOUNS_PLURAL = ("boats", "letters", "horses", "windows", "pictures", "candles", "oranges", "students",
                 "questions", "birds", "stones", "songs")


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def generated_sentence(rng: random.Random) -> str:
    """One grammatical sentence from a handful of patterns (statements, questions, counts)."""
    who = rng.choice((*_NAMES, *_PEOPLE))
    pattern = rng.randrange(6)
    if pattern == 0:
        text = f"{who} {rng.choice(_VERBS_PAST)} {rng.choice(_THINGS)} {rng.choice(_PLACES)} {rng.choice(_TIMES)}."
    elif pattern == 1:
        text = f"{rng.choice(_QUESTIONS)} {who} {rng.choice(_VERBS_BASE)} {rng.choice(_THINGS)}?"
    elif pattern == 2:
        text = f"There were {rng.choice(_NUMBERS)} {rng.choice(_NOUNS_PLURAL)} {rng.choice(_PLACES)}."
    elif pattern == 3:
        text = (f"{rng.choice(_TIMES)}, {who} felt {rng.choice(_ADJECTIVES)} and "
                f"{rng.choice(_VERBS_PAST)} {rng.choice(_THINGS)}.")
    elif pattern == 4:
        other = rng.choice(_NAMES)
        text = f"{who} told {other} that {rng.choice(_THINGS)} was {rng.choice(_ADJECTIVES)}."
    else:
        text = f"Please {rng.choice(_VERBS_BASE)} {rng.choice(_THINGS)} {rng.choice(_PLACES)}!"
    return _capital(text)


def generated_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct generated sentences (fewer if the grammar runs out), in a seeded order."""
    rng = random.Random(f"vitsrt-corpus-generated-{seed}")
    found: dict[str, str] = {}
    attempts = 0
    while len(found) < count and attempts < count * 20:
        attempts += 1
        sentence = clean_sentence(generated_sentence(rng))
        if sentence:
            found.setdefault(" ".join(_WORD.findall(sentence.lower())), sentence)
    return list(found.values())


def heldout_sentences(seed: int = 0, alice: Sequence[str] | None = None) -> list[str]:
    """The held-out list: a seeded sample of Alice sentences plus generated ones from a separate stream.

    A pure function of ``seed`` and the Alice text, so the committed ``recipes/default-voice/heldout.txt``
    can be checked against it."""
    alice = list(alice) if alice is not None else alice_sentences()
    rng = random.Random(f"vitsrt-corpus-heldout-{seed}")
    picked = rng.sample(alice, min(HELDOUT_ALICE, len(alice)))
    generator = random.Random(f"vitsrt-corpus-heldout-generated-{seed}")
    fresh: list[str] = []
    while len(fresh) < HELDOUT_GENERATED:
        sentence = clean_sentence(generated_sentence(generator))
        if sentence and sentence not in fresh:
            fresh.append(sentence)
    return dedupe(picked + fresh)


def training_pool(seed: int, heldout: Sequence[str], generated: int = 4000) -> list[str]:
    """Every sentence the corpus may use: Alice + generated, minus anything matching a held-out one."""
    banned = {" ".join(_WORD.findall(s.lower())) for s in heldout}
    pool = dedupe([*alice_sentences(), *generated_sentences(generated, seed)])
    return [s for s in pool if " ".join(_WORD.findall(s.lower())) not in banned]


def estimate_seconds(text: str) -> float:
    return SECONDS_PER_SENTENCE + SECONDS_PER_WORD * len(_WORD.findall(text))


# --- synthesis ---------------------------------------------------------------------------------------------


def flite_binary() -> str:
    found = shutil.which("flite")
    if not found:
        raise CorpusError("flite not found: apt-get install -y flite (or run `make corpus`)")
    return found


def available_voices(binary: str | None = None) -> list[str]:
    """Voices compiled into this flite (``flite -lv``)."""
    out = subprocess.run([binary or flite_binary(), "-lv"], capture_output=True, text=True, check=True).stdout
    return out.split(":", 1)[-1].split()


def synthesize_flite(voice: str, text: str, target: Path) -> float:
    """Speak ``text`` with a flite voice into ``target`` (atomic); returns its duration in seconds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        subprocess.run([flite_binary(), "-voice", voice, "-t", text, "-o", str(partial)],
                       check=True, capture_output=True, timeout=120)
        seconds = wav_seconds(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return seconds


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / float(handle.getframerate())


def _synthesize_job(job: tuple[str, str, str]) -> float:
    voice, text, target = job
    return synthesize_flite(voice, text, Path(target))


# --- the build ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusOptions:
    hours: float = 2.0
    speakers: tuple[str, ...] = DEFAULT_SPEAKERS
    seed: int = 0
    workers: int = 1
    language: str = "en"
    progress: bool = True


def _existing_seconds(path: Path) -> float | None:
    try:
        return wav_seconds(path) if path.stat().st_size > 44 else None
    except (OSError, wave.Error, EOFError):
        return None


@dataclass
class _Progress:
    """One speaker's place in the build: its seeded reading order of the pool, what it has read so far and
    the measured seconds of that."""

    order: list[str]
    chosen: list[Utterance] = field(default_factory=list)
    seconds: float = 0.0
    cursor: int = 0

    def add(self, utt: Utterance, seconds: float) -> None:
        self.chosen.append(utt)
        self.seconds += seconds


def _check_speakers(speakers: Sequence[str]) -> None:
    """Fail before any work when a speaker is unknown or this flite lacks its voice."""
    unknown = [s for s in speakers if s not in FLITE_VOICES]
    if unknown:
        raise CorpusError(f"unknown speakers {unknown}; known: {', '.join(FLITE_VOICES)}")
    binary = flite_binary()
    have = set(available_voices(binary))
    missing = [FLITE_VOICES[s] for s in speakers if FLITE_VOICES[s] not in have]
    if missing:
        raise CorpusError(f"this flite lacks voices {missing} (it has: {' '.join(sorted(have))})")


def _write_heldout(out: Path, seed: int, heldout_copy: Path | None) -> list[str]:
    """The held-out list, written into the corpus (and to `heldout_copy` when given)."""
    heldout = heldout_sentences(seed)
    heldout_text = "\n".join(heldout) + "\n"
    (out / "heldout.txt").write_text(heldout_text, encoding="utf-8")
    if heldout_copy is not None:
        heldout_copy.parent.mkdir(parents=True, exist_ok=True)
        heldout_copy.write_text(heldout_text, encoding="utf-8")
    return heldout


def _plan_round(speakers: Sequence[str], progress: dict[str, _Progress], budget: float) -> list[Utterance]:
    """The next sentences of each speaker, until its measured plus estimated seconds reach the budget."""
    jobs: list[Utterance] = []
    for speaker in speakers:
        state = progress[speaker]
        planned = state.seconds
        while planned < budget and state.cursor < len(state.order):
            utt = Utterance(speaker, state.order[state.cursor])
            state.cursor += 1
            jobs.append(utt)
            planned += estimate_seconds(utt.text)
    return jobs


def _reuse_existing(out: Path, jobs: Sequence[Utterance], progress: dict[str, _Progress]) -> list[Utterance]:
    """Count the WAVs a previous run left (a re-run tops up); returns the utterances still to synthesise."""
    todo = []
    for utt in jobs:
        known = _existing_seconds(out / utt.relpath)
        if known is None:
            todo.append(utt)
        else:
            progress[utt.speaker].add(utt, known)
    return todo


def _synthesize_all(out: Path, todo: Sequence[Utterance], progress: dict[str, _Progress],
                    options: CorpusOptions) -> None:
    """Speak `todo` with flite (in `options.workers` processes) and record each measured duration."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="flite", unit="utt", disable=not options.progress or not todo)
    args = [(FLITE_VOICES[u.speaker], u.text, str(out / u.relpath)) for u in todo]
    if options.workers > 1:
        with concurrent.futures.ProcessPoolExecutor(max_workers=options.workers) as pool_exec:
            _record(todo, pool_exec.map(_synthesize_job, args, chunksize=8), progress, bar)
    else:
        _record(todo, map(_synthesize_job, args), progress, bar)
    bar.close()


def _record(todo: Sequence[Utterance], durations: Iterable[float], progress: dict[str, _Progress], bar) -> None:
    for utt, took in zip(todo, durations, strict=True):
        progress[utt.speaker].add(utt, took)
        bar.update()


def _write_summary(out: Path, options: CorpusOptions, progress: dict[str, _Progress], heldout: int,
                   pool: int) -> dict[str, object]:
    """metadata.csv and corpus.json; returns the summary."""
    lines = [f"{u.relpath}|{u.speaker}|{options.language}|{u.text}"
             for s in options.speakers for u in progress[s].chosen]
    (out / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary: dict[str, object] = {
        "format": "vitsrt-corpus/1",
        "engine": "flite",
        "speakers": {s: FLITE_VOICES[s] for s in options.speakers},
        "seed": options.seed,
        "hours_target": options.hours,
        "hours": round(sum(state.seconds for state in progress.values()) / 3600.0, 4),
        "per_speaker": {s: {"items": len(state.chosen), "hours": round(state.seconds / 3600.0, 4)}
                        for s, state in progress.items()},
        "heldout": heldout,
        "pool": pool,
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("corpus in %s: %d items, %.3f h", out, len(lines), summary["hours"])
    return summary


def build_corpus(out: Path, options: CorpusOptions, heldout_copy: Path | None = None) -> dict[str, object]:
    """Synthesise (or top up) the corpus in ``out``; returns the summary also written to corpus.json."""
    _check_speakers(options.speakers)
    out.mkdir(parents=True, exist_ok=True)
    heldout = _write_heldout(out, options.seed, heldout_copy)
    pool = training_pool(options.seed, heldout)
    budget = options.hours * 3600.0 / len(options.speakers)

    # Each speaker reads its own seeded order of the pool; the schedule is planned from estimated durations,
    # then checked against the measured ones (and topped up in a further round if flite ran short).
    progress = {s: _Progress(random.Random(f"vitsrt-corpus-{options.seed}-{s}").sample(pool, len(pool)))
                for s in options.speakers}
    for _round in range(4):
        jobs = _plan_round(options.speakers, progress, budget)
        if not jobs:
            break
        todo = _reuse_existing(out, jobs, progress)
        _synthesize_all(out, todo, progress, options)
        if all(state.seconds >= 0.97 * budget or state.cursor >= len(pool) for state in progress.values()):
            break
    return _write_summary(out, options, progress, len(heldout), len(pool))


def read_corpus_info(folder: Path) -> dict[str, object]:
    """corpus.json of a built corpus (speaker -> flite voice), for the intelligibility ceiling."""
    path = folder / "corpus.json"
    if not path.is_file():
        raise CorpusError(f"{path} not found: not a corpus built by `python -m vitsrt.train.corpus`")
    info: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitsrt.train.corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="corpus folder (re-runs only synthesise what is missing)")
    parser.add_argument("--hours", type=float, default=2.0, help="total audio to aim for (default: 2.0)")
    parser.add_argument("--speakers", default=",".join(DEFAULT_SPEAKERS),
                        help=f"comma-separated, from {', '.join(FLITE_VOICES)} (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="selection seed (default: 0)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="flite processes in parallel")
    parser.add_argument("--heldout", type=Path, help="also write the held-out list here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = CorpusOptions(
        hours=args.hours,
        speakers=tuple(s.strip() for s in args.speakers.split(",") if s.strip()),
        seed=args.seed,
        workers=max(1, args.workers),
        progress=not args.no_progress,
    )
    try:
        summary = build_corpus(args.output, options, heldout_copy=args.heldout)
    except (CorpusError, subprocess.CalledProcessError) as exc:
        print(f"corpus: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary["per_speaker"]), f"total {summary['hours']} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
