"""Give memory back once start-up is over (warm-up done, first live slice committed).

Start-up allocates a lot that is garbage by the time the daemon is live: market metadata
parsed from ``exchangeInfo``, REST pages of the warm-up backfill, numba's typing and cache
loading. Afterwards:

* ``gc.collect()`` frees what is only reachable through reference cycles;
* ``gc.freeze()`` moves every surviving object to the permanent generation: a later full
  collection does not walk the ~350k start-up objects again (measured 150 ms per walk,
  which would land on some slice's close-to-commit path). The price: a start-up object
  that later becomes *cyclic* garbage (say, the websocket client of a connection replaced
  on reconnect) is never reclaimed — bounded by what existed at start-up, not growing;
* glibc's ``malloc_trim(0)`` hands freed heap pages back to the kernel (free() keeps them
  otherwise), which is what lowers the resident set.

The process would use the same memory without this; it just would not return it.

Before start-up, :func:`configure_allocators` makes that trim reach all of the heap: a
500-asset warm-up from the candle store reads and steps its bars on worker threads, and
glibc gives each thread its own arena, whose freed top pages ``malloc_trim`` does not hand
back (~50 MB stayed resident); Arrow's default pool (mimalloc) kept another ~50 MB of the
reading threads' pages, ``release_unused()`` or not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from pathlib import Path


def rss_mb() -> float | None:
    """This process's resident set (VmRSS) in MB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


#: mallopt's parameter number for the arena limit (glibc malloc.h)
_M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc only (not musl, macOS)
    except (OSError, AttributeError):
        return None
    return libc


def _malloc_trim() -> bool:
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def configure_allocators() -> None:
    """Call before any thread starts and before pyarrow is imported: one glibc malloc
    arena for every thread (the worker threads of the warm-up are short-lived and the GIL
    serialises most allocation anyway), Arrow on the system allocator (unless
    ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise), so that :func:`release_memory` gives
    back what the warm-up freed."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 1)


def release_memory(freeze: bool = True) -> dict[str, float | None]:
    """Collect, optionally freeze the survivors, trim the heap; RSS before and after (MB)."""
    before = rss_mb()
    gc.collect()
    if freeze:
        gc.freeze()
    _malloc_trim()
    return {"rss_before_mb": before, "rss_after_mb": rss_mb()}
