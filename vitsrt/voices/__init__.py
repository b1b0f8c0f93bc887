"""Voices shipped inside the package.

``default/`` is the default voice of ``vitsrt synth``, ``vitsrt serve`` and ``make demo``: a small
multi-speaker English voice trained by vitsrt itself on an offline, licence-clean corpus (the recipe,
its licences and its measurements are in ``recipes/default-voice/``). It is an ordinary voice bundle,
so everything that takes ``--voice DIR`` also takes this folder.
"""

from __future__ import annotations

from pathlib import Path

from vitsrt.errors import NotFoundError
from vitsrt.voice import MANIFEST_NAME

__all__ = ["DEFAULT_VOICE_DIR", "default_voice_dir"]

DEFAULT_VOICE_DIR = Path(__file__).resolve().parent / "default"


def default_voice_dir() -> Path:
    """The shipped default voice's folder; NotFoundError with a one-line reason if it is missing."""
    if not (DEFAULT_VOICE_DIR / MANIFEST_NAME).is_file():
        raise NotFoundError(
            f"the default voice is not installed ({DEFAULT_VOICE_DIR / MANIFEST_NAME} is missing); pass --voice DIR"
        )
    return DEFAULT_VOICE_DIR
