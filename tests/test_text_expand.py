"""Text expansion before phonemisation: numbers, money, dates, times, abbreviations, addresses, emoji."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vitsrt.text import make_frontend, split_sentences
from vitsrt.text.expand import drop_emoji, expand_text, expander_for, register_expander
from vitsrt.text.expand_en_numbers import cardinal, ordinal, read_number, year
from vitsrt.text.ipa import IpaFrontEnd

ACCEPTANCE = "It costs $19.99 on 12/03/2024 at 5:30 pm on Elm St."
SPOKEN_US = (
    "It costs nineteen dollars and ninety-nine cents on December third, twenty twenty-four at five thirty p m "
    "on Elm Street."
)
DEFAULT_VOICE = Path(__file__).resolve().parents[1] / "vitsrt" / "voices" / "default"


def us(text: str) -> str:
    return expand_text(text, "en-us")


def gb(text: str) -> str:
    return expand_text(text, "en-gb")


def test_acceptance_sentence_reads_like_a_person() -> None:
    assert us(ACCEPTANCE) == SPOKEN_US
    assert gb(ACCEPTANCE) == SPOKEN_US.replace("December third", "the twelfth of March")


@pytest.mark.parametrize(
    ("n", "american", "british"),
    [
        (0, "zero", "zero"),
        (7, "seven", "seven"),
        (13, "thirteen", "thirteen"),
        (40, "forty", "forty"),
        (99, "ninety-nine", "ninety-nine"),
        (105, "one hundred five", "one hundred and five"),
        (1005, "one thousand five", "one thousand and five"),
        (1234, "one thousand two hundred thirty-four", "one thousand two hundred and thirty-four"),
        (2_000_000, "two million", "two million"),
        (10**15, "one " + "zero " * 14 + "zero", "one " + "zero " * 14 + "zero"),
    ],
)
def test_cardinals(n: int, american: str, british: str) -> None:
    assert cardinal(n) == american
    assert cardinal(n, british=True) == british


@pytest.mark.parametrize(
    ("n", "word"),
    [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (9, "ninth"), (12, "twelfth"), (20, "twentieth"),
     (21, "twenty-first"), (100, "one hundredth"), (1000, "one thousandth")],
)  # fmt: skip
def test_ordinals(n: int, word: str) -> None:
    assert ordinal(n) == word


@pytest.mark.parametrize(
    ("n", "spoken"),
    [(2024, "twenty twenty-four"), (1905, "nineteen oh five"), (1900, "nineteen hundred"), (2000, "two thousand"),
     (2005, "two thousand five"), (2010, "twenty ten"), (1066, "ten sixty-six"), (800, "eight hundred")],
)  # fmt: skip
def test_years(n: int, spoken: str) -> None:
    assert year(n) == spoken


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("3.14", "three point one four"),
        ("0.5", "zero point five"),
        ("-5", "minus five"),
        ("\u22127", "minus seven"),
        ("1,234,567", "one million two hundred thirty-four thousand five hundred sixty-seven"),
        ("007", "zero zero seven"),
    ],
)
def test_read_number(written: str, spoken: str) -> None:
    assert read_number(written) == spoken


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I have 3 cats.", "I have three cats."),
        ("It was -5 outside.", "It was minus five outside."),
        ("Pi is 3.14.", "Pi is three point one four."),
        ("About 1,500 people", "About one thousand five hundred people"),
        ("COVID-19", "COVID-nineteen"),
        ("pages 1, 2, 3", "pages one, two, three"),
        ("#1 hit", "number one hit"),
        # Not numbers to read as one: version strings and words with digits are left to espeak-ng.
        ("Version 1.2.3", "Version 1.2.3"),
        ("an A4 page", "an A4 page"),
        ("the 1st, 2nd, 3rd and 23rd", "the first, second, third and twenty-third"),
        ("the 101st time", "the one hundred first time"),
        ("50% off", "fifty percent off"),
        ("up 3.5 %", "up three point five percent"),
        ("a -2% change", "a minus two percent change"),
    ],
)
def test_numbers_ordinals_percent(text: str, expected: str) -> None:
    assert us(text) == expected


def test_british_numbers_say_and() -> None:
    assert gb("105 people") == "one hundred and five people"
    assert gb("the 101st time") == "the one hundred and first time"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$19.99", "nineteen dollars and ninety-nine cents"),
        ("$1", "one dollar"),
        ("$1.01", "one dollar and one cent"),
        ("$0.99", "ninety-nine cents"),
        ("$5.00", "five dollars"),
        ("$1.5", "one dollar and fifty cents"),
        ("$1,000", "one thousand dollars"),
        ("-$3", "minus three dollars"),
        ("£5.50", "five pounds and fifty pence"),
        ("£1.01", "one pound and one penny"),
        ("€1", "one euro"),
        ("€20.50", "twenty euros and fifty cents"),
        ("¥500", "five hundred yen"),
        ("$2.5 million", "two point five million dollars"),
        ("$3bn", "three billion dollars"),
        ("$10k", "ten thousand dollars"),
    ],
)
def test_money(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "american", "british"),
    [
        ("12/03/2024", "December third, twenty twenty-four", "the twelfth of March, twenty twenty-four"),
        ("1.2.2024", "January second, twenty twenty-four", "the first of February, twenty twenty-four"),
        ("12-03-05", "December third, oh five", "the twelfth of March, oh five"),
        # Only valid one way round: read that way, in the region's style.
        ("25/12/2024", "December twenty-fifth, twenty twenty-four", "the twenty-fifth of December, twenty twenty-four"),
        ("2024-12-03", "December third, twenty twenty-four", "the third of December, twenty twenty-four"),
        ("March 3, 2024", "March third, twenty twenty-four", "March third, twenty twenty-four"),
        ("Mar. 3rd", "March third", "March third"),
        ("3 March 2024", "the third of March, twenty twenty-four", "the third of March, twenty twenty-four"),
        ("the 3rd of May", "the third of May", "the third of May"),
        ("in March 2024", "in March twenty twenty-four", "in March twenty twenty-four"),
        ("February 29, 2024", "February twenty-ninth, twenty twenty-four", "February twenty-ninth, twenty twenty-four"),
    ],
)
def test_dates(text: str, american: str, british: str) -> None:
    assert us(text) == american
    assert gb(text) == british


def test_impossible_dates_are_not_read_as_dates() -> None:
    assert us("February 30, 2023") == "February thirty, two thousand twenty-three"  # no "thirtieth"
    assert us("13/45/2024").startswith("thirteen/forty-five/")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 1999", "in nineteen ninety-nine"),
        ("since 2005,", "since two thousand five,"),
        ("the 1990s", "the nineteen nineties"),
        ("the '80s", "the eighties"),
        ("the 2000s", "the two thousands"),
        ("1999 apples", "one thousand nine hundred ninety-nine apples"),
        ("1990-1995", "nineteen ninety to nineteen ninety-five"),
        ("from 2001\u20132009,", "from two thousand one to two thousand nine,"),
        ("2024-2020", "two thousand twenty-four-two thousand twenty"),  # not a span: later year first
    ],
)
def test_years_in_context(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5:30 pm", "five thirty p m"),
        ("5:30 PM", "five thirty p m"),
        ("at 5 p.m.", "at five p m."),
        ("at 5 p.m. on Monday", "at five p m on Monday"),
        ("10:30 a.m. sharp", "ten thirty eh m sharp"),
        ("5:00 pm", "five p m"),
        ("17:05", "seventeen oh five"),
        ("17:00", "seventeen hundred"),
        ("5:00", "five o'clock"),
        ("12:30:05", "twelve thirty and five seconds"),
        ("13:30 pm", "thirteen:thirty pm"),  # not a valid 12-hour time: left to the number pass
    ],
)
def test_times(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 km", "three kilometers"),
        ("1 km", "one kilometer"),
        ("2.5kg", "two point five kilograms"),
        ("6 ft", "six feet"),
        ("60 mph", "sixty miles per hour"),
        ("100 km/h", "one hundred kilometers per hour"),
        ("20°C", "twenty degrees Celsius"),
        ("16 GB", "sixteen gigabytes"),
        ("5 min", "five minutes"),
    ],
)
def test_units(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call 555-1234", "call five five five, one two three four"),
        ("call (555) 123-4567 now", "call five five five, one two three, four five six seven now"),
        ("+1 555-123-4567", "plus one, five five five, one two three, four five six seven"),
        ("score 3-2", "score three-two"),
    ],
)
def test_phone_numbers_are_read_digit_by_digit(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith is here.", "Doctor Smith is here."),
        ("I saw Dr. Jones", "I saw Doctor Jones"),
        ("Visit St. Louis", "Visit Saint Louis"),
        ("on Elm St.", "on Elm Street."),
        ("Elm St. is closed", "Elm Street is closed"),
        ("on Mulholland Dr. in LA", "on Mulholland Drive in LA"),
        ("I live on Elm St. Then I moved.", "I live on Elm Street. Then I moved."),
        ("Mr. Smith, Mrs. Jones and Ms. Brown", "Mister Smith, Missus Jones and Miz Brown"),
        ("Mr Smith", "Mister Smith"),
        ("Prof. Plum vs. Col. Mustard", "Professor Plum versus Col. Mustard"),
        ("tools, e.g., hammers", "tools, for example, hammers"),
        ("one, i.e. the first", "one, that is the first"),
        ("apples, pears, etc.", "apples, pears, et cetera."),
        ("pears etc. Then more", "pears et cetera. Then more"),
        ("cats vs dogs", "cats versus dogs"),
        ("VS Code", "VS Code"),
        ("No. 5", "number five"),
        ("see p. 12", "see page twelve"),
        ("John Smith Jr. said", "John Smith Junior said"),
        ("approx. 5", "approximately five"),
    ],
)
def test_abbreviations(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b@c.org", "eh dot b at c dot org"),
        ("mail john.smith@example.com now", "mail john dot smith at example dot com now"),
        ("user_1@mail.co.uk", "user underscore one at mail dot co dot uk"),
        ("example.com", "example dot com"),
        ("Visit example.com.", "Visit example dot com."),
        ("https://www.example.com/path?q=1", "w w w dot example dot com slash path question mark q equals one"),
        ("(see http://my-site.io/)", "(see my dash site dot io)"),
        # Dotted abbreviations and numbers are not domains.
        ("the U.S. and e.g. this", "the U.S. and for example this"),
    ],
)
def test_urls_and_emails(text: str, expected: str) -> None:
    assert us(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello 😀 world", "Hello world"),
        ("Great 👍🏽!", "Great!"),
        ("family 👨\u200d👩\u200d👧 time", "family time"),
        ("flag 🇫🇷 here", "flag here"),
        ("heart ❤\ufe0f you", "heart you"),
        ("snow \u2603 stays", "snow \u2603 stays"),  # text-style symbol without the emoji selector
    ],
)
def test_emoji_are_dropped(text: str, expected: str) -> None:
    assert us(text) == expected
    assert drop_emoji(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        'She said: "no" (twice) - and left...',
        "I am here; it is 'fine'.",
        "",
        "Straße und Café",
        "Wait... what?!",
    ],
)
def test_plain_text_passes_through(text: str) -> None:
    assert us(text) == text
    assert gb(text) == text


@pytest.mark.parametrize("text", [ACCEPTANCE, "Dr. Smith paid $5 at 10:30 on 3/4/2021, i.e. 50% 😀", "1st 2nd 1990s"])
def test_expansion_is_idempotent(text: str) -> None:
    once = us(text)
    assert us(once) == once


def test_language_lookup_and_uncovered_languages() -> None:
    assert expander_for("en-us") is expander_for("EN_US")
    assert expander_for("en-us-nyc") is expander_for("en-us")
    assert expander_for("en-gb-x-rp") is expander_for("en")
    assert expander_for("en-gb") is expander_for("en")
    assert expander_for("de") is None and expander_for(None) is None
    # Languages without an expander pass through unchanged, emoji and all.
    assert expand_text("Am 12/03/2024 um 5:30 😀", "de") == "Am 12/03/2024 um 5:30 😀"
    assert expand_text("$5", None) == "$5"


def test_register_expander_for_a_new_language() -> None:
    register_expander("xx-test", str.upper)
    try:
        assert expand_text("abc 😀", "xx-test-variant") == "ABC"
    finally:
        from vitsrt.text import expand

        expand._EXPANDERS.pop("xx-test")
    assert expander_for("xx-test") is None


class RecordingPhonemizer:
    """Echoes its input so a test can see exactly what the front end handed to espeak-ng."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def phonemize(self, text: str, voice: str) -> str:
        self.calls.append((text, voice))
        return "a"


