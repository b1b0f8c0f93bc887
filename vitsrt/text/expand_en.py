"""English expansion (espeak-ng voices "en", "en-us", "en-gb", ... ): written forms -> spoken words.

Conventions (chosen so that a listener hears what a person reading aloud would say):

- Numeric dates follow the region: en-us reads 12/03/2024 month first ("December third, twenty
  twenty-four"), every other English voice day first ("the twelfth of March, twenty twenty-four").
  A date only valid the other way round (25/12/2024 in en-us) is read that way. ISO 2024-12-03
  is unambiguous. Separators "/", "-" and "." are accepted; two-digit years are read as written
  ("oh five"). Dates written with month names are read in the order they are written.
- Years in a date, a decade ("1990s") or after in/since/until/during/by/from/to/circa read as years
  ("nineteen oh five", "two thousand five"); any other number is a cardinal.
- Cardinals: American "one hundred five", British (every non-US voice) "one hundred and five".
  Decimals read digit by digit after "point"; a leading zero ("007") makes the number a code read
  digit by digit; "-5" is "minus five"; numbers of 16+ digits are read digit by digit.
- Times: "5:30 pm" -> "five thirty p m", "17:05" -> "seventeen oh five", "17:00" -> "seventeen
  hundred", "5:00" -> "five o'clock". "am" is written "eh m": espeak-ng reads a lone "a" as the
  article (a schwa), never as the letter name.
- Money: $ £ € ¥ with cents/pence ("nineteen dollars and ninety-nine cents"); "$1.5 million" and
  "$2bn" read the scale before the currency ("one point five million dollars").
- Dr./St.: "Doctor"/"Saint" before a name, "Drive"/"Street" after one (see `_is_place`).
- URLs and emails are spelled: the scheme is dropped, "." -> "dot", "/" -> "slash", "@" -> "at",
  digits one by one, lone letters by name ("a.b@c.org" -> "eh dot b at c dot org").
- Phone numbers (555-1234, (555) 123-4567) are read digit by digit, group by group.
- A dot that both closes an abbreviation and ends the sentence ("on Elm St.", "etc. Then")
  stays after the expansion, so the sentence still ends there.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from vitsrt.text.expand_en_numbers import MAX_DIGITS, cardinal, digits, ordinal, plural_words, read_number, year

__all__ = ["BRITISH", "US", "EnglishStyle", "expand_english"]


@dataclass(frozen=True)
class EnglishStyle:
    """Regional reading conventions: `month_first` for numeric dates, `british` for "hundred and five"."""

    month_first: bool
    british: bool


US = EnglishStyle(month_first=True, british=False)
BRITISH = EnglishStyle(month_first=False, british=True)

Handler = Callable[[EnglishStyle, re.Match[str]], str]

# Digits are ASCII [0-9] throughout: \d would also take other scripts' digits, which these English
# readings should not claim.
# A written number: optional sign, digits with optional thousands commas, optional decimals.
_NUM = r"[-\u2212]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?"
_INT = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)"
# Not glued to a word, another number or a decimal point on either side ("A4", "1.2.3", "1,2345").
_BEFORE = r"(?<![\w.,])"
_AFTER = r"(?![\w]|[.,][0-9])"
_CLOSERS = "\"')]}\u2019\u201d\u00bb "

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
)  # fmt: skip
_MONTH_ABBREVIATIONS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8, "Sep": 9, "Sept": 9, "Oct": 10,
    "Nov": 11, "Dec": 12,
}  # fmt: skip
_MONTH_NUMBERS = {name: i + 1 for i, name in enumerate(_MONTHS)} | _MONTH_ABBREVIATIONS
# Full names first so "June" is not cut to "Jun"; abbreviations may carry a dot.
_MONTH = "(?P<month>" + "|".join([*_MONTHS, *_MONTH_ABBREVIATIONS]) + r")(?![a-z])\.?"


def _ends_sentence(match: re.Match[str]) -> bool:
    """True when the match ends in a '.' that also ends the sentence: nothing but closing quotes or
    brackets follow it, or the next word is capitalised."""
    if not match.group().endswith("."):
        return False
    rest = match.string[match.end() :].lstrip(_CLOSERS)
    return not rest or rest[0].isupper()


def _final_dot(match: re.Match[str]) -> str:
    return "." if _ends_sentence(match) else ""


def _after_the(match: re.Match[str]) -> bool:
    """True when "the" directly precedes the match ("the 3rd of May"), so the reading must not add one."""
    return match.string[max(0, match.start() - 4) : match.start()].lower() == "the "


# -- URLs and email addresses ----------------------------------------------------------------------

_ADDRESS_SYMBOLS = {
    ".": "dot", "/": "slash", "-": "dash", "_": "underscore", "?": "question mark", "=": "equals", "&": "and",
    "#": "hash", ":": "colon", "%": "percent", "~": "tilde", "+": "plus", "@": "at",
}  # fmt: skip
_ADDRESS_TOKEN = re.compile(r"[^\W\d_]+|[0-9]+|.")
_TLDS = (
    "com|org|net|edu|gov|mil|int|io|ai|dev|app|info|biz|co|uk|de|fr|eu|ca|au|nl|jp|cn|ru|ch|tv|ly|gg|xyz|tech"
    "|online|site|shop|blog"
)
_TRAILING_MARKS = ".,;:!?)]}\"'\u2019\u201d\u00bb"
_EMAIL = re.compile(
    r"(?<![\w.+-])(?P<user>[A-Za-z0-9](?:[\w.+-]*[A-Za-z0-9])?)@(?P<host>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?!\w)"
)
# With a scheme or "www." any host counts; a bare host needs a known top-level domain (in lower case,
# so "U.S." and "e.g." are never taken for one).
_URL = re.compile(
    r"(?<![\w@./-])(?:https?://\S+|www\.\S+"
    rf"|(?:[A-Za-z0-9][A-Za-z0-9-]*\.)+(?:{_TLDS})(?![\w-])(?:/\S*)?)"
)
_SCHEME = re.compile(r"^https?://", re.IGNORECASE)


def _spell_token(token: str) -> str:
    if token[0] in "0123456789":
        return digits(token)
    if token.isalpha():
        if len(token) == 1 or token.lower() == "www":
            return " ".join("eh" if ch in "aA" else ch.lower() for ch in token)
        return token.lower()
    return _ADDRESS_SYMBOLS.get(token, "")


def _spell_address(address: str) -> str:
    words = (_spell_token(token) for token in _ADDRESS_TOKEN.findall(address))
    return " ".join(word for word in words if word)


def _email(style: EnglishStyle, match: re.Match[str]) -> str:
    return f"{_spell_address(match['user'])} at {_spell_address(match['host'])}"


def _url(style: EnglishStyle, match: re.Match[str]) -> str:
    # \S+ also took any punctuation that follows the address; that goes back after the reading.
    address = match.group().rstrip(_TRAILING_MARKS)
    trailing = match.group()[len(address) :]
    address = _SCHEME.sub("", address).rstrip("/")
    return _spell_address(address) + trailing


# -- abbreviations ---------------------------------------------------------------------------------

# Titles: only before a word; the dot is optional (British style writes "Mr Smith").
_TITLES = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor", "Mt": "Mount", "Capt": "Captain",
    "Sgt": "Sergeant", "Gov": "Governor", "Rev": "Reverend",
}  # fmt: skip
# Dot required (these are also words or word parts without it), except where noted in _DOT_OPTIONAL.
_ABBREVIATIONS = {
    "e.g": "for example", "i.e": "that is", "etc": "et cetera", "vs": "versus", "cf": "compare",
    "approx": "approximately", "incl": "including", "esp": "especially", "dept": "department",
    "jr": "Junior", "sr": "Senior", "ave": "Avenue", "blvd": "Boulevard", "rd": "Road", "hwy": "Highway",
}  # fmt: skip
# Words that end a phrase, so their dot may also end the sentence ("pears, etc. Then", "John Smith Jr.").
_PHRASE_FINAL = frozenset({"etc", "jr", "sr", "ave", "blvd", "rd", "hwy", "dept"})
# Written without a dot these two are only taken in lower case ("VS Code" is a name).
_DOT_OPTIONAL = frozenset({"vs", "etc"})
# Only before a number ("No. 5"): without one they are ordinary words or sentence ends.
_NUMBER_ABBREVIATIONS = {
    "no": "number", "nos": "numbers", "vol": "volume", "p": "page", "pp": "pages", "fig": "figure",
    "ca": "circa",
}  # fmt: skip


def _alternatives(words: Iterable[str]) -> str:
    """A regex alternation of `words`, longest first so "Mrs" is tried before "Mr"."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_TITLE = re.compile(rf"(?<![\w.])(?P<w>{_alternatives(_TITLES)})(?:\.|(?![\w.]))(?=\s+[^\W\d_])")
