"""Stage backends: run a named stage graph on a dict of numpy arrays. The engine never knows which."""

from vitsrt.serve.backends.base import BACKENDS, StageBackend, open_backend

__all__ = ["BACKENDS", "StageBackend", "open_backend"]