def test_front_end_expands_by_default_and_the_switch_turns_it_off() -> None:
    phonemizer = RecordingPhonemizer()
    fe = IpaFrontEnd(None, {"en": 0, "gb": 1, "de": 2}, espeak_voices={"en": "en-us", "gb": "en-gb"},
                     phonemizer=phonemizer)  # fmt: skip
    fe.from_text("  It costs $19.99   on 12/03/2024 at 5:30 pm on Elm St. ")
    assert phonemizer.calls[-1] == (SPOKEN_US, "en-us")
    fe.from_text(ACCEPTANCE, expand=False)
    assert phonemizer.calls[-1] == (ACCEPTANCE, "en-us")
    # Conventions follow the espeak voice that reads the language, not the language's own name.
    fe.from_text("12/03/2024", language="gb")
    assert phonemizer.calls[-1] == ("the twelfth of March, twenty twenty-four", "en-gb")
    fe.from_text("12/03/2024", language="de")
    assert phonemizer.calls[-1] == ("12/03/2024", "de")
    assert fe.phonemize("5 km") == "a" and phonemizer.calls[-1][0] == "five kilometers"
    assert fe.phonemize("5 km", expand=False) == "a" and phonemizer.calls[-1][0] == "5 km"


def test_emoji_only_segment_is_nothing_to_speak() -> None:
    from vitsrt.errors import NothingToSpeakError

    fe = IpaFrontEnd(None, {"en-us": 0}, phonemizer=RecordingPhonemizer())
    with pytest.raises(NothingToSpeakError):
        fe.from_text("😀 👍")


