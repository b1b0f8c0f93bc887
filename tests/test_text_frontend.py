"""make_frontend wiring and the import-weight guarantees of vitsrt.text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vitsrt.errors import InputError
from vitsrt.text import FrontEnd, IdsFrontEnd, IpaFrontEnd, make_frontend
from vitsrt.text.inventory import PHONEME_INVENTORY, default_phoneme_id_map

REPO = Path(__file__).resolve().parents[1]


class EchoPhonemizer:
    def phonemize(self, text: str, voice: str) -> str:
        return text


def test_ids_frontend_from_dict_symbols() -> None:
    fe = make_frontend(
        {"kind": "ids", "symbols": [f"s{i}" for i in range(112)], "add_blank": True,
         "languages": {"ZH": 0, "JP": 1, "EN": 2}, "num_tones": 12}
    )  # fmt: skip
    assert isinstance(fe, IdsFrontEnd) and isinstance(fe, FrontEnd)
    assert (fe.n_symbols, fe.num_tones, fe.num_languages, fe.add_blank) == (112, 12, 3, True)
    assert fe.accepts_text is False


def test_ids_frontend_size_from_id_map_and_object_config() -> None:
    config = SimpleNamespace(
        kind="ids", symbols=None, phoneme_id_map={"_": [0], "a": [7]}, add_blank=None, languages=None, num_tones=None
    )
    fe = make_frontend(config, max_length=10)
    assert isinstance(fe, IdsFrontEnd)
    assert (fe.n_symbols, fe.num_tones, fe.num_languages, fe.add_blank, fe.max_length) == (8, 1, 1, False, 10)
    with pytest.raises(InputError):
        fe.from_ids([8])


def test_ids_frontend_needs_a_table_size() -> None:
    with pytest.raises(ValueError, match="symbols"):
        make_frontend({"kind": "ids"})


def test_ipa_frontend_defaults_to_our_inventory() -> None:
    fe = make_frontend({"kind": "ipa", "languages": {"en-us": 0}}, phonemizer=EchoPhonemizer())
    assert isinstance(fe, IpaFrontEnd) and isinstance(fe, FrontEnd)
    assert fe.id_map.n_symbols == len(PHONEME_INVENTORY)
    assert fe.add_blank is True and fe.accepts_text is True
    assert fe.from_text("a").phone_ids.tolist() == [1, 0, PHONEME_INVENTORY.index("a"), 0, 2]


def test_ipa_frontend_from_symbols_list_and_explicit_map() -> None:
    fe = make_frontend(
        {"kind": "ipa", "symbols": ["_", "^", "$", "b", "a"], "add_blank": False}, phonemizer=EchoPhonemizer()
    )
    assert fe.from_text("ab").phone_ids.tolist() == [1, 4, 3, 2]
    fe = make_frontend(
        {"kind": "ipa", "phoneme_id_map": {"_": [0], "^": [1], "$": [2], "a": [9]}, "default_language": "de",
         "languages": {"en-us": 0, "de": 1}},
        phonemizer=EchoPhonemizer(),
    )  # fmt: skip
    seq = fe.from_text("a")
    assert seq.phone_ids.tolist() == [1, 0, 9, 0, 2] and set(seq.language_ids.tolist()) == {1}


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown front end kind"):
        make_frontend({"kind": "bert"})


def test_import_pulls_in_neither_torch_nor_phonemizer() -> None:
    code = (
        "import sys, vitsrt.text, vitsrt.text.ipa;"
        "bad = [m for m in ('torch', 'phonemizer', 'espeakng_loader') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_wired_from_the_voice_manifest_model() -> None:
    """The real voice.json front-end record (vitsrt.voice.FrontEnd) drives make_frontend."""
    voice = pytest.importorskip("vitsrt.voice")
    ids_cfg = voice.FrontEnd(
        kind="ids",
        num_symbols=112,
        symbols=[f"s{i}" for i in range(112)],
        add_blank=True,
        languages={"ZH": 0, "JP": 1, "EN": 2},
        num_languages=3,
        num_tones=12,
    )
    fe = make_frontend(ids_cfg)
    assert isinstance(fe, IdsFrontEnd)
    assert (fe.n_symbols, fe.num_tones, fe.num_languages, fe.add_blank, fe.blank_id) == (112, 12, 3, True, 0)

    ipa_cfg = voice.FrontEnd(
        kind="ipa",
        num_symbols=len(PHONEME_INVENTORY) + 3,  # room left in the embedding table
        phoneme_id_map=default_phoneme_id_map(),
        add_blank=True,
        espeak_voices={"EN": "en-us", "DE": "de"},
        languages={"EN": 0, "DE": 1},
        num_languages=2,
        num_tones=1,
    )
    calls: list[str] = []

    class Recorder:
        def phonemize(self, text: str, voice_name: str) -> str:
            calls.append(voice_name)
            return text

    fe = make_frontend(ipa_cfg, phonemizer=Recorder())
    assert isinstance(fe, IpaFrontEnd)
    seq = fe.from_text("a", language="DE")
    assert calls == ["de"] and set(seq.language_ids.tolist()) == {1}
    fe.from_text("a")
    fe.from_text("a", language="en-us")  # the espeak voice name is accepted for its language
    assert calls == ["de", "en-us", "en-us"]
    fe.from_ids([len(PHONEME_INVENTORY) + 2])  # inside num_symbols although beyond the map
    with pytest.raises(InputError):
        fe.from_ids([len(PHONEME_INVENTORY) + 3])
