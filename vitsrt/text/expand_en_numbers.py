"""English number words: cardinals, ordinals, decimals, digit strings and years.

Pure functions from integers (or digit strings) to words, used by `vitsrt.text.expand_en`.
The output holds letters, spaces and hyphens only, so no later expansion pass can match it again.
British English puts "and" after hundreds and thousands ("one hundred and five"); American
English does not ("one hundred five").
"""

from __future__ import annotations

__all__ = ["MAX_DIGITS", "cardinal", "decimal", "digits", "ordinal", "plural_words", "read_number", "year"]

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
# Past this, scale words stop being how people read a number; it is read digit by digit. Longer digit
# strings are never turned into ints at all (int() refuses strings over 4300 digits).
MAX_DIGITS = 15
_MAX_CARDINAL = 10**MAX_DIGITS
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}  # fmt: skip


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _below_thousand(n: int, british: bool) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        if hundreds and british:
            words.append("and")
        words.append(_below_hundred(rest))
    return " ".join(words)


def digits(text: str) -> str:
    """Read a digit string one digit at a time: "007" -> "zero zero seven"."""
    return " ".join(_ONES[ord(ch) - 48] for ch in text if "0" <= ch <= "9")


def cardinal(n: int, *, british: bool = False) -> str:
    """1234 -> "one thousand two hundred thirty-four" (British: "... two hundred and thirty-four")."""
    if n < 0:
        return "minus " + cardinal(-n, british=british)
    if n == 0:
        return "zero"
    if n >= _MAX_CARDINAL:
        return digits(str(n))
    words: list[str] = []
    for value, name in _SCALES:
        count, n = divmod(n, value)
        if count:
            words.append(f"{_below_thousand(count, british)} {name}")
    if n:
        if words and british and n < 100:
            words.append("and")  # "one thousand and five"
        words.append(_below_thousand(n, british))
    return " ".join(words)


def _ordinal_word(word: str) -> str:
    if word in _IRREGULAR_ORDINALS:
        return _IRREGULAR_ORDINALS[word]
    if word.endswith("y"):
        return word[:-1] + "ieth"
    return word + "th"


def ordinal(n: int, *, british: bool = False) -> str:
    """23 -> "twenty-third"; only the last word changes ("one hundred first")."""
    words = cardinal(n, british=british)
    head, sep, last = words.rpartition(" ")
    stem, hyphen, unit = last.rpartition("-")
    last = stem + hyphen + _ordinal_word(unit)
    return head + sep + last


def decimal(whole: int, fraction: str, *, british: bool = False) -> str:
    """(3, "14") -> "three point one four": digits after the point are read one at a time."""
    return f"{cardinal(whole, british=british)} point {digits(fraction)}"


def read_number(text: str, *, british: bool = False) -> str:
    """Read a written number: optional sign ("-", U+2212), thousands commas, optional decimals."""
    sign = ""
    if text[:1] in "-\u2212":
        sign, text = "minus ", text[1:]
    whole, _, fraction = text.replace(",", "").partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) > MAX_DIGITS:
        spoken = digits(whole)  # "007", a code rather than a quantity
        return sign + (f"{spoken} point {digits(fraction)}" if fraction else spoken)
    if fraction:
        return sign + decimal(int(whole), fraction, british=british)
    return sign + cardinal(int(whole), british=british)


def year(n: int, *, british: bool = False) -> str:
    """Read a year the way people say it: 2024 "twenty twenty-four", 1905 "nineteen oh five",
    1900 "nineteen hundred", 2005 "two thousand five"; years under 1000 or from 10000 are cardinals."""
    if n < 1000 or n >= 10000 or 2000 <= n < 2010:
        return cardinal(n, british=british)
    century, rest = divmod(n, 100)
    if rest == 0:
        return f"{_below_hundred(century)} hundred"
    if rest < 10:
        return f"{_below_hundred(century)} oh {_ONES[rest]}"
    return f"{_below_hundred(century)} {_below_hundred(rest)}"


def plural_words(words: str) -> str:
    """Make the last word plural ("nineteen ninety" -> "nineteen nineties") for decades."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"  # "six" -> "sixes"
    return words + "s"
