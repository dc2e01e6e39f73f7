"""structlog set-up for the ``tandem-backtest`` command line.

Logs go to stderr (key=value, or JSON with ``json=True``) so that stdout stays for the
results a user or a script reads (stats, paths).
"""

from __future__ import annotations

import logging
import sys

import structlog
from tandem.core.logsink import stderr_logger


def configure_logging(level: str = "info", json: bool = False) -> None:
    """Route structlog (and stdlib logging) to stderr at ``level``."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s", force=True)
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=stderr_logger,
        cache_logger_on_first_use=False,
    )