def test_splitter_keeps_abbreviations_whole_before_expansion() -> None:
    """Expansion runs per segment, so the splitter must not cut after "Dr." or inside "$19.99"/"5:30 p.m."."""
    assert split_sentences(ACCEPTANCE) == [ACCEPTANCE]
    text = "Dr. Smith met Mr. Jones at 5:30 p.m. on Elm St. near St. Paul's, e.g. the cafe. It closed."
    segments = split_sentences(text)
    assert segments == ["Dr. Smith met Mr. Jones at 5:30 p.m. on Elm St. near St. Paul's, e.g. the cafe.", "It closed."]
    assert us(segments[0]) == (
        "Doctor Smith met Mister Jones at five thirty p m on Elm Street near Saint Paul's, for example the cafe."
    )


_HAS_ESPEAK = importlib.util.find_spec("phonemizer") is not None and importlib.util.find_spec("espeakng_loader")


@pytest.mark.skipif(not _HAS_ESPEAK, reason="ipa front end extra (phonemizer, espeakng-loader) not installed")
def test_default_voice_reads_the_acceptance_sentence_as_spoken() -> None:
    from vitsrt.voice import read_manifest

    fe = make_frontend(read_manifest(DEFAULT_VOICE / "voice.json").front_end)
    expanded = fe.from_text(ACCEPTANCE)
    by_hand = fe.from_text(SPOKEN_US, expand=False)
    raw = fe.from_text(ACCEPTANCE, expand=False)
    assert expanded.phone_ids.tolist() == by_hand.phone_ids.tolist()
    # espeak-ng alone reads the raw text differently (digits, "slash"): the expansion is what changed it.
    assert raw.phone_ids.tolist() != by_hand.phone_ids.tolist()
