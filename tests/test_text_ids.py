"""The ids front end: validation against the voice's table sizes, blanks, errors naming fields."""

from __future__ import annotations

import numpy as np
import pytest

from vitsrt.errors import InputError
from vitsrt.text.ids import IdsFrontEnd, intersperse, validate_id_array


@pytest.fixture
def frontend() -> IdsFrontEnd:
    # Bert-VITS2 2.3 sizes: 112 symbols, 12 tones, 3 languages (ZH, JP, EN).
    return IdsFrontEnd(112, 12, 3, add_blank=True, max_length=64)


def test_intersperse_shape_and_values() -> None:
    out = intersperse([5, 6, 7], 0)
    assert out.dtype == np.int64
    assert out.tolist() == [0, 5, 0, 6, 0, 7, 0]
    assert intersperse(np.array([], dtype=np.int64)).tolist() == [0]
    assert intersperse([1], item=9).tolist() == [9, 1, 9]


def test_valid_ids_pass_through_unchanged(frontend: IdsFrontEnd) -> None:
    seq = frontend.from_ids([0, 5, 0, 111, 0], [0, 3, 0, 11, 0], [0, 2, 0, 2, 0])
    assert seq.phone_ids.tolist() == [0, 5, 0, 111, 0]
    assert seq.tone_ids.tolist() == [0, 3, 0, 11, 0]
    assert seq.language_ids.tolist() == [0, 2, 0, 2, 0]
    for arr in (seq.phone_ids, seq.tone_ids, seq.language_ids):
        assert arr.dtype == np.int64 and arr.ndim == 1
    assert seq.phonemes == [] and seq.skipped == 0 and len(seq) == 5


def test_numpy_inputs_and_integral_floats(frontend: IdsFrontEnd) -> None:
    seq = frontend.from_ids(np.array([1, 2], dtype=np.int32), np.array([1.0, 2.0]), np.array([1, 1], dtype=np.uint8))
    assert seq.phone_ids.tolist() == [1, 2] and seq.tone_ids.tolist() == [1, 2]


def test_tone_and_language_default_to_zero_or_broadcast(frontend: IdsFrontEnd) -> None:
    seq = frontend.from_ids([3, 4, 5])
    assert seq.tone_ids.tolist() == [0, 0, 0] and seq.language_ids.tolist() == [0, 0, 0]
    seq = frontend.from_ids([3, 4, 5], language_ids=2, tone_ids=np.int64(1))
    assert seq.language_ids.tolist() == [2, 2, 2] and seq.tone_ids.tolist() == [1, 1, 1]


def test_add_blank_intersperses_all_three(frontend: IdsFrontEnd) -> None:
    seq = frontend.from_ids([7, 8], [1, 2], [2, 2], add_blank=True)
    assert seq.phone_ids.tolist() == [0, 7, 0, 8, 0]
    assert seq.tone_ids.tolist() == [0, 1, 0, 2, 0]
    assert seq.language_ids.tolist() == [0, 2, 0, 2, 0]


def test_add_blank_refused_for_voice_without_blanks() -> None:
    fe = IdsFrontEnd(10, add_blank=False)
    with pytest.raises(InputError) as info:
        fe.from_ids([1, 2], add_blank=True)
    assert info.value.field == "add_blank"
    assert fe.from_ids([1, 2]).phone_ids.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"phone_ids": [1, 112]}, "phone_ids", "phone_ids[1] = 112"),
        ({"phone_ids": [-1, 2]}, "phone_ids", "phone_ids[0] = -1"),
        ({"phone_ids": []}, "phone_ids", "empty"),
        ({"phone_ids": "1 2 3"}, "phone_ids", "string"),
        ({"phone_ids": [[1, 2], [3, 4]]}, "phone_ids", "flat"),
        ({"phone_ids": [[1, 2], [3]]}, "phone_ids", "flat"),
        ({"phone_ids": 5}, "phone_ids", "flat"),
        ({"phone_ids": [1.5, 2]}, "phone_ids", "integers"),
        ({"phone_ids": [float("nan"), 2]}, "phone_ids", "integers"),
        ({"phone_ids": [True, False]}, "phone_ids", "integers"),
        ({"phone_ids": [1, None]}, "phone_ids", "integers"),
        ({"phone_ids": np.array([2**63 + 5], dtype=np.uint64)}, "phone_ids", "too large"),
        ({"phone_ids": [1, 2], "tone_ids": [0, 12]}, "tone_ids", "tone_ids[1] = 12"),
        ({"phone_ids": [1, 2], "tone_ids": [0]}, "tone_ids", "align"),
        ({"phone_ids": [1, 2], "tone_ids": 12}, "tone_ids", "out of range"),
        ({"phone_ids": [1, 2], "language_ids": [0, 3]}, "language_ids", "language_ids[1] = 3"),
        ({"phone_ids": [1, 2], "language_ids": [0, 0, 0]}, "language_ids", "align"),
        ({"phone_ids": [1, 2], "language_ids": -1}, "language_ids", "out of range"),
        ({"phone_ids": list(range(65))}, "phone_ids", "limit of 64"),
    ],
)
def test_bad_ids_raise_input_error_naming_the_field(
    frontend: IdsFrontEnd, kwargs: dict, field: str, fragment: str
) -> None:
    with pytest.raises(InputError) as info:
        frontend.from_ids(**kwargs)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_length_limit_counts_blanks(frontend: IdsFrontEnd) -> None:
    frontend.from_ids(list(range(1, 32)), add_blank=True)  # 63 ids: fits 64
    with pytest.raises(InputError, match="after blanks"):
        frontend.from_ids(list(range(1, 33)), add_blank=True)  # 65 ids


def test_boundary_ids_accepted(frontend: IdsFrontEnd) -> None:
    seq = frontend.from_ids([0, 111], [0, 11], [0, 2])
    assert seq.phone_ids.tolist() == [0, 111]


def test_text_is_refused() -> None:
    with pytest.raises(InputError) as info:
        IdsFrontEnd(10).from_text("hello")
    assert info.value.field == "text"


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        IdsFrontEnd(0)
    with pytest.raises(ValueError):
        IdsFrontEnd(10, num_tones=0)
    with pytest.raises(ValueError):
        IdsFrontEnd(10, blank_id=10)


def test_validate_id_array_returns_copy_as_int64() -> None:
    src = np.array([1, 2, 3], dtype=np.int16)
    out = validate_id_array(src, "phone_ids", 4)
    assert out.dtype == np.int64 and out.tolist() == [1, 2, 3]
    out[0] = 3
    assert src[0] == 1
