"""Streamed text (Wyoming `synthesize-chunk`s, typically an LLM's tokens) cut into sentences as they complete.

A sentence is complete once text after it shows the boundary was real: "Dr. " or "3." followed by nothing yet
may go on ("Dr. Smith", "3.14"), so the last piece the splitter finds is always held back until more text
comes, or the stream stops. Only that held-back piece is re-split when a chunk arrives, so the work per chunk
stays bounded however long the stream runs (the splitter cuts any piece longer than its bound).
"""

from __future__ import annotations

from vitsrt.text.normalize import normalize_text
from vitsrt.text.sentences import SentenceSplitter


class SentenceBuffer:
    def __init__(self, splitter: SentenceSplitter | None = None):
        self._splitter = splitter or SentenceSplitter()
        self._pending = ""

    @property
    def pending(self) -> str:
        return self._pending

    def add(self, text: str) -> list[str]:
        """The sentences `text` completes, in order (possibly none)."""
        raw = self._pending + text
        normalized = normalize_text(raw)
        pieces = self._splitter.split(normalized)
        trailing = raw[len(raw.rstrip()):]
        if "\n" in trailing:  # a line break always ends a sentence: nothing to hold back
            self._pending = ""
            return pieces
        if not pieces:
            self._pending = ""
            return []
        last = pieces[-1]
        # Normalising strips the end: keep one space so "Hello" + "world" stays two words.
        self._pending = normalized[normalized.rfind(last):] + (" " if trailing else "")
        return pieces[:-1]

    def finish(self) -> str:
        """The text held back (spoken at the stream's end); the buffer is empty afterwards."""
        rest, self._pending = self._pending.strip(), ""
        return rest
