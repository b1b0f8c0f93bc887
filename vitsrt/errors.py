"""The error types vitsrt raises on purpose. Each carries a one-line, user-facing reason."""

from __future__ import annotations

from collections.abc import Sequence


class VitsrtError(Exception):
    """Base class: an expected failure with a message fit for a user (CLI prints it, server maps it)."""


class ConfigError(VitsrtError):
    """A config.json that cannot be used (invalid values, unsupported model version)."""


class CheckpointError(VitsrtError):
    """A checkpoint that is not loadable: not a checkpoint, truncated, foreign objects, key/shape mismatch."""


class VoiceError(VitsrtError):
    """A voice bundle (voice.json + graphs) that is missing, malformed or inconsistent."""


class InputError(VitsrtError):
    """A bad request field. `field` names it so servers can report INVALID_ARGUMENT precisely."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class NotFoundError(VitsrtError):
    """An unknown voice or speaker."""


class OverloadedError(VitsrtError):
    """The engine is at capacity; the request was refused instead of queued forever."""


class BudgetError(OverloadedError):
    """A request asks for more work than one request may have (e.g. more audio than `max_audio_seconds`).
    Reported like overload (RESOURCE_EXHAUSTED), but the same request will be refused again."""


class TooManyIdsError(InputError):
    """A sentence that gives more ids than one sentence may have (the engine's `max_phonemes`)."""


class NothingToSpeakError(InputError):
    """A piece of text with nothing pronounceable in it (punctuation runs, symbols): dropped when other
    sentences of the request can be spoken, an error only when none can."""


def clip(text: object, limit: int = 80) -> str:
    """`text` as a short one-line repr fit for an error message or a log line: a client-sent string is never
    echoed whole (a 900 KB voice name stays ~80 characters), newlines cannot forge extra log lines."""
    shown = repr(str(text))
    if len(shown) <= limit:
        return shown
    return f"{shown[: limit - 1]}…(+{len(shown) - limit + 1} chars)"


def name_list(names: Sequence[str], limit: int = 20) -> str:
    """"a, b, c" for an error message; a voice with hundreds of speakers shows the first `limit`."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"
