"""Standard output that outlives its reader (``tandem-backtest run ... | head``).

When the reader of a pipe goes away, the next write to it raises BrokenPipeError. Raised
from a ``print``, it ended a command midway with a traceback: ``run`` after its files were
written, but ``download`` or ``demo`` before their work was done. Under
:func:`tolerate_closed_stdout` the lines nobody reads are dropped and the command carries
on, so its files and its exit code are what they would have been.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def to_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null: what it still buffers, and what is
    written to it later (also Python's flush at exit, which would print "Exception ignored
    ... BrokenPipeError"), goes nowhere. Nothing happens to a stream without a descriptor
    (a test's buffer)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(devnull)


class _ReaderMayLeave:
    """A text stream whose writes are dropped once its reader has closed the pipe."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self._gone = True
        to_devnull(self._stream)

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno, buffer, ...
        return getattr(self._stream, name)


@contextmanager
def tolerate_closed_stdout() -> Iterator[None]:
    """``sys.stdout`` drops what it cannot deliver (see the module docstring) meanwhile."""
    saved = sys.stdout
    sys.stdout = _ReaderMayLeave(saved)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = saved
