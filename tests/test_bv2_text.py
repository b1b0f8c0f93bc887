"""The Bert-VITS2 text front end end to end against upstream (../shared/fixtures/bertvits2-2.3-frontend): the ids
the acoustic model takes (add_blank applied), word2ph after the blank adjustment and the BERT tokenizer's ids,
through `Bv2FrontEnd` with the BERT tokenizers `vitsrt export --bert` writes.

The language modules' own tests (test_bv2_zh/ja/en.py) check normalisation, phones, tones and word2ph; this file
checks what the engine is handed. English cases whose phones differ from upstream (a neural g2p_en reading or a
word whose CMU dictionary version differs; see test_bv2_en.py) are listed and must still differ."""

from __future__ import annotations

import json

import pytest

from conftest import FRONTEND_FIXTURE, frontend_cases
from vitsrt.errors import InputError, NothingToSpeakError
from vitsrt.text.bv2 import (
    STANDARD_LANGUAGES,
    STANDARD_NUM_TONES,
    STANDARD_TONE_OFFSETS,
    Bv2FrontEnd,
    standard_frontend,
    standard_symbols,
)
from vitsrt.text.bv2_en import find_g2p_en_checkpoint

FIXTURE = FRONTEND_FIXTURE
pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"front-end fixture not found at {FIXTURE}")

BERT_MODELS = {"ZH": "chinese-roberta-wwm-ext-large", "JP": "deberta-v2-large-japanese-char-wwm",
               "EN": "deberta-v3-large"}
# English cases upstream read with g2p_en's neural network or with its own cmudict copy (test_bv2_en.py), and a
# Chinese one whose reduplication misaki's newer neutral-tone lists read differently (test_bv2_zh.py).
# The neural readings match when g2p-en's weights are installed (the bv2 extra), which vitsrt runs with numpy.
DIFFERENT = {"en001", "en004", "en012", "en015", "en037", "en039", "zh026"}
if find_g2p_en_checkpoint() is None:
    DIFFERENT |= {"en018", "en029", "en035"}


CASES = frontend_cases()


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory) -> dict:
    """The three stand-in BERTs exported as `vitsrt export --bert` does; their tokenizers as the engine loads them."""
    for module in ("torch", "transformers", "safetensors"):
        pytest.importorskip(module, reason=f"{module} is needed to export a BERT (the bert extra)")
    from vitsrt.export.bert import export_bert
    from vitsrt.text.bert import BertTokenizer

    root = tmp_path_factory.mktemp("bert")
    return {lang: BertTokenizer.from_dir(export_bert(FIXTURE / "bert" / name, root).directory)
            for lang, name in BERT_MODELS.items()}


@pytest.fixture(scope="module")
def frontend(tokenizers) -> Bv2FrontEnd:
    return Bv2FrontEnd(standard_symbols(), STANDARD_LANGUAGES, STANDARD_TONE_OFFSETS, num_tones=STANDARD_NUM_TONES,
                       num_languages=3, bert_slots={"ZH": "bert", "JP": "ja_bert", "EN": "en_bert"},
                       tokenizers=tokenizers)


def test_tables_are_upstreams() -> None:
    symbols = json.loads((FIXTURE / "symbols.json").read_text(encoding="utf-8"))
    assert standard_symbols() == symbols["symbols"]
    assert symbols["language_id_map"] == STANDARD_LANGUAGES
    assert symbols["language_tone_start_map"] == STANDARD_TONE_OFFSETS
    assert symbols["num_tones"] == STANDARD_NUM_TONES


def _model_inputs(frontend: Bv2FrontEnd, case: dict) -> dict:
    analysis = frontend.analyse(case["text"], language=case["lang"])
    seq = analysis.sequence
    return {"norm_text": analysis.norm_text, "phone_ids": seq.phone_ids.tolist(), "tone_ids": seq.tone_ids.tolist(),
            "language_ids": seq.language_ids.tolist(), "word2ph_blank": seq.bert.word2ph.tolist(),
            "bert_input_ids": seq.bert.input_ids.tolist(), "bert_slot": seq.bert.slot}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_model_inputs_equal_upstream(frontend: Bv2FrontEnd, case: dict) -> None:
    ours = _model_inputs(frontend, case)
    expected = {key: case[key] for key in ours}
    if case["id"] in DIFFERENT:
        different = (ours["phone_ids"], ours["tone_ids"]) != (expected["phone_ids"], expected["tone_ids"])
        assert different, "now equal upstream: remove it from DIFFERENT"
        assert ours["bert_input_ids"] == expected["bert_input_ids"]
        assert len(ours["word2ph_blank"]) == len(expected["word2ph_blank"])
        return
    assert ours == expected


def test_negative_control_swapped_tone_offsets(tokenizers) -> None:
    wrong = Bv2FrontEnd(standard_symbols(), STANDARD_LANGUAGES, {"ZH": 0, "JP": 8, "EN": 6}, num_tones=12,
                        num_languages=3, bert_slots={"JP": "ja_bert"}, tokenizers=tokenizers)
    case = next(c for c in CASES if c["lang"] == "JP")
    assert _model_inputs(wrong, case)["tone_ids"] != case["tone_ids"]


def test_languages_by_tag_and_errors() -> None:
    frontend = standard_frontend()
    assert frontend.language_of("zh") == "ZH" and frontend.language_of("ja-JP") == "JP"
    assert frontend.language_of("en") == "EN"
    with pytest.raises(InputError, match="not a language of this voice"):
        frontend.from_text("hello", language="fr")
    with pytest.raises(NothingToSpeakError):
        frontend.from_text("PPT GDP", language="zh")  # Latin letters are deleted in Chinese text
    with pytest.raises(NothingToSpeakError):
        frontend.from_text("   ", language="ja")
    with pytest.raises(InputError):
        frontend.from_text("ーー", language="ja")


def test_without_bert_no_tokens_and_ids_still_accepted() -> None:
    frontend = standard_frontend()
    seq = frontend.from_text("你好，世界。", language="zh")
    assert seq.bert is None and len(seq.phone_ids) == 2 * 12 + 1  # _ n i h ao , sh ir j ie . _
    raw = frontend.from_ids([0, 5, 0], [0, 1, 0], [0, 0, 0])
    assert raw.phone_ids.tolist() == [0, 5, 0]
    with pytest.raises(InputError):
        frontend.from_ids([0, 112, 0])


def test_tokenizer_mismatch_is_a_clear_error(tokenizers) -> None:
    # A ZH voice whose tokenizer is the English one: the token count cannot follow word2ph.
    frontend = Bv2FrontEnd(standard_symbols(), STANDARD_LANGUAGES, STANDARD_TONE_OFFSETS, num_tones=12,
                           num_languages=3, bert_slots={"ZH": "bert"}, tokenizers={"ZH": tokenizers["EN"]})
    with pytest.raises(InputError, match="BERT tokenizer"):
        frontend.from_text("今天天气很好。", language="zh")