_ABBREVIATION = re.compile(rf"(?<![\w.])(?P<w>{_alternatives(_ABBREVIATIONS)})(?P<dot>\.?)(?![\w.])", re.IGNORECASE)
_NUMBER_ABBREVIATION = re.compile(
    rf"(?<![\w.])(?P<w>{_alternatives(_NUMBER_ABBREVIATIONS)})\.(?=\s?[0-9])", re.IGNORECASE
)
_TITLE_OR_PLACE = re.compile(r"(?<![\w.])(?P<w>Dr|St)(?:\.|(?![\w.]))(?!\w)")
_READINGS = {"Dr": ("Doctor", "Drive"), "St": ("Saint", "Street")}
_WORD_BEFORE = re.compile(r"(?:^|(?P<earlier>\S*)\s+)(?P<word>\S+)\s+$")
_WORD_AFTER = re.compile(r"\s+[\"'(\[\u201c\u2018]*(?P<word>\S+)")


def _title(style: EnglishStyle, match: re.Match[str]) -> str:
    return _TITLES[match["w"]]


def _abbreviation(style: EnglishStyle, match: re.Match[str]) -> str:
    key = match["w"].lower()
    if not match["dot"] and (key not in _DOT_OPTIONAL or not match["w"].islower()):
        return match.group()
    return _ABBREVIATIONS[key] + (_final_dot(match) if key in _PHRASE_FINAL else "")


