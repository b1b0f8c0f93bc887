"""Word and phoneme timestamps, exact from the durations the duration predictor gave a segment.

Id i of a segment lasts durations[i] frames, so it spans samples [cumsum[i-1] * hop, cumsum[i] * hop) of that
segment's audio; a segment's spans are offset by the samples the request sent before it. Nothing is estimated:
these are the frames the decoder turned into the samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from vitsrt.serve.engine.types import PhonemeTimestamp, WordTimestamp
from vitsrt.text.sequence import PhonemeSequence

__all__ = ["SegmentSpans", "rescale", "segment_spans"]


@dataclass
class SegmentSpans:
    """One segment's spans not yet handed to a chunk, in order of their start."""

    phonemes: list[PhonemeTimestamp] = field(default_factory=list)
    words: list[WordTimestamp] = field(default_factory=list)

    def take(self, end: int | None) -> tuple[list[PhonemeTimestamp], list[WordTimestamp]]:
        """The spans starting before sample `end` (None: all that are left), removed from this."""
        phonemes = _split(self.phonemes, end)
        words = _split(self.words, end)
        self.phonemes = self.phonemes[len(phonemes):]
        self.words = self.words[len(words):]
        return phonemes, words


def _split(spans: Sequence[PhonemeTimestamp | WordTimestamp], end: int | None) -> list:
    if end is None:
        return list(spans)
    count = 0
    while count < len(spans) and spans[count].start_sample < end:
        count += 1
    return list(spans[:count])


def segment_spans(ids: PhonemeSequence, durations: np.ndarray, hop: int, offset: int) -> SegmentSpans:
    """Every id's span and every word's span of one segment, `offset` samples into the stream."""
    ends = np.cumsum(np.asarray(durations, dtype=np.int64)) * hop + offset
    starts = np.concatenate([[offset], ends[:-1]])
    symbols = ids.symbols or ("",) * len(ids.phone_ids)
    phonemes = [PhonemeTimestamp(int(i), symbol, int(start), int(end))
                for i, symbol, start, end in zip(ids.phone_ids, symbols, starts, ends, strict=True)]
    words = [WordTimestamp(word.text, int(starts[word.start]), int(ends[word.end - 1])) for word in ids.words]
    return SegmentSpans(phonemes, words)


def _scale(sample: int, source_rate: int, target_rate: int) -> int:
    # Round half up in integers: exact for any length, monotonic, and the shared boundary of two adjacent
    # spans maps to one value, so spans that tiled the audio still tile it.
    return (sample * target_rate + source_rate // 2) // source_rate


def rescale(spans: Sequence, source_rate: int, target_rate: int) -> list:
    """`spans` (phoneme or word timestamps) with their sample positions at `target_rate` (a resampled output)."""
    if source_rate == target_rate:
        return list(spans)
    return [replace(span, start_sample=_scale(span.start_sample, source_rate, target_rate),
                    end_sample=_scale(span.end_sample, source_rate, target_rate)) for span in spans]
