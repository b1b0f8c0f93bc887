"""The four sampling values of a synthesis: their names, ranges, defaults and meaning (the one place that says so).

`Sampling` is a complete set (a voice's defaults in voice.json's ``inference``, what one synthesis uses);
`SamplingOverrides` is what a request may set, each value optional (None = the voice's default). Every door,
flag and file iterates `Sampling.model_fields` instead of naming the values.

The ranges bound a request's work as much as its sound: `length_scale` multiplies every duration, so an
unbounded one is an unbounded amount of audio (1e6 once made a five-phoneme request allocate ~23 GB). They are
generous for speech: 0.1 is ten times faster than the voice's pace, 10 ten times slower; noise above 2 is
already noise. Requests outside get InputError naming the field and the range, before any work is queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from vitsrt.errors import InputError


@dataclass(frozen=True)
class Range:
    """Lowest and highest value accepted, both inclusive (field metadata, read into SAMPLING_RANGES)."""

    low: float
    high: float


class Sampling(BaseModel):
    """The sampling values one synthesis uses; as voice.json's ``inference``, the voice's defaults.

    The defaults are upstream Bert-VITS2 2.3's web UI values (noise 0.6, noise_w 0.9, length 1.0, SDP ratio
    0.5), so a voice sounds out of the box the way its trainer heard it in the upstream demo. A value out of
    range is a ValidationError here, so the reader of a voice.json or of export's flags reports it as its
    own error; requests come as `SamplingOverrides`, which raise InputError.
    """

    # Field order is voice.json's key order.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    noise_scale: Annotated[float, Range(0.0, 2.0)] = Field(0.6, description="prior noise")
    noise_scale_w: Annotated[float, Range(0.0, 2.0)] = Field(0.9, description="stochastic duration noise")
    length_scale: Annotated[float, Range(0.1, 10.0)] = Field(1.0, description="speaking rate, >1 slower")
    sdp_ratio: Annotated[float, Range(0.0, 1.0)] = Field(0.5, description="stochastic share of the durations, 0..1")

    @field_validator("*")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        try:
            return check_sampling(info.field_name, value)
        except InputError as exc:  # ValueError: pydantic adds where (e.g. inference.sdp_ratio) for the reader
            raise ValueError(exc.reason) from None


def _range(field: str) -> tuple[float, float]:
    (found,) = (m for m in Sampling.model_fields[field].metadata if isinstance(m, Range))
    return found.low, found.high


# field -> (lowest, highest) accepted, both inclusive.
SAMPLING_RANGES = MappingProxyType({field: _range(field) for field in Sampling.model_fields})


def check_sampling(field: str, value: float) -> float:
    """`value` as a float if it lies in `field`'s range, else InputError("field: must be between A and B, got X")."""
    low, high = SAMPLING_RANGES[field]
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise InputError(field, f"must be between {low:g} and {high:g}, got {number:g}")
    return number


class _Overrides(BaseModel):
    """Behaviour of SamplingOverrides; its fields are made from Sampling's below."""

    model_config = ConfigDict(extra="forbid")

    @field_validator(*Sampling.model_fields, check_fields=False)
    @classmethod
    def _in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        # InputError, not ValueError: pydantic lets it through, so a door reports the field as the caller named it.
        return None if value is None else check_sampling(info.field_name, value)

    def resolve(self, defaults: Sampling) -> Sampling:
        """The values to synthesise with: each one this request set, else `defaults`' (checked already)."""
        given = {field: value for field in Sampling.model_fields if (value := getattr(self, field)) is not None}
        return defaults.model_copy(update=given)


# Made from Sampling's fields so the two can never list different values.
SamplingOverrides = create_model(
    "SamplingOverrides",
    __base__=_Overrides,
    __module__=__name__,
    __doc__="Sampling values a request sets; None (unset) = the voice's default.",
    **{
        field: (float | None, Field(None, description=info.description))
        for field, info in Sampling.model_fields.items()
    },
)
