"""Structured logging (structlog, JSON lines on stderr) for the server, the agent and `up`."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["MalformedRequests", "configure"]


class MalformedRequests(logging.Filter):
    """aiohttp logs each malformed request it refuses (a bad header line, TLS bytes on a plain
    port, an oversized line) at ERROR with its traceback: a flood of tracebacks anyone who
    reaches the Docker endpoint's port can cause. This makes such a record one WARNING line that
    names the problem; errors of the server's own code keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # Not imported here: the daemons start without aiohttp, which only the Docker endpoint
        # loads (and only a loaded aiohttp logs such records).
        errors = sys.modules.get("aiohttp.http_exceptions")
        if errors is not None and isinstance(exc, errors.HttpProcessingError):
            record.msg = (
                f"{record.getMessage()}: malformed request refused ({exc.code}): {exc.message}"
            )
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(level: str = "info", *, json: bool = True) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    # httpx logs every request at INFO: the agent's long polls would drown everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in server.filters):
        server.addFilter(MalformedRequests())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
