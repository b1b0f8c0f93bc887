"""A Bert-VITS2 voice that speaks text with BERT features, end to end (issue 16).

The tiny upstream parity checkpoint (../shared/fixtures/bertvits2-2.3-tiny) is exported with `--bert` for the
three stand-in BERTs of ../shared/fixtures/bertvits2-2.3-frontend. Text through our front end, our BERT stage and
the voice must equal the same voice driven by the front-end fixture's ids and BERT arrays (upstream's own), with
the other two BERT inputs filled with the request's seeded noise as upstream fills them with randn: noise 0,
audio within 1e-4, the same length (durations). Through the engine and over gRPC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import FRONTEND_FIXTURE, frontend_cases
from vitsrt import regulator
from vitsrt.stages import BERT_FEATURES

FRONTEND = FRONTEND_FIXTURE
TOLERANCE = 1e-4
SEED = 11
# One sentence per case (the engine splits "Hello, world! This is a test." in two, upstream reads it as one);
# EN cases whose phones match upstream.
CASE_IDS = ("zh000", "zh005", "jp001", "en006", "en020")
QUIET = {"noise_scale": 0.0, "noise_scale_w": 0.0, "sdp_ratio": 0.0, "length_scale": 1.0}


def _cases() -> dict[str, dict]:
    return {case["id"]: case for case in frontend_cases()}


@pytest.fixture(scope="module")
def bv2_voice(tmp_path_factory) -> Path:
    from export_helpers import fixture_files

    checkpoint, config = fixture_files()
    if not FRONTEND.is_dir():
        pytest.skip(f"front-end fixture not found at {FRONTEND}")
    for module in ("transformers", "safetensors"):
        pytest.importorskip(module, reason=f"{module} is needed to export a BERT (the bert extra)")
    from vitsrt.export.bundle import export_voice

    bert = {"zh": FRONTEND / "bert" / "chinese-roberta-wwm-ext-large",
            "ja": FRONTEND / "bert" / "deberta-v2-large-japanese-char-wwm",
            "en": FRONTEND / "bert" / "deberta-v3-large"}
    return export_voice(checkpoint, config, tmp_path_factory.mktemp("bv2") / "voice", name="tiny-bv2", verify=False,
                        bert=bert)


@pytest.fixture(scope="module")
def cases(bv2_voice) -> dict[str, dict]:
    return _cases()


@pytest.fixture(scope="module")
def reference(bv2_voice, cases):
    """Audio of the voice driven by the fixture's ids and BERT arrays (export's harness runs the engine's chain)."""
    from vitsrt.export.ort_pipeline import synthesize_batch
    from vitsrt.serve.backends.ort_runner import OrtRunner

    runner = OrtRunner.from_voice(bv2_voice, intra_op_threads=1, quiet=True)
    arrays = np.load(FRONTEND / "bert.npz")

    def audio(case_id: str) -> np.ndarray:
        case = cases[case_id]
        tokens = len(case["phone_ids"])
        noise = regulator.RequestNoise(SEED, segment=0)
        features = {name: noise.bert_filler(slot, 1024, tokens)[None] for slot, name in enumerate(BERT_FEATURES)}
        features[case["bert_slot"]] = arrays[f"{case_id}_{case['bert_slot']}"][None]
        inputs = {"phone_ids": np.array([case["phone_ids"]]), "tone_ids": np.array([case["tone_ids"]]),
                  "language_ids": np.array([case["language_ids"]]), "lengths": np.array([tokens]),
                  "sid": np.array([0]), **features}
        result = synthesize_batch(runner, inputs, seeds=[SEED], **QUIET)
        return result.audio[0, 0, : int(result.y_lengths[0]) * 512]

    return audio


@pytest.fixture(scope="module")
def engine(bv2_voice):
    from grpc_support import open_engine

    engine = open_engine(bv2_voice)
    yield engine
    engine.close()


def _text_request(case: dict, **fields):
    from vitsrt.serve.engine.types import SynthesisRequest

    return SynthesisRequest(**{"text": case["text"], "language": case["lang"], "seed": SEED, **QUIET, **fields})


