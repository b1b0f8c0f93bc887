"""Per-language text expansion: write out numbers, money, dates, times, abbreviations, URLs as words.

Why: espeak-ng reads "12/03/2024" as "twelve slash zero three slash two thousand twenty-four" and
"$19.99" as "dollar nineteen point nine nine"; a person says "December third, twenty twenty-four"
and "nineteen dollars and ninety-nine cents". The expansion runs on one segment just before it is
phonemized (`IpaFrontEnd.from_text`), keyed by the espeak-ng voice that will read it, because
readings differ by language and region (en-us reads 12/03 as December 3rd, en-gb as 12 March).

Languages are looked up by their espeak-ng voice name, most specific first: "en-gb-x-rp" tries
"en-gb-x-rp", "en-gb-x", "en-gb", then "en". A language with no expander passes through
unchanged (emoji included), so adding a language never changes another one's output.
Add one with `register_expander("de", expand_german)`; for a covered language emoji are dropped
first, then its expander runs.

Each expander only rewrites what it recognises: text with nothing to expand comes back
unchanged, and expanding twice gives the same result as expanding once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from vitsrt.text.expand_en import BRITISH, US, expand_english

__all__ = ["Expander", "drop_emoji", "expand_text", "expander_for", "register_expander"]

Expander = Callable[[str], str]

_EXPANDERS: dict[str, Expander] = {}

# Code points that render as pictures by default (Unicode Emoji_Presentation): the pictograph
# planes plus the handful of older symbols with emoji presentation. Text-style symbols such as
# U+2603 SNOWMAN stay unless a U+FE0F selector asks for the picture form; espeak-ng would
# otherwise read an emoji's name aloud ("grinning face").
_PICTO = (
    "\U0001f000-\U0001faff\u231a\u231b\u23e9-\u23ec\u23f0\u23f3\u25fd\u25fe\u2614\u2615\u2648-\u2653"
    "\u267f\u2693\u26a1\u26aa\u26ab\u26bd\u26be\u26c4\u26c5\u26ce\u26d4\u26ea\u26f2\u26f3\u26f5\u26fa"
    "\u26fd\u2705\u270a\u270b\u2728\u274c\u274e\u2753-\u2755\u2757\u2795-\u2797\u27b0\u27bf\u2b1b\u2b1c"
    "\u2b50\u2b55"
)
# Skin tones live inside the pictograph plane; keycap mark, selector and tag characters trail a base.
_TRAIL = "\ufe0f\u20e3\U000e0020-\U000e007f"
_EMOJI_UNIT = rf"(?:[{_PICTO}]|[^\s\ufe0f]\ufe0f)[{_TRAIL}]*"
# A ZWJ sequence (family, profession) is one emoji: the joiners go with it.
_EMOJI = re.compile(rf"{_EMOJI_UNIT}(?:\u200d{_EMOJI_UNIT})*")
_SPACE_BEFORE_MARK = re.compile(r" +([,.;:!?])")
_SPACE_RUN = re.compile(r" {2,}")


def drop_emoji(text: str) -> str:
    """Remove emoji (with their modifiers and joiners), then tidy the spaces they leave behind."""
    dropped = _EMOJI.sub("", text)
    if dropped == text:
        return text
    dropped = _SPACE_BEFORE_MARK.sub(r"\1", dropped)
    return _SPACE_RUN.sub(" ", dropped).strip()


def _key(language: str) -> str:
    return language.strip().lower().replace("_", "-")


def register_expander(language: str, expander: Expander) -> None:
    """Use `expander` for `language` (an espeak-ng voice name or prefix: "en", "en-us") and its variants."""
    _EXPANDERS[_key(language)] = expander


def expander_for(language: str | None) -> Expander | None:
    """The expander for an espeak-ng voice name, trying ever shorter prefixes; None when none applies."""
    if not language:
        return None
    key = _key(language)
    while key:
        found = _EXPANDERS.get(key)
        if found is not None:
            return found
        key = key.rpartition("-")[0]
    return None


def expand_text(text: str, language: str | None) -> str:
    """Expand `text` for `language` (an espeak-ng voice name); unchanged when the language has no expander."""
    expander = expander_for(language)
    return text if expander is None else expander(drop_emoji(text))


# espeak-ng's plain "en" voice is British English; only the US voices ("en-us", "en-us-nyc") read
# dates month first and numbers without "and".
register_expander("en", partial(expand_english, style=BRITISH))
register_expander("en-us", partial(expand_english, style=US))
