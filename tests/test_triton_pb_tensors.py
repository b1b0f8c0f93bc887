"""The BYTES decoder installed into Triton's Python-backend stub: right for intact payloads, never raising
on what the numpy-2 stub leaves of one (it runs where an exception aborts the stub process)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vitsrt.serve.triton.pb_tensors import UNREADABLE, deserialize_bytes


def _serialized(*items: bytes) -> np.ndarray:
    raw = b"".join(struct.pack("<I", len(item)) + item for item in items)
    return np.frombuffer(raw, dtype=np.uint8).copy()


@pytest.mark.parametrize("items", [(b"Hello",), (b"kal", "Grüße".encode()), (b"",), (b"a" * 300, b"")])
def test_intact_payloads_decode_to_their_elements(items):
    decoded = deserialize_bytes(_serialized(*items))
    assert decoded.dtype == np.object_ and decoded.tolist() == list(items)
    assert deserialize_bytes(_serialized(*items).tobytes()).tolist() == list(items)  # bytes in, as pb_utils allows


@pytest.mark.parametrize("raw", [
    bytes([5]) * 9,  # "Hello" as the numpy-2 stub hands it over: its first byte repeated
    bytes([0]) * 260,  # a 256-byte text the same way: parses as 65 empty strings, still unreadable
    b"\x09\x00\x00\x00abc",  # a length past the end
    b"\x01\x00",  # a cut length prefix
])
def test_garbled_payloads_become_unreadable_in_any_shape(raw):
    decoded = deserialize_bytes(np.frombuffer(raw, dtype=np.uint8))
    # the stub reshapes whatever comes back to the request's dims; that must not raise either
    for dims in ([1], [2, 3]):
        shaped = decoded.reshape(dims)
        assert shaped.shape == tuple(dims) and all(value is UNREADABLE for value in shaped.reshape(-1))


def test_a_non_buffer_is_unreadable_not_an_exception():
    assert deserialize_bytes(object()).reshape([1])[0] is UNREADABLE
