"""Server-sent events (text/event-stream) as the task event stream sends them.

Used by `Client.watch_task` and by tests that read `/v1/tasks/{id}/events` directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["ServerSentEvent", "iter_sse"]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched SSE event."""

    event: str
    data: str
    id: str | None = None


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Parse a text/event-stream given line by line (the WHATWG rules we need).

    Comments (`:` lines, used as keep-alives) are skipped; several `data:`
    lines join with newlines; an event without data is not dispatched.
    """
    event = ""
    data: list[str] = []
    last_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            last_id = value
    # A stream may end without the final blank line; the event is still whole.
    if data:
        yield ServerSentEvent(event or "message", "\n".join(data), last_id)
