"""Where the commands' log lines go: stderr, as long as someone reads it."""

from __future__ import annotations

import sys

import structlog
from tandem.core.stdout import to_devnull


class PipeSafeLogger(structlog.PrintLogger):
    """A PrintLogger that outlives its reader. ``tandem-daemon replay 2>&1 | head`` closed the
    pipe under the daemon: the next log line raised BrokenPipeError inside a feed or slice
    task and the replay hung (or died without its summary); ``tandem-backtest --log-level
    info run ... 2>&1 | head -1`` exited 1 with no output written. Logs are a side channel:
    once nobody reads them, stderr is pointed at /dev/null (later lines, Python's final
    flush and an ``error:`` line then go nowhere) and the work goes on."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except BrokenPipeError:
            to_devnull(sys.stderr)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def stderr_logger(*_args: object) -> PipeSafeLogger:
    """A logger on whatever ``sys.stderr`` is *now*: pinning the stream of the moment the
    logging was configured broke every later line once that stream was closed or replaced
    (pytest's capture, a redirected stderr): ``I/O operation on closed file``."""
    return PipeSafeLogger(file=sys.stderr)
