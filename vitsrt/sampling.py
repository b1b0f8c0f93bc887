"""The four sampling values a request may set, and the range each must lie in (the one place that says so).

The ranges bound a request's work as much as its sound: `length_scale` multiplies every duration, so an
unbounded one is an unbounded amount of audio (1e6 once made a five-phoneme request allocate ~23 GB). They are
generous for speech: 0.1 is ten times faster than the voice's pace, 10 ten times slower; noise above 2 is
already noise. Requests outside get InputError naming the field and the range, before any work is queued.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from vitsrt.errors import InputError

# field -> (lowest, highest) accepted, both inclusive.
SAMPLING_RANGES = MappingProxyType({
    "length_scale": (0.1, 10.0),
    "noise_scale": (0.0, 2.0),
    "noise_scale_w": (0.0, 2.0),
    "sdp_ratio": (0.0, 1.0),
})


def check_sampling(field: str, value: float) -> float:
    """`value` as a float if it lies in `field`'s range, else InputError("field: must be between A and B, got X")."""
    low, high = SAMPLING_RANGES[field]
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise InputError(field, f"must be between {low:g} and {high:g}, got {number:g}")
    return number
