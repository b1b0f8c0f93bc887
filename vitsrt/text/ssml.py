"""A small, safe SSML subset: the document becomes a flat list of things to say and pauses to keep.

Text is SSML when it starts (after whitespace) with ``<speak``, ``<?xml`` or ``<!DOCTYPE`` (the last always refused).
Supported, everything else is read as its text content (unknown elements are ignored, not refused):

  <speak xml:lang="en-us">            the root; xml:lang picks the language unless the request names one
  <break time="500ms|2s"/>            exactly that much silence (at most MAX_BREAK_SECONDS per break)
  <break strength="medium"/>          none 0, x-weak 0.1 s, weak 0.25 s, medium 0.5 s, strong 0.75 s, x-strong 1 s
  <prosody rate="...">                x-slow 0.5, slow 0.75, medium 1, fast 1.25, x-fast 1.5, "N%" (N/100),
                                      "+N%"/"-N%" (1 +- N/100), "N" (a factor); nested rates multiply.
                                      A rate r divides the length_scale of the text inside by r.
  <say-as interpret-as="...">         characters/spell-out (letter by letter), digits, cardinal, ordinal, date,
                                      time, telephone: English readings; anything else is read as text
  <sub alias="...">                   says the alias instead of the content
  <phoneme alphabet="ipa" ph="...">   says the IPA through the voice's phoneme ids, instead of the content

Safety: the parser is expat with every DTD refused (no DOCTYPE, no entity declarations, so no entity
expansion), the document is capped at the engine's text limit, and elements and nesting are capped. Every
problem is one InputError("text", ...) line.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass, field

from vitsrt.errors import InputError, clip
from vitsrt.text.expand_en import expand_english
from vitsrt.text.expand_en_numbers import cardinal, digits, ordinal

__all__ = ["MAX_BREAK_SECONDS", "MAX_DEPTH", "MAX_ELEMENTS", "Pause", "Speech", "SsmlDocument", "is_ssml",
           "parse_ssml"]

MAX_ELEMENTS = 1000  # more tags than any hand-written document needs; bounds the segments one request makes
MAX_DEPTH = 32
MAX_BREAK_SECONDS = 10.0
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75, "x-strong": 1.0}
RATE_WORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "fast": 1.25, "x-fast": 1.5, "default": 1.0}

# An XML declaration or a DOCTYPE up front also marks an SSML attempt: refused by the parser (DOCTYPE) rather
# than read out as text.
_SSML_START = re.compile(r"\s*(?:<\?xml[\s?]|<!DOCTYPE|<speak[\s>/])", re.IGNORECASE)
_TIME = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s)\s*", re.IGNORECASE)
_RATE = re.compile(r"\s*([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(%?)\s*")
_NUMBER = re.compile(r"[0-9][0-9,]*")


@dataclass(frozen=True)
class Speech:
    """Something to say at `rate` (a factor on the speaking rate): text, or IPA when `ipa`."""

    text: str
    rate: float = 1.0
    ipa: bool = False


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass
class SsmlDocument:
    language: str | None  # the root's xml:lang, if any
    parts: list[Speech | Pause] = field(default_factory=list)


def is_ssml(text: str) -> bool:
    return bool(_SSML_START.match(text))


def _error(reason: str) -> InputError:
    return InputError("text", f"SSML: {reason}")


def _pause_seconds(attrs: dict[str, str]) -> float:
    if "time" in attrs:  # the spec: time wins over strength
        match = _TIME.fullmatch(attrs["time"])
        if not match:
            raise _error(f"break time {clip(attrs['time'], 20)} is not like 500ms or 2s")
        seconds = float(match[1]) / (1000.0 if match[2].lower() == "ms" else 1.0)
        if seconds > MAX_BREAK_SECONDS:
            raise _error(f"break time {clip(attrs['time'], 20)} is over the limit of {MAX_BREAK_SECONDS:g} s")
        return seconds
    strength = attrs.get("strength", "medium")
    if strength not in BREAK_STRENGTHS:
        raise _error(f"break strength {clip(strength, 20)} is not one of {', '.join(BREAK_STRENGTHS)}")
    return BREAK_STRENGTHS[strength]


def parse_rate(value: str) -> float:
    """A prosody rate as a factor on the speaking rate (> 0)."""
    if value.strip() in RATE_WORDS:
        return RATE_WORDS[value.strip()]
    match = _RATE.fullmatch(value)
    if not match:
        raise _error(f"prosody rate {clip(value, 20)} is not a word, N% or a number")
    number = float(match[2])
    if match[3]:
        rate = 1.0 + (number if match[1] == "+" else -number) / 100.0 if match[1] else number / 100.0
    else:
        rate = -number if match[1] == "-" else number
    if not 0.1 <= rate <= 10.0:  # the same span length_scale allows
        raise _error(f"prosody rate {clip(value, 20)} is outside 0.1x..10x")
    return rate


def _spell(text: str) -> str:
    # Letter names the way the English normaliser spells addresses: a lone "a" would be read as the article.
    letters = ["eh" if ch in "aA" else digits(ch) if ch.isdigit() else ch.lower() for ch in text if not ch.isspace()]
    return " ".join(letters)


def _telephone(text: str) -> str:
    plus = "plus " if text.strip().startswith("+") else ""
    return plus + ", ".join(digits(group) for group in re.findall(r"[0-9]+", text))


def _number(text: str, say: Callable[[int], str]) -> str:
    match = _NUMBER.search(text)
    if not match or len(match[0].replace(",", "")) > 15:
        return text  # nothing the normaliser can read as a number: say it as written
    return say(int(match[0].replace(",", "")))


_SAY_AS: dict[str, Callable[[str], str]] = {
    "characters": _spell,
    "spell-out": _spell,
    "digits": lambda text: " ".join(digits(run) for run in re.findall(r"[0-9]+", text)) or text,
    "cardinal": lambda text: _number(text, cardinal),
    "ordinal": lambda text: _number(text, ordinal),
    "date": expand_english,
    "time": expand_english,
    "telephone": lambda text: _telephone(text) or text,
}


@dataclass
class _Frame:
    rate: float
    mute: bool = False  # inside <sub> or <phoneme>: the content is replaced, not said
    collect: list[str] | None = None  # inside <say-as>: the content is gathered and read at its end
    say_as: str | None = None  # set on the <say-as> frame itself


class _Builder:
    """expat handlers that turn the elements into `SsmlDocument.parts`."""

    def __init__(self, language: str | None) -> None:
        self.language = language  # the request's: it wins over xml:lang
        self.english = True
        self.stack: list[_Frame] = []
        self.elements = 0
        self.document = SsmlDocument(language=None)

    def say(self, text: str, rate: float, ipa: bool = False) -> None:
        parts = self.document.parts
        last = parts[-1] if parts else None
        if not ipa and isinstance(last, Speech) and not last.ipa and last.rate == rate:
            parts[-1] = Speech(last.text + text, rate)  # one run of text: sentences split as in plain text
        elif text.strip():
            parts.append(Speech(text, rate, ipa))

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise _error(f"more than {MAX_ELEMENTS} elements")
        if len(self.stack) >= MAX_DEPTH:
            raise _error(f"elements nest deeper than {MAX_DEPTH}")
        if not self.stack:
            if tag != "speak":
                raise _error(f"the root element is {clip(tag, 20)}, not speak")
            self.document.language = attrs.get("xml:lang") or None
            spoken = self.language or self.document.language
            self.english = not spoken or spoken.lower().startswith("en")  # the say-as readings are English
        parent = self.stack[-1] if self.stack else _Frame(1.0)
        frame = _Frame(parent.rate, parent.mute, parent.collect)
        if not (frame.mute or frame.collect is not None):  # inside sub/phoneme/say-as only text counts
            self._open(tag, attrs, frame)
        self.stack.append(frame)

    def _open(self, tag: str, attrs: dict[str, str], frame: _Frame) -> None:
        if tag == "break":
            self.document.parts.append(Pause(_pause_seconds(attrs)))
        elif tag == "prosody" and "rate" in attrs:
            frame.rate *= parse_rate(attrs["rate"])
        elif tag == "sub" and "alias" in attrs:
            self.say(attrs["alias"], frame.rate)
            frame.mute = True
        elif tag == "phoneme" and "ph" in attrs:
            if attrs.get("alphabet", "ipa") != "ipa":
                raise _error(f"phoneme alphabet {clip(attrs['alphabet'], 20)} is not ipa")
            self.say(attrs["ph"], frame.rate, ipa=True)
            frame.mute = True
        elif tag == "say-as":
            frame.collect = []
            frame.say_as = attrs.get("interpret-as", "")

    def end(self, tag: str) -> None:
        frame = self.stack.pop()
        if frame.say_as is not None and frame.collect is not None:
            text = "".join(frame.collect)
            reading = _SAY_AS.get(frame.say_as) if self.english else None
            self.say(f" {reading(text)} " if reading else text, frame.rate)

    def text(self, data: str) -> None:
        frame = self.stack[-1] if self.stack else None
        if frame is None or frame.mute:
            return
        if frame.collect is not None:
            frame.collect.append(data)
        else:
            self.say(data, frame.rate)


def _refuse_dtd(*_: object) -> None:
    raise _error("DOCTYPE and entity declarations are not allowed")


def parse_ssml(text: str, *, max_chars: int, language: str | None = None) -> SsmlDocument:
    """The parts of an SSML document; InputError("text", ...) for anything malformed, hostile or over a limit.
    `language` is the request's (it decides, before xml:lang, whether the English say-as readings apply)."""
    if len(text) > max_chars:
        raise _error(f"the document is {len(text)} characters long, over the limit of {max_chars}")
    builder = _Builder(language)
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    parser.buffer_text = True
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise _error(f"not well-formed XML ({exc})") from None
    except RecursionError:
        raise _error("elements nest too deep") from None
    return builder.document