def _number_abbreviation(style: EnglishStyle, match: re.Match[str]) -> str:
    return _NUMBER_ABBREVIATIONS[match["w"].lower()]


def _is_place(before: str, after: str) -> bool:
    """Dr./St. is "Drive"/"Street" (a place suffix) rather than "Doctor"/"Saint" (a title).

    A capitalised word before it that is not the sentence's first word is a street name ("on Elm
    St."); otherwise a capitalised word after it is a name ("Dr. Smith", "Visit St. Louis"); with
    neither, a capitalised first word before it still reads as a street ("Elm St. is closed").
    """
    found = _WORD_BEFORE.search(before[-80:])
    previous = found["word"] if found else ""
    named = bool(previous) and previous[0].isupper() and previous[-1].isalnum() and previous != "I"
    earlier = (found["earlier"] or "") if found else ""
    first_word = not earlier or earlier[-1] in ".!?:"
    if named and not first_word:
        return True
    following = _WORD_AFTER.match(after)
    if following and following["word"][0].isupper():
        return False
    return named


def _title_or_place(style: EnglishStyle, match: re.Match[str]) -> str:
    title, place = _READINGS[match["w"]]
    if _is_place(match.string[: match.start()], match.string[match.end() :]):
        return place + _final_dot(match)
    return title


# -- money -----------------------------------------------------------------------------------------

_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
}
_SCALE_ABBREVIATIONS = {
    "k": "thousand", "K": "thousand", "m": "million", "M": "million", "bn": "billion", "B": "billion",
}  # fmt: skip
_MONEY = re.compile(
    rf"(?<![\w.,])(?P<sign>[-\u2212])?(?P<cur>[$£€¥])\s?(?P<whole>{_INT})(?:\.(?P<frac>[0-9]+))?"
    r"(?:\s(?P<scale>thousand|million|billion|trillion)|(?P<abbr>k|K|m|M|bn|B))?" + _AFTER
)


