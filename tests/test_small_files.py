"""`vitsrt.files.read_small_text`, the one reader of small regular UTF-8 files (voice.json, bert.json,
clap.json, tokenizer.json), and the wording each caller gives its refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vitsrt.errors import VitsrtError, VoiceError
from vitsrt.files import SmallFileError, read_small_text
from vitsrt.text.bert import read_bert_manifest
from vitsrt.text.clap import read_clap_manifest
from vitsrt.voice import MANIFEST_NAME, MAX_MANIFEST_BYTES, read_manifest

MIB = 1 << 20


def problem(path: Path, cap: int = MIB) -> SmallFileError:
    with pytest.raises(SmallFileError) as caught:
        read_small_text(path, cap)
    return caught.value


def test_reads_up_to_the_cap_and_refuses_one_byte_more(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b"\xc3\xa9" + b"x" * (MIB - 2))  # exactly the cap, UTF-8
    assert read_small_text(path, MIB) == "é" + "x" * (MIB - 2)
    path.write_bytes(b"x" * (MIB + 1))  # negative control: one byte over
    error = problem(path)
    assert (error.problem, error.reason) == ("too large", "larger than 1 MiB")
    assert str(error) == f"{str(path)!r}: larger than 1 MiB" and isinstance(error, VitsrtError)


def test_each_check_names_its_problem(tmp_path):
    assert (problem(tmp_path / "absent").problem, problem(tmp_path / "absent").reason) == ("missing", "not found")
    assert problem(tmp_path).reason == "is a directory, not a regular file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert problem(fifo).reason == "is a FIFO, not a regular file"  # refused without blocking
    latin = tmp_path / "latin1"
    latin.write_bytes(b'{"a": "caf\xe9"}')
    assert problem(latin).reason == "not UTF-8 (invalid continuation byte at byte 10)"
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.write_text("{}")
        locked.chmod(0)
        assert problem(locked).reason == "cannot be read (Permission denied)"


def test_callers_keep_their_wording(tmp_path):
    """bert.json/clap.json say the generic reason; voice.json its own, as before the reader was shared."""
    (tmp_path / "bert.json").write_bytes(b"\xff")
    with pytest.raises(VitsrtError, match=r"bert\.json': not UTF-8 \(invalid start byte at byte 0\)$"):
        read_bert_manifest(tmp_path)
    with pytest.raises(VitsrtError, match=r"clap\.json': not found$"):
        read_clap_manifest(tmp_path)

    voice = tmp_path / MANIFEST_NAME
    with pytest.raises(VoiceError, match=r"voice\.json: not found \(a voice directory must contain voice\.json\)$"):
        read_manifest(voice)
    voice.write_bytes(b"\xff")
    with pytest.raises(VoiceError, match=r"voice\.json: cannot be read \(not UTF-8: invalid start byte at byte 0\)$"):
        read_manifest(voice)
    voice.write_bytes(b" " * (MAX_MANIFEST_BYTES + 1))
    with pytest.raises(VoiceError, match=r"voice\.json: larger than 4 MiB; not a voice manifest \(those are KBs\)$"):
        read_manifest(voice)
    voice.unlink()
    voice.mkdir()
    with pytest.raises(VoiceError, match=r"voice\.json': is a directory, not a regular file$"):
        read_manifest(voice)
