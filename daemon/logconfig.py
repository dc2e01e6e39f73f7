"""structlog configuration for the daemon.

Service mode (stdout not a terminal, or ``fmt="json"``) writes one JSON object per line so a
log shipper can parse every event; on a terminal the output is the pretty console renderer.
Every event carries a UTC ISO timestamp and its level.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from tandem.core.logsink import stderr_logger

LogFormat = Literal["auto", "json", "pretty"]


def configure_logging(fmt: LogFormat = "auto", level: str = "INFO", stream=None) -> None:
    """Configure structlog (and route stdlib logging through the same sink).

    ``fmt="auto"`` picks pretty output on a tty and JSON lines otherwise.
    """
    explicit_stream = stream
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "pretty" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=getattr(stream, "isatty", lambda: False)())
    )
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_logger_factory(explicit_stream),
        cache_logger_on_first_use=False,
    )
    # ccxt/aiohttp/apscheduler speak stdlib logging; keep their warnings, drop their chatter.
    logging.basicConfig(stream=stream, level=max(numeric, logging.WARNING), format="%(message)s")


def _logger_factory(stream):
    """A PrintLogger factory; without an explicit stream, on whatever ``sys.stderr`` is *now*.

    Pinning ``sys.stderr`` at configure time breaks every later log line once that stream is
    closed (a redirected stderr, pytest's capture): ``I/O operation on closed file``.
    """
    if stream is not None:
        return structlog.PrintLoggerFactory(file=stream)
    return stderr_logger


def get_logger(name: str = "tandem.daemon") -> structlog.stdlib.BoundLogger:
    """Return a structlog logger bound to ``name`` (the component emitting the event)."""
    return structlog.get_logger(component=name)
