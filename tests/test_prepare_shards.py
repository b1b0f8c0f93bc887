"""`vitsrt prepare` on WebDataset-style tar shards: the same prepared data as the equivalent dataset folder, bad
members reported and skipped, finished shards recorded and not redone after an interrupted run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vitsrt.cli import main as cli_main
from vitsrt.errors import InputError
from vitsrt.train import shards as shard_io
from vitsrt.train.prepare import PrepareOptions, prepare_dataset
from vitsrt.train.smoke import synthesize_utterance, tiny_config_dict
from vitsrt.train.tokens import read_filelist

OPTIONS = PrepareOptions(frontend="chars", language="en", speaker="ann", val_per_speaker=1, workers=1)
MTIME = 1_700_000_000


@dataclass(frozen=True)
class Member:
    """One sample of the test corpus: `text` None = no transcript, `audio` None = no recording."""

    key: str
    audio: bytes | None
    extension: str = "wav"
    text: str | None = None
    meta: dict | None = None  # written as .json (with `text`) instead of .txt when given
    others: tuple[str, ...] = ()  # extra members the reader must ignore (.cls, ...)


def encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def speech(text: str, rate: int = 16000, seed: int = 0) -> bytes:
    return encode(synthesize_utterance(text, rate, 150.0, seed=seed), rate)


def tar_members(member: Member) -> list[tuple[str, bytes]]:
    out = []
    if member.audio is not None:
        out.append((f"{member.key}.{member.extension}", member.audio))
    if member.meta is not None:
        out.append((f"{member.key}.json", json.dumps({"text": member.text, **member.meta}).encode()))
    elif member.text is not None:
        out.append((f"{member.key}.txt", member.text.encode()))
    out += [(f"{member.key}.{ext}", b"1") for ext in member.others]
    return out


def write_shard(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for member in members:
            for name, data in tar_members(member):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), MTIME
                tar.addfile(info, io.BytesIO(data))
    return path


def write_folder(folder: Path, shards: list[list[Member]]) -> Path:
    """The dataset folder holding the same recordings and transcripts (what can be said in a metadata file)."""
    lines = []
    for member in (m for shard in shards for m in shard):
        if member.audio is None or member.text is None:
            continue
        path = folder / f"{member.key}.{member.extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(member.audio)
        meta = member.meta or {}
        if meta:
            lines.append(f"{path.relative_to(folder)}|{meta.get('speaker', 'ann')}|{meta.get('language', 'en')}|"
                         f"{member.text}")
        else:
            lines.append(f"{path.relative_to(folder)}|{member.text}")
    (folder / "metadata.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def corpus() -> list[list[Member]]:
    stereo = synthesize_utterance("two sides", 44100, 200.0, seed=2)
    return [
        [
            Member("s0/a", speech("hello there"), text="hello there"),
            Member("s0/b", speech("more words", 22050, 1), text="more words",
                   meta={"speaker": "bob", "language": "en"}),
            Member("s0/c", speech("no words", seed=3)),  # transcript-less
        ],
        [
            Member("d", encode(synthesize_utterance("we go home", 16000, 170.0, 4), 16000, "FLAC"), "flac",
                   text="we go home"),
            Member("e", b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio", text="broken file"),  # corrupt
            Member("e2", None, text="orphan words", meta={}),  # a transcript without a recording
        ],
        [
            Member("f", encode(np.stack([stereo, 0.5 * stereo], axis=1), 44100, subtype="PCM_24"),
                   text="two sides", meta={"speaker": "bob"}, others=("cls",)),
            Member("g", speech("the cat sat", seed=5), text="the cat sat"),
        ],
        [
            Member("h", speech("a small dog runs", seed=6), text="a small dog runs", meta={"speaker": 7}),
            Member("i", encode(np.zeros(16000, dtype=np.float32), 16000), text="nothing"),  # silent
        ],
    ]


def write_shards(folder: Path, shards: list[list[Member]]) -> Path:
    folder.mkdir(parents=True)
    for i, members in enumerate(shards):
        write_shard(folder / f"part-{i:04d}.{'tar.gz' if i == 1 else 'tar'}", members)
    return folder


def prepared_files(out: Path) -> dict[str, str]:
    """Digest of everything training reads: WAVs, spectrograms (tensor values), filelists, config."""
    digests = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.name.endswith(".spec.pt"):
            spec = torch.load(path, weights_only=True)
            digests[rel] = hashlib.sha256(spec.numpy().tobytes() + str(tuple(spec.shape)).encode()).hexdigest()
        elif path.suffix in (".wav", ".list") or rel == "config.json":
            digests[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "base.json"
    path.write_text(json.dumps(tiny_config_dict()), encoding="utf-8")
    return path


def test_shards_prepare_like_the_equivalent_folder(tmp_path, config):
    shards = corpus()
    shard_dir = write_shards(tmp_path / "shards", shards)
    folder = write_folder(tmp_path / "folder", shards)
    from_folder = prepare_dataset(folder, tmp_path / "out_folder", config, OPTIONS)
    from_shards = prepare_dataset(shard_dir, tmp_path / "out_shards", config, OPTIONS)

    expected = prepared_files(tmp_path / "out_folder")
    assert sum(k.endswith(".wav") for k in expected) == 6 and sum(k.endswith(".spec.pt") for k in expected) == 6
    assert prepared_files(tmp_path / "out_shards") == expected
    assert from_shards.files_per_speaker == from_folder.files_per_speaker == {"ann": 3, "bob": 2, "7": 1}
    assert (from_shards.train, from_shards.val, from_shards.resampled, from_shards.downmixed) == (
        from_folder.train, from_folder.val, from_folder.resampled, from_folder.downmixed)
    assert (from_shards.shards_total, from_shards.shards_done, from_shards.shards_reused) == (4, 4, 0)
    assert from_shards.spectrograms_late == from_folder.spectrograms_late == 0  # written with each item

    # The skipped members are listed: the folder's two bad files, plus what only shards can hold.
    folder_skips = {Path(s.path).stem: s.reason for s in from_folder.skipped}
    shard_skips = {s.path.rsplit(":", 1)[-1].split(".")[0]: s.reason for s in from_shards.skipped}
    assert set(folder_skips) == {"e", "i"} and set(shard_skips) == {"e", "i", "s0/c", "e2"}
    assert "unreadable audio" in shard_skips["e"] and "part-0001.tar.gz:e.wav" in shard_skips["e"]
    assert shard_skips["i"] == folder_skips["i"] == "silent audio"
    assert shard_skips["s0/c"].startswith("no transcript") and shard_skips["e2"] == "no audio member"
    rendered = from_shards.render()
    assert "s0/c" in rendered and "shards 4: prepared now 4" in rendered
    assert json.loads((tmp_path / "out_shards" / "prepare_report.json").read_text())["shards_total"] == 4

    # Negative control: one transcript changed in one shard is caught by the comparison, in the filelists.
    shards[2][1] = Member("g", shards[2][1].audio, text="the cat sad")
    write_shards(tmp_path / "shards2", shards)
    prepare_dataset(tmp_path / "shards2", tmp_path / "out_changed", config, OPTIONS)
    changed = prepared_files(tmp_path / "out_changed")
    differing = {k for k in expected if changed.get(k) != expected[k]}
    assert differing and differing <= {"filelists/train.list", "filelists/val.list", "config.json"}


def test_pool_workers_and_cli_give_the_same_output(tmp_path, config, capsys):
    shard_dir = write_shards(tmp_path / "shards", corpus())
    folder = write_folder(tmp_path / "folder", corpus())
    prepare_dataset(shard_dir, tmp_path / "serial", config, OPTIONS)
    shard_files = [str(p) for p in sorted(shard_dir.iterdir())]
    code = cli_main(["prepare", *shard_files, "-o", str(tmp_path / "pool"), "-c", str(config), "--frontend", "chars",
                     "--language", "en", "--speaker", "ann", "--val-per-speaker", "1", "--workers", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "shards 4: prepared now 4" in printed and "no audio member" in printed
    assert prepared_files(tmp_path / "pool") == prepared_files(tmp_path / "serial")
    # the workers wrote every spectrogram with its WAV: the parent had none left to write
    assert json.loads((tmp_path / "pool" / "prepare_report.json").read_text())["spectrograms_late"] == 0

    # A dataset folder's pool (items in chunks, spectrograms in the workers too) gives the same files.
    pooled_folder = prepare_dataset(folder, tmp_path / "folder_pool", config, replace(OPTIONS, workers=2))
    assert pooled_folder.spectrograms_late == 0
    assert prepared_files(tmp_path / "folder_pool") == prepared_files(tmp_path / "serial")


def count_opened(monkeypatch) -> list[str]:
    opened: list[str] = []
    real = shard_io.prepare_shard

    def counting(job):
        opened.append(Path(job.path).name)
        return real(job)

    monkeypatch.setattr(shard_io, "prepare_shard", counting)
    return opened


def many_shards(folder: Path, n_shards: int, per_shard: int) -> Path:
    words = ("hello there", "more words", "we go home", "the cat sat", "a small dog runs", "it is late now")
    shards = [
        [Member(f"k{s:02d}_{i}", speech(words[(s + i) % len(words)], seed=s * 10 + i), text=words[(s + i) % len(words)])
         for i in range(per_shard)]
        for s in range(n_shards)
    ]
    return write_shards(folder, shards)


def test_killed_run_resumes_without_redoing_finished_shards(tmp_path, config, monkeypatch):
    shard_dir = many_shards(tmp_path / "shards", n_shards=10, per_shard=3)
    out = tmp_path / "out"
    records = out / "shards"
    command = [sys.executable, "-m", "vitsrt.cli", "-q", "prepare", str(shard_dir), "-o", str(out), "-c", str(config),
               "--frontend", "chars", "--language", "en", "--speaker", "ann", "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(records.glob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its worker processes, mid-flight
        _, stderr = process.communicate()
    finished = {json.loads(p.read_text())["shard"] for p in records.glob("*.json")}
    assert 2 <= len(finished) < 10, f"kill came too late or never: {len(finished)} shards finished; {stderr[-500:]}"
    assert not (out / "config.json").exists()
    finished_names = {Path(p).name for p in finished}
    finished_indices = {int(name[5:9]) for name in finished_names}  # part-NNNN.tar holds k{NN}_*.wav
    stamps = {p: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")}
    kept = [path for path in stamps if int(path.stem[1:3]) in finished_indices]
    assert len(kept) == 3 * len(finished)
    # The killed parent merged nothing, yet each finished item has its spectrogram: the workers wrote them.
    specs = {wav: wav.with_suffix(".spec.pt").stat().st_mtime_ns for wav in kept}
    # Negative control for the resume: a finished item's deleted spectrogram is noticed and written again.
    victim = min(kept).with_suffix(".spec.pt")
    victim.unlink()

    opened = count_opened(monkeypatch)
    resumed = prepare_dataset(shard_dir, out, config, OPTIONS)
    assert set(opened) == {p.name for p in shard_dir.iterdir()} - finished_names  # only the unfinished ones
    assert (resumed.shards_reused, resumed.shards_done) == (len(finished), 10 - len(finished))
    assert resumed.train + resumed.val == 30 and not resumed.skipped
    assert resumed.spectrograms_late == 1 and victim.is_file()
    for path in kept:  # what the killed run finished is not written again
        assert path.stat().st_mtime_ns == stamps[path], path
        if path != min(kept):
            assert path.with_suffix(".spec.pt").stat().st_mtime_ns == specs[path], path

    opened.clear()  # a run with everything recorded opens no shard and writes nothing new
    again = prepare_dataset(shard_dir, out, config, OPTIONS)
    assert opened == [] and (again.shards_reused, again.shards_done, again.processed) == (10, 0, 0)
    assert again.reused == 30 and again.spectrograms_late == 0

    uninterrupted = prepare_dataset(shard_dir, tmp_path / "clean", config, OPTIONS)
    assert uninterrupted.shards_done == 10
    assert prepared_files(out) == prepared_files(tmp_path / "clean")


def test_shard_range_prepares_part_and_keeps_finished_shards(tmp_path, config, monkeypatch):
    shard_dir = many_shards(tmp_path / "shards", n_shards=4, per_shard=2)
    out = tmp_path / "out"
    opened = count_opened(monkeypatch)
    first = prepare_dataset(shard_dir, out, config, replace(OPTIONS, shards="1:3"))
    assert opened == ["part-0001.tar.gz", "part-0002.tar"]
    assert (first.shards_done, first.shards_reused, first.shards_pending) == (2, 0, 2)
    lists = out / "filelists"
    audio = {e.audio for e in read_filelist(lists / "train.list") + read_filelist(lists / "val.list")}
    assert audio == {f"wavs/ann/k{s:02d}_{i}.wav" for s in (1, 2) for i in range(2)}

    opened.clear()
    rest = prepare_dataset(shard_dir, out, config, replace(OPTIONS, shards="3:"))
    assert opened == ["part-0003.tar"] and (rest.shards_done, rest.shards_reused, rest.shards_pending) == (1, 2, 1)
    opened.clear()
    rest = prepare_dataset(shard_dir, out, config, replace(OPTIONS, shards="0"))
    assert opened == ["part-0000.tar"] and rest.train + rest.val == 8

    # A changed shard file is redone; changed settings redo every shard.
    write_shard(shard_dir / "part-0002.tar", [Member("k02_0", speech("we go home"), text="we go home")])
    opened.clear()
    changed = prepare_dataset(shard_dir, out, config, OPTIONS)
    assert opened == ["part-0002.tar"] and changed.train + changed.val == 7
    opened.clear()
    prepare_dataset(shard_dir, out, config, replace(OPTIONS, min_seconds=0.2))
    assert len(opened) == 4

    with pytest.raises(InputError, match="START:STOP"):
        prepare_dataset(shard_dir, out, config, replace(OPTIONS, shards="a:b"))
    folder = write_folder(tmp_path / "folder", corpus())
    with pytest.raises(InputError, match="tar-shard input only"):
        prepare_dataset(folder, out, config, replace(OPTIONS, shards="0:1"))


def test_truncated_shard_keeps_what_came_before_the_damage(tmp_path, config):
    members = [Member(f"t{i}", speech("hello there", seed=i), text="hello there") for i in range(3)]
    whole = write_shard(tmp_path / "whole.tar", members).read_bytes()
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    # cut inside the second sample's audio: the first sample is complete, the rest is missing
    second_audio = whole.index(b"RIFF", whole.index(b"RIFF") + 1)
    (shard_dir / "cut.tar").write_bytes(whole[: second_audio + 1000])
    write_shard(shard_dir / "good.tar", [Member("g0", speech("we go home"), text="we go home")])
    report = prepare_dataset(shard_dir, tmp_path / "out", config, OPTIONS)
    assert report.train + report.val == 2
    (skip,) = report.skipped
    assert skip.path.endswith("cut.tar") and skip.reason.startswith("unreadable shard after 1 sample(s)")


class NoSeek(io.RawIOBase):
    """A pipe-like stream: reads only, counts the bytes handed out."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data[self.position : self.position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def test_reader_streams_without_seeking_or_loading_the_shard(tmp_path, monkeypatch):
    members = [Member(f"x{i}", speech("hello there", seed=i), text=f"text {i}", meta={"speaker": "s"})
               for i in range(8)]
    data = write_shard(tmp_path / "s.tar", members).read_bytes()
    stream = NoSeek(data)
    samples = shard_io.iter_samples(stream)
    first = next(samples)
    assert first.key == "x0" and first.audio is not None and json.loads(first.transcripts["json"])["text"] == "text 0"
    assert stream.position < len(data) / 3  # one sample in, most of the shard not read yet
    assert [s.key for s in samples] == [f"x{i}" for i in range(1, 8)]

    # Members over the size limit are skipped unread and reported.
    monkeypatch.setattr(shard_io, "MAX_AUDIO_BYTES", 100)
    (big, *_) = shard_io.iter_samples(io.BytesIO(data))
    assert big.audio is None and "too large" in big.problems[0]


