"""numpy -> ``pb_utils.Tensor`` that works with numpy 1.x and 2.x inside Triton's Python backend.

The Python-backend stub (Triton 2.51, as shipped in the ``nvidia-pytriton`` wheel) is compiled against
the numpy 1.x C API. Under numpy 2.x, ``pb_utils.Tensor(name, array)`` reads the element size from the
wrong place in numpy 2's dtype struct and produces an EMPTY tensor (0 bytes): outputs arrive empty and
BLS requests fail with "input byte size mismatch ... got 0". Reading inputs (``as_numpy``) is fine.

DLPack does not touch the dtype struct, so tensors are handed over through ``Tensor.from_dlpack``. The
stub marks a consumed capsule with its own name, which numpy's capsule destructor does not recognise
(it prints an ignored ``ValueError`` per tensor); renaming the capsule to numpy's "used" name after the
hand-over makes the destructor skip it, as intended: the stub owns the managed tensor and releases the
array through the DLPack deleter.

BYTES (TYPE_STRING) inputs cannot be rescued this way: under numpy 2 the stub garbles them while
deserializing, before any model code runs, and the stub process aborts. Hence the BLS models take
numeric alternatives (PHONE_IDS, SPEAKER_ID); TEXT/SPEAKER/LANGUAGE strings need numpy 1.x in the
environment the stub runs in (a full Triton install, or a numpy<2 venv first on the server's PATH).
"""

from __future__ import annotations

import ctypes

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
    BYTES tensors have no DLPack type and fall back to ``as_numpy()`` (see :func:`patch_bytes_inputs`).
    """
    if not _NUMPY_2:
        return tensor.as_numpy()
    try:
        return np.from_dlpack(tensor)
    except (TypeError, ValueError, RuntimeError, BufferError):
        return tensor.as_numpy()
