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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
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


def _malloc_trim() -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return False


def release_memory(freeze: bool = True) -> dict[str, float | None]:
    """Collect, optionally freeze the survivors, trim the heap; RSS before and after (MB)."""
    before = rss_mb()
    gc.collect()
    if freeze:
        gc.freeze()
    _malloc_trim()
    return {"rss_before_mb": before, "rss_after_mb": rss_mb()}
