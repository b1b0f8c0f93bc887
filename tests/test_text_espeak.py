"""The ipa front end on the real espeak-ng bundled in espeakng-loader (skipped when not installed)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

pytest.importorskip("phonemizer", reason="ipa front end extra not installed (pip install phonemizer)")
espeakng_loader = pytest.importorskip("espeakng_loader", reason="espeakng-loader not installed")

from vitsrt.errors import InputError  # noqa: E402
from vitsrt.text.inventory import default_phoneme_id_map  # noqa: E402
from vitsrt.text.ipa import EspeakPhonemizer, IpaFrontEnd  # noqa: E402

# Sentences covering each language's sounds; the default inventory must cover all of espeak's output.
SAMPLES = {
    "en-us": "The quick brown fox jumps over the lazy dog. She measured the church's judge; thought 1,234.",
    "en-gb": "Water, bottle, butter, car park, thought, schedule, and a rather nice tomato.",
    "de": "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Ich möchte Bücher lesen.",
    "fr-fr": "Portez ce vieux whisky au juge blond qui fume. Un bon vin blanc, les enfants, œuvre, huit.",
    "es": "El veloz murciélago hindú comía feliz cardillo y kiwi. ¿Qué tal? ¡Hola!",
    "it": "Ma la volpe, col suo balzo, ha raggiunto il quieto Fido. Gli gnocchi, zucchero, sciarpa.",
    "pt": "Luís argüia à Júlia que brações, fé, chá, óxido, pôr, zângão. Não, mãe, põe.",
    "nl": "Pa's wijze lynx bezag vroom het fikse aquaduct. Goedemorgen, schip, huis, ui.",
    "pl": "Pchnąć w tę łódź jeża lub ośm skrzyń fig. Szczęście, źdźbło.",
    "sv": "Flygande bäckasiner söka hwila på mjuka tuvor. Sju sjösjuka sjömän.",
    "ru": "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "cmn": "我能吞下玻璃而不伤身体。你好，世界！",
}


@pytest.fixture(scope="module")
def phonemizer() -> EspeakPhonemizer:
    return EspeakPhonemizer()


@pytest.fixture(scope="module")
def frontend(phonemizer: EspeakPhonemizer) -> IpaFrontEnd:
    languages = {name: i for i, name in enumerate(SAMPLES)}
    return IpaFrontEnd(default_phoneme_id_map(), languages, phonemizer=phonemizer)


@pytest.mark.skipif(
    bool(os.environ.get("PHONEMIZER_ESPEAK_LIBRARY")), reason="an operator-chosen espeak-ng library is configured"
)
def test_uses_the_bundled_library_and_data(phonemizer: EspeakPhonemizer) -> None:
    phonemizer.phonemize("hello", "en-us")
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    bundle = Path(espeakng_loader.get_library_path()).parent
    assert Path(EspeakWrapper.library()).parent == bundle
    assert Path(EspeakWrapper._ESPEAK_DATA_PATH).resolve() == (bundle / "espeak-ng-data").resolve()


def test_english_phonemes_with_stress_and_punctuation(phonemizer: EspeakPhonemizer) -> None:
    assert phonemizer.phonemize("Hello, world!", "en-us") == "həlˈoʊ, wˈɜːld!"


def test_numbers_and_abbreviations_are_read_whole(phonemizer: EspeakPhonemizer) -> None:
    out = phonemizer.phonemize("Dr. Smith paid 3.14 dollars at 10:30.", "en-us")
    assert "dˈɑːktɚ" in out  # Dr. -> doctor
    assert "pɔɪnt wˈʌn fˈɔːɹ" in out  # 3.14 -> three point one four, nothing dropped
    assert "dˈɑːlɚz" in out
    assert "tˈɛn θˈɜːɾi" in out  # 10:30
    assert out.endswith(".")


def test_languages_differ(phonemizer: EspeakPhonemizer) -> None:
    assert phonemizer.phonemize("Tag", "de") != phonemizer.phonemize("Tag", "en-us")


def test_default_inventory_covers_sample_languages(frontend: IpaFrontEnd) -> None:
    for language, text in SAMPLES.items():
        seq = frontend.from_text(text, language=language)
        assert seq.skipped == 0, (language, frontend.phonemize(text, language=language))
        assert len(seq) > 20
        assert set(seq.language_ids.tolist()) == {frontend.languages[language]}


def test_coverage_check_detects_a_missing_symbol(phonemizer: EspeakPhonemizer) -> None:
    """Negative control for the coverage test: drop schwa from the map and skips appear."""
    table = default_phoneme_id_map()
    del table["ə"]
    fe = IpaFrontEnd(table, {"en-us": 0}, phonemizer=phonemizer)
    assert fe.from_text(SAMPLES["en-us"]).skipped > 0


def test_unknown_espeak_voice_is_input_error(phonemizer: EspeakPhonemizer) -> None:
    fe = IpaFrontEnd(None, {"xx-nonexistent": 0}, phonemizer=phonemizer)
    with pytest.raises(InputError) as info:
        fe.from_text("hello")
    assert info.value.field == "language"


def test_concurrent_use_is_consistent(frontend: IpaFrontEnd) -> None:
    texts = [SAMPLES["en-us"], SAMPLES["de"], SAMPLES["fr-fr"]]
    langs = ["en-us", "de", "fr-fr"]
    expected = [frontend.from_text(t, language=lang).phone_ids.tolist() for t, lang in zip(texts, langs, strict=True)]
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(5):
                results.append(frontend.from_text(texts[k % 3], language=langs[k % 3]).phone_ids.tolist())
                assert results[-1] == expected[k % 3]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 30
