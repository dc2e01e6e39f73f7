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

Once live, :func:`defer_collection` / :func:`resume_collection` keep the cyclic collector's
automatic runs off the close-to-commit path. A bar's closing frames (and the candles, bucket
and slice arrays they make) leave ~1.3 container objects per stream alive until the slice is
committed, so at 500 streams the young generation's threshold (700) was crossed inside 20-40 %
of the bursts: a gen0 (now and then gen1) collection ran between the bar's first closing
frame and the commit, the worst burst's 1-9 ms per run on the shared machine
(``bench/daemon.py``: "gc in bursts"), and found no garbage — those objects die by reference count right after
the commit. From a slice's first candle to its commit the young generation's threshold is
raised (:data:`BURST_GEN0_THRESHOLD`); the commit restores it, so a collection the burst
deferred runs at the next allocation after the commit, and between bars the collector keeps
its usual schedule: cycles are reclaimed as before and memory stays bounded. Not
``gc.disable()``: a slice that waits out its grace while frames keep coming would then have
no bound at all.
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


#: the young generation's threshold from a slice's first candle to its commit: far above a
#: burst's allocations (~700 at 500 streams), still a bound for a slice that waits
#: (a young generation of that size: ~7 ms to collect, measured)
BURST_GEN0_THRESHOLD = 100_000

#: the thresholds a burst replaced (None: no burst open). Process-wide, as the collector is.
_deferred_from: tuple[int, int, int] | None = None


def defer_collection() -> None:
    """A slice's burst began (its first closing candle): no automatic collection until
    :func:`resume_collection` (short of :data:`BURST_GEN0_THRESHOLD` young objects)."""
    global _deferred_from
    if _deferred_from is None:
        _deferred_from = gc.get_threshold()
        gc.set_threshold(BURST_GEN0_THRESHOLD, *_deferred_from[1:])


def resume_collection() -> None:
    """The slice is committed: the usual thresholds again (a collection the burst deferred
    runs at the next allocation). No-op when no burst is open."""
    global _deferred_from
    if _deferred_from is not None:
        gc.set_threshold(*_deferred_from)
        _deferred_from = None


def release_memory(freeze: bool = True) -> dict[str, float | None]:
    """Collect, optionally freeze the survivors, trim the heap; RSS before and after (MB)."""
    before = rss_mb()
    gc.collect()
    if freeze:
        gc.freeze()
    _malloc_trim()
    return {"rss_before_mb": before, "rss_after_mb": rss_mb()}