def test_member_names_and_transcripts():
    assert shard_io.split_member_name("./a/b.c.FLAC") == ("a/b", "c.flac")
    assert shard_io.split_member_name("key.wav") == ("key", "wav")
    assert shard_io.key_parts("/../a/./b") == ["a", "b"]
    sample = shard_io.Sample("k", 0, transcripts={"txt": b"plain text", "json": b'{"speaker": "x"}'})
    assert shard_io.read_transcript(sample, "dflt", "en") == ("plain text", "x", "en")
    for bad, reason in [(b"[1]", "not an object"), (b"{", "unreadable"), (b'{"text": "a|b"}', "contains '\\|'"),
                        (b'{"text": "t", "speaker": ["x"]}', "not a string"), (b'{"text": "  "}', "empty")]:
        with pytest.raises(shard_io.SampleError, match=reason):
            shard_io.read_transcript(shard_io.Sample("k", 0, transcripts={"json": bad}), "d", "en")
    assert shard_io.parse_shard_range("2:5", 4) == range(2, 4) and shard_io.parse_shard_range(":", 3) == range(3)
    assert shard_io.parse_shard_range(None, 3) == range(3) and shard_io.parse_shard_range("1", 3) == range(1, 2)
    with pytest.raises(InputError):
        shard_io.parse_shard_range("3:1", 5)