def _money(style: EnglishStyle, match: re.Match[str]) -> str:
    if len(match["whole"]) > MAX_DIGITS:
        return match.group()  # a digit string, not an amount: the number pass reads it digit by digit
    one, many, sub_one, sub_many = _CURRENCIES[match["cur"]]
    sign = "minus " if match["sign"] else ""
    whole = int(match["whole"].replace(",", ""))
    fraction = match["frac"] or ""
    scale = match["scale"] or _SCALE_ABBREVIATIONS.get(match["abbr"] or "", "")
    if scale or len(fraction) > 2 or (fraction and not sub_one):
        amount = read_number(match["whole"] + (f".{fraction}" if fraction else ""), british=style.british)
        return f"{sign}{amount} {scale + ' ' if scale else ''}{many}"
    cents = int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole, british=style.british)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return sign + " and ".join(parts)


# -- dates -----------------------------------------------------------------------------------------

_NUMERIC_DATE = re.compile(
    r"(?<![\w/.\-])(?P<a>[0-9]{1,2})(?P<sep>[/.\-])(?P<b>[0-9]{1,2})(?P=sep)(?P<y>[0-9]{4}|[0-9]{2})(?![\w/]|[.\-][0-9])"
)
_ISO_DATE = re.compile(
    r"(?<![\w/.\-])(?P<y>[0-9]{4})(?P<sep>[-/])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})(?![\w/]|[.\-][0-9])"
)
_MONTH_FIRST = re.compile(
    rf"(?<![\w.]){_MONTH}\s(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?(?:,?\s(?P<y>[0-9]{{4}}))?(?![\w]|[.,:][0-9])"
)
_DAY_FIRST = re.compile(
    rf"(?<![\w.,])(?P<day>[0-9]{{1,2}})(?:st|nd|rd|th)?\s(?:of\s)?{_MONTH}(?:,?\s(?P<y>[0-9]{{4}}))?(?![\w]|[.,:][0-9])"
)
_MONTH_YEAR = re.compile(rf"(?<![\w.])(?P<month>{'|'.join(_MONTHS)})\s(?P<y>[0-9]{{4}}){_AFTER}")


def _valid_date(year_number: int, month: int, day: int) -> bool:
    try:
        datetime.date(year_number, month, day)
    except ValueError:
        return False
    return True


def _year_words(text: str, style: EnglishStyle) -> str:
    if len(text) == 2:
        n = int(text)
        return f"oh {cardinal(n)}" if n < 10 else cardinal(n)  # "'05" as written: "oh five"
    return year(int(text), british=style.british)


def _say_date(month: int, day: int, year_text: str | None, *, day_first: bool, the: bool, style: EnglishStyle) -> str:
    name = _MONTHS[month - 1]
    spoken = f"{'the ' if the else ''}{ordinal(day)} of {name}" if day_first else f"{name} {ordinal(day)}"
    return f"{spoken}, {_year_words(year_text, style)}" if year_text else spoken


def _full_year(text: str) -> int:
    return int(text) + (2000 if len(text) == 2 else 0)


def _numeric_date(style: EnglishStyle, match: re.Match[str]) -> str:
    a, b = int(match["a"]), int(match["b"])
    # (month, day) in the region's order first; a date only valid the other way is read that way.
    orders = ((a, b), (b, a)) if style.month_first else ((b, a), (a, b))
    for month, day in orders:
        if _valid_date(_full_year(match["y"]), month, day):
            day_first = not style.month_first
            return _say_date(month, day, match["y"], day_first=day_first, the=not _after_the(match), style=style)
    return match.group()


def _iso_date(style: EnglishStyle, match: re.Match[str]) -> str:
    month, day = int(match["m"]), int(match["d"])
    if not _valid_date(int(match["y"]), month, day):
        return match.group()
    day_first = not style.month_first
    return _say_date(month, day, match["y"], day_first=day_first, the=not _after_the(match), style=style)


