"""`vitsrt clap-features`: a CLAP embedding (.emo.npy, [512, 1]) beside every recording of the filelists, equal to
upstream's wrapper output for the fixture clips, written by worker processes, skipped on a re-run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("tokenizers")

from bv22_helpers import exported_voice22, fixture22, load_npz

from vitsrt.cli import main
from vitsrt.voice import load_voice

TOL = 1e-4
COPIES = 6  # 18 recordings: three worker tasks of up to 8


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    voice = exported_voice22(tmp_path_factory)
    return voice / load_voice(voice).manifest.emotion.clap_model


@pytest.fixture(scope="module")
def clap_cases():
    return load_npz("clap_cases.npz")


def _dataset(root):
    """A prepared-dataset-like folder: copies of the three fixture clips, two filelists and a config naming them."""
    (root / "wavs").mkdir(parents=True)
    sources = {}
    for copy in range(COPIES):
        for clip in range(3):
            name = f"wavs/s{copy}_{clip}.wav"
            shutil.copyfile(fixture22() / f"clap_audio{clip}.wav", root / name)
            sources[name] = clip
    names = list(sources)
    line = "{}|alice|ZH|text|a b|0 0|1 1\n"
    (root / "train.list").write_text("".join(line.format(n) for n in names[:-3]) + "\n")
    (root / "val.list").write_text("".join(line.format(n) for n in names[-3:]) + line.format(names[0]))
    config = json.loads((fixture22() / "config.json").read_text())
    config["data"].update(training_files="train.list", validation_files="val.list")
    (root / "config.json").write_text(json.dumps(config))
    return sources


def _summary(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_writes_every_embedding_then_skips_them(tmp_path, clap_dir, clap_cases, capsys):
    sources = _dataset(tmp_path)
    code = main(["clap-features", "-c", str(tmp_path / "config.json"), "--clap", str(clap_dir), "--workers", "2"])
    assert code == 0
    assert _summary(capsys) == f"{len(sources)} written, 0 already done, 0 failed"
    for name, clip in sources.items():
        embedding = np.load(tmp_path / name.replace(".wav", ".emo.npy"))
        assert embedding.shape == (512, 1) and embedding.dtype == np.float32
        assert float(np.abs(embedding - clap_cases[f"audio{clip}_emb"]).max()) <= TOL, name
    assert not list(tmp_path.glob("wavs/.*.tmp"))  # no temporary file left behind

    written = {p: p.stat().st_mtime_ns for p in tmp_path.glob("wavs/*.emo.npy")}
    assert main(["clap-features", "-c", str(tmp_path / "config.json"), "--clap", str(clap_dir)]) == 0
    assert _summary(capsys) == f"0 written, {len(sources)} already done, 0 failed"
    assert {p: p.stat().st_mtime_ns for p in written} == written

    removed = tmp_path / "wavs" / "s3_1.emo.npy"
    removed.unlink()
    assert main(["clap-features", str(tmp_path / "train.list"), str(tmp_path / "val.list"), "--root", str(tmp_path),
                 "--clap", str(clap_dir), "--workers", "1"]) == 0
    assert _summary(capsys) == f"1 written, {len(sources) - 1} already done, 0 failed"
    assert float(np.abs(np.load(removed) - clap_cases["audio1_emb"]).max()) <= TOL


def test_negative_control_another_clip_differs(tmp_path, clap_dir, clap_cases):
    """The embeddings are the clip's own: clip 0's file is far from clip 1's upstream embedding."""
    _dataset(tmp_path)
    assert main(["clap-features", "-c", str(tmp_path / "config.json"), "--clap", str(clap_dir), "--workers", "1"]) == 0
    embedding = np.load(tmp_path / "wavs" / "s0_0.emo.npy")
    assert float(np.abs(embedding - clap_cases["audio1_emb"]).max()) > 100 * TOL


def test_unreadable_recordings_are_reported_and_the_rest_written(tmp_path, clap_dir, capsys):
    (tmp_path / "wavs").mkdir()
    shutil.copyfile(fixture22() / "clap_audio2.wav", tmp_path / "wavs" / "good.wav")
    (tmp_path / "wavs" / "broken.wav").write_bytes(b"RIFF not really")
    (tmp_path / "list.txt").write_text("wavs/good.wav|a\nwavs/broken.wav|a\nwavs/missing.wav|a\n")
    code = main(["clap-features", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--clap", str(clap_dir)])
    assert code == 1
    assert _summary(capsys) == "1 written, 0 already done, 2 failed"
    assert (tmp_path / "wavs" / "good.emo.npy").is_file() and not (tmp_path / "wavs" / "broken.emo.npy").exists()


def test_a_hugging_face_directory_is_exported_first(tmp_path, clap_dir, capsys):
    """--clap with the Hugging Face stand-in itself; --export-dir holding an identical export reuses it."""
    (tmp_path / "wavs").mkdir()
    shutil.copyfile(fixture22() / "clap_audio0.wav", tmp_path / "wavs" / "a.wav")
    (tmp_path / "list.txt").write_text("wavs/a.wav|a\n")
    code = main(["clap-features", str(tmp_path / "list.txt"), "--root", str(tmp_path), "--clap",
                 str(fixture22() / "clap"), "--export-dir", str(clap_dir.parent)])
    assert code == 0 and _summary(capsys) == "1 written, 0 already done, 0 failed"


def test_no_filelist_is_an_error(capsys, clap_dir):
    assert main(["clap-features", "--clap", str(clap_dir)]) == 2
    assert "filelists" in capsys.readouterr().err
