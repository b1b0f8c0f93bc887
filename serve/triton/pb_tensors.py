"""numpy -> ``pb_utils.Tensor`` that works with numpy 1.x and 2.x inside Triton's Python backend.

The Python-backend stub (Triton 2.51, as shipped in the ``nvidia-pytriton`` wheel) is compiled against
the numpy 1.x C API. Under numpy 2.x, ``pb_utils.Tensor(name, array)`` reads the element size from the
wrong place in numpy 2's dtype struct and produces an EMPTY tensor (0 bytes): outputs arrive empty and
BLS requests fail with "input byte size mismatch ... got 0". ``as_numpy()`` has the mirror problem
(see :func:`from_pb_tensor`).

DLPack does not touch the dtype struct, so tensors are handed over through ``Tensor.from_dlpack``. The
stub marks a consumed capsule with its own name, which numpy's capsule destructor does not recognise
(it prints an ignored ``ValueError`` per tensor); renaming the capsule to numpy's "used" name after the
hand-over makes the destructor skip it, as intended: the stub owns the managed tensor and releases the
array through the DLPack deleter.

BYTES (TYPE_STRING) inputs are lost before any model code runs. For each one the stub wraps the
serialized payload (4-byte length + bytes per element) in a uint8 array whose element size it reads from
the wrong place in numpy 2's dtype struct (0, so stride 0) and copies it: the copy holds the payload's
first byte repeated ("Hello" arrives as nine 0x05 bytes). It hands that to
``triton_python_backend_utils.deserialize_bytes_tensor``, which reads a length of 0x05050505, raises in
the stub's C++ request loader, and the stub process aborts: the model answers "Stub process is not
healthy" until the server restarts, while readiness still says 200. The real bytes are unreachable from
Python (the tensor refuses DLPack for strings), so :func:`patch_bytes_inputs` installs
:func:`deserialize_bytes`, which never raises and turns such a payload into :data:`UNREADABLE` elements
that the model rejects per request; the BLS models take text through request parameters instead.
"""

from __future__ import annotations

import ctypes
import struct

import numpy as np

# numpy's name for a capsule whose tensor was consumed (its destructor then does nothing). A bytes
# constant: the capsule keeps pointing at it for its whole life.
_USED_CAPSULE_NAME = b"used_dltensor"
_NUMPY_2 = int(np.__version__.split(".", 1)[0]) >= 2


def _mark_consumed(capsule: object) -> None:
    set_name = ctypes.pythonapi.PyCapsule_SetName
    set_name.argtypes = (ctypes.py_object, ctypes.c_char_p)
    set_name.restype = ctypes.c_int
    set_name(capsule, _USED_CAPSULE_NAME)


def to_pb_tensor(pb_utils, name: str, array: np.ndarray):
    """A ``pb_utils.Tensor`` holding `array` (made C-contiguous); safe under numpy 1.x and 2.x."""
    array = np.ascontiguousarray(array)
    if not _NUMPY_2 or array.dtype.kind in "OSU":
        return pb_utils.Tensor(name, array)
    if not array.flags.writeable:
        array = array.copy()  # DLPack before 1.0 cannot mark a tensor read-only, so numpy refuses to export
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _mark_consumed(capsule)
    return tensor


def from_pb_tensor(tensor) -> np.ndarray:
    """A ``pb_utils.Tensor`` (request input or BLS output) as a numpy array, under numpy 1.x and 2.x.

    ``as_numpy()`` has the same numpy-2 problem in the other direction: the array it builds gets the
    wrong element size, hence zero strides (every element reads as the first one). DLPack avoids it.
    BYTES tensors have no DLPack type and fall back to ``as_numpy()`` (made safe by :func:`patch_bytes_inputs`).
    """
    if not _NUMPY_2:
        return tensor.as_numpy()
    try:
        return np.from_dlpack(tensor)
    except (TypeError, ValueError, RuntimeError, BufferError):
        return tensor.as_numpy()


class _Unreadable:
    """The element a string tensor gets when its payload did not survive the stub (see module doc)."""

    def __repr__(self) -> str:
        return "<unreadable string>"


UNREADABLE = _Unreadable()


class _UnreadableTensor:
    """What :func:`deserialize_bytes` returns for a lost payload. The stub calls ``.reshape(dims)`` on
    the result; a real array of the wrong element count would raise there and abort the stub."""

    def reshape(self, dims) -> np.ndarray:
        return np.full(tuple(dims), UNREADABLE, dtype=np.object_)


def _split(raw: bytes) -> list[bytes] | None:
    """The elements of a serialized BYTES tensor; None unless the lengths add up exactly."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            return None
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            return None
        items.append(raw[offset : offset + length])
        offset += length
    return items


def _smeared(raw: bytes) -> bool:
    """The first byte repeated, longer than one length prefix: what the numpy-2 stub leaves of any payload.
    (Only an all-zero payload also parses: several empty strings, which no vitsrt input needs.)"""
    return len(raw) > 4 and raw.count(raw[:1]) == len(raw)


def deserialize_bytes(encoded: object):
    """Drop-in for ``pb_utils.deserialize_bytes_tensor``: a 1-D object array of bytes, or an
    :class:`_UnreadableTensor` for a payload the stub garbled. Never raises: it runs in the stub's
    request loader, where an exception aborts the stub process."""
    try:
        raw = np.ascontiguousarray(encoded).tobytes() if isinstance(encoded, np.ndarray) else bytes(encoded)
    except (TypeError, ValueError, BufferError):
        return _UnreadableTensor()
    items = _split(raw)
    if items is None or _smeared(raw):
        return _UnreadableTensor()
    array = np.empty(len(items), dtype=np.object_)
    array[:] = items  # element by element: np.array(items) could build a 2-D array of characters
    return array


def patch_bytes_inputs(pb_utils) -> None:
    """Make the stub decode string inputs with :func:`deserialize_bytes`: it looks the function up in
    ``triton_python_backend_utils`` (that is `pb_utils`) for every tensor. Harmless under numpy 1."""
    pb_utils.deserialize_bytes_tensor = deserialize_bytes