def _named_date(style: EnglishStyle, match: re.Match[str], *, day_first: bool) -> str:
    month = _MONTH_NUMBERS[match["month"]]
    day = int(match["day"])
    if not _valid_date(int(match["y"] or 2000), month, day):  # 2000: a leap year, so "February 29" passes
        return match.group()
    spoken = _say_date(month, day, match["y"], day_first=day_first, the=not _after_the(match), style=style)
    return spoken + ("" if match["y"] else _final_dot(match))


def _month_year(style: EnglishStyle, match: re.Match[str]) -> str:
    return f"{match['month']} {year(int(match['y']), british=style.british)}"


# Years outside full dates: a decade, or a four-digit number after a word that introduces a time.
_DECADE = re.compile(r"(?<![\w'])(?P<y>1[1-9][0-9]0|20[0-9]0)s(?!\w)")
_SHORT_DECADE = re.compile(r"(?<!\w)['\u2019](?P<d>[2-9])0s(?!\w)")
_YEAR_AFTER = re.compile(
    r"(?<![\w.])(?P<word>[Ii]n|[Ss]ince|[Uu]ntil|[Tt]ill|[Dd]uring|[Cc]irca|[Bb]y|[Ff]rom|to|[Bb]efore|[Aa]fter)"
    r"\s(?P<y>1[1-9][0-9][0-9]|20[0-9][0-9])" + _AFTER
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


# "1990-1995": a span of years, read "nineteen ninety to nineteen ninety-five" (the second must be later).
_YEAR_RANGE = re.compile(
    r"(?<![\w.,\-])(?P<a>1[1-9][0-9]{2}|20[0-9]{2})[\-\u2013](?P<b>1[1-9][0-9]{2}|20[0-9]{2})" + _AFTER
)


def _year_range(style: EnglishStyle, match: re.Match[str]) -> str:
    first, last = int(match["a"]), int(match["b"])
    if last <= first:
        return match.group()
    return f"{year(first, british=style.british)} to {year(last, british=style.british)}"


def _decade(style: EnglishStyle, match: re.Match[str]) -> str:
    return plural_words(year(int(match["y"]), british=style.british))


def _short_decade(style: EnglishStyle, match: re.Match[str]) -> str:
    return plural_words(_TENS[int(match["d"])])


def _year_after(style: EnglishStyle, match: re.Match[str]) -> str:
    return f"{match['word']} {year(int(match['y']), british=style.british)}"


# -- times -----------------------------------------------------------------------------------------

_AMPM = r"(?P<ampm>(?P<ap>[aApP])(?:\.\s?)?[mM]\.?)"
_CLOCK = re.compile(
    rf"(?<![\w:.,])(?P<h>[0-9]{{1,2}}):(?P<m>[0-9]{{2}})(?::(?P<s>[0-9]{{2}}))?(?:\s?{_AMPM})?(?![\w:])"
)
_HOUR_AMPM = re.compile(rf"(?<![\w:.,])(?P<h>[0-9]{{1,2}})\s?{_AMPM}(?!\w)")


def _clock_words(hour: int, minute: int, has_ampm: bool) -> str:
    if minute == 0:
        if has_ampm:
            return cardinal(hour)
        return cardinal(hour) + (" hundred" if hour == 0 or hour > 12 else " o'clock")
    if minute < 10:
        return f"{cardinal(hour)} oh {cardinal(minute)}"
    return f"{cardinal(hour)} {cardinal(minute)}"


def _time(style: EnglishStyle, match: re.Match[str]) -> str:
    hour = int(match["h"])
    minute = int(match.groupdict().get("m") or 0)
    seconds = match.groupdict().get("s")
    has_ampm = bool(match["ampm"])
    if hour > (12 if has_ampm else 24) or minute > 59 or (seconds and int(seconds) > 59):
        return match.group()
    words = _clock_words(hour, minute, has_ampm)
    if seconds:
        count = int(seconds)
        words += f" and {cardinal(count)} second{'' if count == 1 else 's'}"
    if has_ampm:
        words += (" eh m" if match["ap"] in "aA" else " p m") + _final_dot(match)
    return words


# -- percentages, units, ordinals, plain numbers ---------------------------------------------------

# Symbol -> (singular, plural). Matched case-sensitively, longest first, only right after a number.
_UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"), "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"), "l": ("liter", "liters"), "L": ("liter", "liters"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"), "KB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"),
    "kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours"), "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"), "sec": ("second", "seconds"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
}  # fmt: skip
_PERCENT = re.compile(rf"{_BEFORE}(?P<num>{_NUM})\s?%")
_UNIT = re.compile(rf"{_BEFORE}(?P<num>{_NUM})\s?(?P<unit>{_alternatives(_UNITS)})(?![\w])")
_ORDINAL = re.compile(rf"{_BEFORE}(?P<num>{_INT})(?:st|nd|rd|th|ST|ND|RD|TH)(?!\w)")
_HASH_NUMBER = re.compile(r"(?<![\w#])#(?=[0-9])")
_NUMBER = re.compile(rf"{_BEFORE}{_NUM}{_AFTER}")


