"""Reading Wyoming events with bounds, and errors as Wyoming `error` events.

The wyoming library's own reader trusts the header: it allocates whatever `data_length` / `payload_length`
a peer announces and waits forever for the bytes. A server on a LAN cannot, so this reader caps every part
of an event and gives a peer a fixed time to deliver an event once its header line has arrived. Writing
uses the library (`async_write_event`): what we send is well-formed by construction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from wyoming.error import Error
from wyoming.event import Event

from vitsrt.errors import BudgetError, InputError, NotFoundError, OverloadedError, VitsrtError

log = logging.getLogger(__name__)

# Codes of our `error` events (Wyoming leaves the code free-form; these are stable for clients to match on).
CODE_INVALID = "invalid-input"
CODE_NOT_FOUND = "not-found"
CODE_BUDGET = "budget-exceeded"
CODE_OVERLOADED = "overloaded"
CODE_FAILED = "synthesis-failed"
CODE_BAD_EVENT = "bad-event"
CODE_TOO_LARGE = "too-large"
CODE_UNAUTHENTICATED = "unauthenticated"
CODE_INTERNAL = "internal"


class ProtocolError(Exception):
    """The byte stream cannot be trusted any more (bad framing, over-size event): answer once, then close."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class EventLimits:
    max_bytes: int  # per header line, per data block and per payload
    body_timeout_s: float  # to deliver the data and payload once the header line has arrived

    @classmethod
    def for_text(cls, max_text_chars: int, body_timeout_s: float = 30.0) -> EventLimits:
        """Big enough that a text just over the engine's limit still arrives whole (and is refused by the
        engine with an error event, the connection kept): JSON may spend 12 bytes on one character
        (a surrogate pair as two \\uXXXX escapes), plus room for the other fields."""
        return cls(max_bytes=64 * 1024 + 12 * max_text_chars, body_timeout_s=body_timeout_s)


def _length(header: dict[str, Any], key: str, limits: EventLimits) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(CODE_BAD_EVENT, f"{key} must be a non-negative integer")
    if value > limits.max_bytes:
        raise ProtocolError(CODE_TOO_LARGE, f"{key} {value} is over the limit of {limits.max_bytes} bytes")
    return value


def parse_header(line: bytes, limits: EventLimits) -> tuple[str, dict[str, Any], int, int]:
    """type, inline data, data length and payload length of one header line."""
    try:
        header = json.loads(line)
    except ValueError:
        raise ProtocolError(CODE_BAD_EVENT, "the event header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError(CODE_BAD_EVENT, "the event header needs a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError(CODE_BAD_EVENT, "event data must be a JSON object")
    return header["type"], data, _length(header, "data_length", limits), _length(header, "payload_length", limits)


async def read_body(reader: asyncio.StreamReader, event_type: str, data: dict[str, Any], data_length: int,
                    payload_length: int, limits: EventLimits) -> Event:
    """The rest of an event whose header was read: data block (merged into the inline data) and payload."""
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            extra = await reader.readexactly(data_length) if data_length else b""
            payload = await reader.readexactly(payload_length) if payload_length else None
    except TimeoutError:
        raise ProtocolError(CODE_BAD_EVENT, f"the event body did not arrive in {limits.body_timeout_s:g} s") from None
    if extra:
        try:
            merged = json.loads(extra)
        except ValueError:
            raise ProtocolError(CODE_BAD_EVENT, "event data is not JSON") from None
        if not isinstance(merged, dict):
            raise ProtocolError(CODE_BAD_EVENT, "event data must be a JSON object")
        data = {**data, **merged}
    return Event(type=event_type, data=data, payload=payload)


def error_event(exc: BaseException) -> Event:
    """The `error` event for a failure; only our own errors' messages reach the client verbatim."""
    if isinstance(exc, ProtocolError):
        return Error(text=str(exc), code=exc.code).event()
    if isinstance(exc, InputError | ValidationError):
        code = CODE_INVALID
    elif isinstance(exc, NotFoundError):
        code = CODE_NOT_FOUND
    elif isinstance(exc, BudgetError):  # before OverloadedError, its base: retrying will not help
        code = CODE_BUDGET
    elif isinstance(exc, OverloadedError):
        code = CODE_OVERLOADED
    elif isinstance(exc, VitsrtError):
        code = CODE_FAILED
    else:
        log.exception("unexpected error in the Wyoming door", exc_info=exc)
        return Error(text="internal error", code=CODE_INTERNAL).event()
    text = _validation_text(exc) if isinstance(exc, ValidationError) else str(exc)
    return Error(text=text, code=code).event()


def _validation_text(exc: ValidationError) -> str:
    """One line per request, not pydantic's multi-line report (which echoes the input)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    return f"{where}: {first.get('msg', 'invalid value')}"