def test_duplicate_keys_across_shards_are_all_skipped(tmp_path, config):
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    write_shard(shard_dir / "a.tar", [Member("same", speech("hello there"), text="hello there"),
                                      Member("only_a", speech("we go home"), text="we go home")])
    write_shard(shard_dir / "b.tar", [Member("same", speech("more words", seed=3), text="more words")])
    report = prepare_dataset(shard_dir, tmp_path / "out", config, OPTIONS)
    assert report.train + report.val == 1
    assert sorted(s.path.rsplit("/", 1)[-1] for s in report.skipped) == ["a.tar:same.wav", "b.tar:same.wav"]
    assert all("keys must be unique" in s.reason for s in report.skipped)


def test_ipa_front_end_on_shards_matches_the_folder(tmp_path, config):
    pytest.importorskip("phonemizer")
    pytest.importorskip("espeakng_loader")
    shards = [[Member("a", speech("hello there"), text="hello there", meta={"speaker": "ann", "language": "en"})],
              [Member("b", speech("more words", seed=1), text="more words", meta={"speaker": "ann", "language": "EN"}),
               Member("c", speech("we go home", seed=2), text="we go home")]]
    options = PrepareOptions(frontend="ipa", language="en-us", speaker="ann", val_per_speaker=0, workers=1)
    prepare_dataset(write_folder(tmp_path / "folder", shards), tmp_path / "out_folder", config, options)
    prepare_dataset(write_shards(tmp_path / "shards", shards), tmp_path / "out_shards", config, options)
    prepared = json.loads((tmp_path / "out_shards" / "config.json").read_text())
    assert prepared["frontend"]["languages"] == {"EN": 0, "en": 1, "en-us": 2}
    assert prepared_files(tmp_path / "out_shards") == prepared_files(tmp_path / "out_folder")