def _percent(style: EnglishStyle, match: re.Match[str]) -> str:
    return f"{read_number(match['num'], british=style.british)} percent"


def _unit(style: EnglishStyle, match: re.Match[str]) -> str:
    singular, plural = _UNITS[match["unit"]]
    number = match["num"].lstrip("-\u2212")
    name = singular if number == "1" else plural
    return f"{read_number(match['num'], british=style.british)} {name}"


def _ordinal(style: EnglishStyle, match: re.Match[str]) -> str:
    if len(match["num"]) > MAX_DIGITS:
        return match.group()
    return ordinal(int(match["num"].replace(",", "")), british=style.british)


# Phone numbers (555-1234, 555-123-4567, (555) 123-4567, +1 555 123 4567) are read digit by digit in
# their groups, never as "five hundred fifty-five".
_PHONE = re.compile(
    r"(?<![\w.,+\-])(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{3}\) ?|[0-9]{3}[ .\-])?[0-9]{3}[.\-][0-9]{4}(?![\w\-]|[.,][0-9])"
)
_DIGIT_GROUP = re.compile(r"[0-9]+")


def _phone(style: EnglishStyle, match: re.Match[str]) -> str:
    plus = "plus " if match.group().startswith("+") else ""
    return plus + ", ".join(digits(group) for group in _DIGIT_GROUP.findall(match.group()))


def _number(style: EnglishStyle, match: re.Match[str]) -> str:
    return read_number(match.group(), british=style.british)


# Order matters: addresses before anything reads their dots and digits; abbreviations early so
# "No. 5" and "ca. 1900" show their numbers to later passes; money, dates and times before the
# plain numbers inside them; plain numbers last.
_PASSES: tuple[tuple[re.Pattern[str], Handler], ...] = (
    (_EMAIL, _email),
    (_URL, _url),
    (_TITLE, _title),
    (_TITLE_OR_PLACE, _title_or_place),
    (_ABBREVIATION, _abbreviation),
    (_NUMBER_ABBREVIATION, _number_abbreviation),
    (_HASH_NUMBER, lambda style, match: "number "),
    (_MONEY, _money),
    (_PHONE, _phone),
    (_NUMERIC_DATE, _numeric_date),
    (_ISO_DATE, _iso_date),
    (_CLOCK, _time),
    (_HOUR_AMPM, _time),
    (_MONTH_FIRST, partial(_named_date, day_first=False)),
    (_DAY_FIRST, partial(_named_date, day_first=True)),
    (_MONTH_YEAR, _month_year),
    (_PERCENT, _percent),
    (_UNIT, _unit),
    (_YEAR_RANGE, _year_range),
    (_DECADE, _decade),
    (_SHORT_DECADE, _short_decade),
    (_YEAR_AFTER, _year_after),
    (_ORDINAL, _ordinal),
    (_NUMBER, _number),
)


def expand_english(text: str, style: EnglishStyle = US) -> str:
    """Rewrite numbers, money, dates, times, abbreviations and addresses in `text` as English words."""
    for pattern, handler in _PASSES:
        text = pattern.sub(partial(handler, style), text)
    return text
