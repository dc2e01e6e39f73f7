"""Ending a command-line process quickly, and safely with native work still running."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from typing import NoReturn

_abandoned: list[threading.Thread] = []


def abandon(thread: threading.Thread) -> None:
    """Note a thread we stopped waiting for while it may be inside native code.

    The daemon stops waiting for a cold compile when it is asked to stop (SIGTERM); the
    compile thread runs on inside LLVM, which releases the GIL. An ordinary interpreter exit
    then runs LLVM's C++ static destructors under that thread, and LLVM aborts (SIGABRT,
    exit -6, seen in the test suite under load) instead of the clean exit 0 systemd expects.
    """
    _abandoned.append(thread)


def exit_fast(code: int | None) -> NoReturn:
    """Exit with ``code``, skipping the interpreter's final garbage collection.

    A process that has loaded numba holds hundreds of thousands of objects (types, IR,
    caches); collecting them at exit took 0.3-0.6 s of every run (the "exit" of
    ``bench/backtest.py``). Frozen, they are left to the OS. Nothing is lost: by then the
    run has closed what it wrote, and modules and ``atexit`` handlers (logging's flush
    among them) still run as usual.

    With an :func:`abandoned <abandon>` thread still alive, the process flushes its logs
    and streams and leaves at once (``os._exit``): no static destructor runs under it.
    """
    gc.freeze()
    if any(t.is_alive() for t in _abandoned):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken pipe: nothing left to save
                pass
        os._exit(code if isinstance(code, int) else (0 if code is None else 1))
    sys.exit(code)