def test_voice_json_names_its_bert_graphs(bv2_voice) -> None:
    from vitsrt.voice import load_voice

    front = load_voice(bv2_voice).manifest.front_end
    assert front.kind == "bv2"
    assert set(front.bert_models) == {"ZH", "JP", "EN"}
    for path in front.bert_models.values():
        assert (bv2_voice / path / "bert.onnx").is_file()


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_engine_text_equals_fixture_ids_and_bert(engine, cases, reference, case_id) -> None:
    expected = reference(case_id)
    got = engine.synthesize(_text_request(cases[case_id])).audio
    assert got.shape == expected.shape  # same durations
    assert float(np.max(np.abs(got - expected))) <= TOLERANCE


def test_negative_control_zero_bert_differs(engine, cases, reference) -> None:
    """The ids-only path (zeros for every BERT input) is far from the BERT-driven reference."""
    from vitsrt.serve.engine.types import PhonemeIds, SynthesisRequest

    case = cases["zh000"]
    ids = PhonemeIds(phone_ids=case["phone_ids"], tone_ids=case["tone_ids"], language_ids=case["language_ids"])
    zeros = engine.synthesize(SynthesisRequest(phonemes=ids, seed=SEED, **QUIET)).audio
    expected = reference("zh000")
    n = min(len(zeros), len(expected))
    assert len(zeros) != len(expected) or float(np.max(np.abs(zeros[:n] - expected[:n]))) > 100 * TOLERANCE


def test_same_seed_same_audio_other_seed_differs(engine, cases) -> None:
    case = cases["jp001"]
    first = engine.synthesize(_text_request(case)).audio
    again = engine.synthesize(_text_request(case)).audio
    other = engine.synthesize(_text_request(case, seed=SEED + 1)).audio
    assert np.array_equal(first, again)
    assert other.shape != first.shape or not np.allclose(other, first, atol=TOLERANCE)


def test_grpc_text_and_language(bv2_voice, cases, reference) -> None:
    from grpc_support import RunningServer, open_engine
    from vitsrt.audio import Encoding
    from vitsrt.serve.grpc.client import TtsClient
    from vitsrt.serve.grpc.server import ServerConfig

    case = cases["zh005"]
    engine = open_engine(bv2_voice)
    try:
        with RunningServer(engine, ServerConfig(port=0)) as running, TtsClient(running.target, timeout=60) as client:
            client.wait_ready()
            received = client.synthesize(case["text"], language="zh", seed=SEED, encoding=Encoding.FLOAT32LE, **QUIET)
    finally:
        engine.close()
    expected = reference("zh005")
    assert received.samples.shape == expected.shape
    assert float(np.max(np.abs(received.samples - expected))) <= TOLERANCE


def test_bad_text_is_a_clear_error_and_the_engine_keeps_serving(engine, cases) -> None:
    from vitsrt.errors import InputError
    from vitsrt.serve.engine.types import SynthesisRequest

    with pytest.raises(InputError, match="language"):
        engine.synthesize(SynthesisRequest(text="Bonjour.", language="fr", seed=1))
    with pytest.raises(InputError, match="nothing"):
        engine.synthesize(SynthesisRequest(text="PPT GDP", language="zh", seed=1))  # Latin letters are deleted
    with pytest.raises(InputError):
        engine.synthesize(SynthesisRequest(text="ーー", language="ja", seed=1))
    assert len(engine.synthesize(_text_request(cases["en006"])).audio) > 0


def test_not_a_bert_directory_is_refused(tmp_path) -> None:
    from export_helpers import fixture_files
    from vitsrt.cli import main

    checkpoint, config = fixture_files()
    (tmp_path / "empty").mkdir()
    code = main(["export", str(checkpoint), "-c", str(config), "-o", str(tmp_path / "voice"), "--no-verify",
                 "--bert", f"zh={tmp_path / 'empty'}"])
    assert code == 2
    assert not (tmp_path / "voice").exists()
