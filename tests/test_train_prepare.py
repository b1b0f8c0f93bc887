"""`vitsrt prepare`: bad files are reported and skipped, the rest is cleaned and written; re-runs are idempotent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from vitsrt.cli import main as cli_main
from vitsrt.train.prepare import PrepareOptions, prepare_dataset
from vitsrt.train.smoke import synthesize_utterance, tiny_config_dict
from vitsrt.train.tokens import SymbolTable, read_filelist


@pytest.fixture
def messy_dataset(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    speech = synthesize_utterance("hello there", 16000, 150.0, seed=0)
    sf.write(raw / "good.wav", speech, 16000, subtype="PCM_16")
    sf.write(raw / "wrong_rate.wav", synthesize_utterance("more words", 22050, 150.0, seed=1), 22050)
    stereo = synthesize_utterance("two sides", 44100, 200.0, seed=2)
    sf.write(raw / "stereo.wav", np.stack([stereo, 0.5 * stereo], axis=1), 44100, subtype="PCM_24")
    (raw / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage that is not audio")
    sf.write(raw / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (raw / "metadata.list").write_text(
        "\n".join(
            [
                "# path|speaker|language|text",
                "good.wav|ann|en|hello there",
                "wrong_rate|ann|en|more words",  # no extension: .wav assumed
                "stereo.wav|bob|EN|two sides|t uw s ay d z|0 0 0 0 0 0|2 4",  # upstream 7-field line
                "corrupt.wav|bob|en|broken file",
                "silent.wav|bob|en|nothing",
                "missing.wav|bob|en|not there",
                "a|b|c",  # malformed line
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    config = tmp_path / "base.json"
    config.write_text(json.dumps(tiny_config_dict()), encoding="utf-8")
    return raw, config, tmp_path / "prepared"


def test_prepare_reports_bad_files_and_processes_the_rest(messy_dataset):
    raw, config, out = messy_dataset
    report = prepare_dataset(raw, out, config, PrepareOptions(frontend="chars", language="en", val_per_speaker=0))
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert "unreadable audio" in reasons["corrupt.wav"]
    assert reasons["silent.wav"] == "silent audio"
    assert "cannot read file" in reasons["missing.wav"]
    assert any("fields" in r for r in reasons.values())  # the malformed metadata line
    assert report.train == 3 and report.resampled == 2 and report.downmixed == 1
    assert report.files_per_speaker == {"ann": 2, "bob": 1}
    rendered = report.render()
    assert "corrupt.wav" in rendered and "total" in rendered

    entries = read_filelist(out / "filelists" / "train.list")
    assert len(entries) == 3
    for entry in entries:
        audio, rate = sf.read(out / entry.audio, dtype="float32")
        info = sf.info(out / entry.audio)
        assert rate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert len(audio) % 128 == 0 and 0.9 < np.abs(audio).max() <= 0.96  # whole hops, peak-normalised
        spec = torch.load(out / entry.audio.replace(".wav", ".spec.pt"), weights_only=True)
        assert spec.shape == (257, len(audio) // 128)
    prepared = json.loads((out / "config.json").read_text())
    assert prepared["data"]["spk2id"] == {"ann": 0, "bob": 1} and prepared["data"]["n_speakers"] == 2
    assert prepared["data"]["training_files"] == "filelists/train.list"
    table = SymbolTable(prepared["frontend"])
    for entry in entries:
        table.encode(entry.phonemes, entry.tones, entry.language)  # every symbol is in the table
    assert prepared["model"] == json.loads(config.read_text())["model"] | prepared["model"]


def test_prepare_rerun_only_does_missing_work(messy_dataset):
    raw, config, out = messy_dataset
    options = PrepareOptions(frontend="chars", language="en", val_per_speaker=0)
    first = prepare_dataset(raw, out, config, options)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    second = prepare_dataset(raw, out, config, options)
    assert second.processed == 0 and second.reused == first.processed == 3
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamps
    # A changed source is redone, and only that one.
    sf.write(raw / "good.wav", synthesize_utterance("hello there again", 16000, 150.0, seed=5), 16000)
    third = prepare_dataset(raw, out, config, options)
    assert third.processed == 1 and third.reused == 2


def test_prepare_cli_with_workers(messy_dataset, capsys):
    raw, config, out = messy_dataset
    code = cli_main(["prepare", str(raw), "-o", str(out), "-c", str(config), "--frontend", "chars", "--workers", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "corrupt.wav" in printed and "unreadable audio" in printed
    lists = out / "filelists"
    assert len(read_filelist(lists / "train.list")) + len(read_filelist(lists / "val.list")) == 3


def test_prepare_with_the_ipa_front_end(messy_dataset):
    pytest.importorskip("phonemizer")
    pytest.importorskip("espeakng_loader")
    raw, config, out = messy_dataset
    report = prepare_dataset(raw, out, config, PrepareOptions(frontend="ipa", language="en-us", val_per_speaker=0))
    assert report.train == 3
    prepared = json.loads((out / "config.json").read_text())
    assert prepared["frontend"]["kind"] == "ipa" and prepared["frontend"]["languages"] == {"EN": 0, "en": 1}
    assert prepared["frontend"]["espeak_voices"] == {"EN": "en-us", "en": "en-us"}
    entries = {e.text: e for e in read_filelist(out / "filelists" / "train.list")}
    assert "h" in entries["hello there"].phonemes and " " in entries["hello there"].phonemes
    ids = SymbolTable(prepared["frontend"]).encode(entries["hello there"].phonemes, [], "en").phone_ids
    assert ids[0] == 1 and ids[-1] == 2  # BOS ... EOS of the default inventory
