"""The warm-up of a fresh start through the core's batch kernel, asset by asset.

Both drivers seed the strategy state with ``warmup_bars`` base bars before the first
tradable bar ``t0`` (DESIGN.md, "Warm-up"). Stepped as time slices — one core call, 500
candle objects and one SQLite transaction per slice — the 6,024 warm-up slices were most of
a 500-asset start (65 s). Here each feed hands its warm-up bars, in order, to
:class:`WarmupSink` (store rows as arrays, REST pages as they come), which runs them at
once through :func:`tandem.core.mtf.mtf_batch_nb` — the backtest's batch kernel, bit-identical to
the slice step (``tests/test_mtf.py``) — on that asset's state row alone: in the MTF stage
assets are independent, and a missing bar leaves an asset's state untouched, so per asset
the bars it has are all that matters. The one cross-asset warm-up state, a weighting
profile's return window, is fed at the end slice by slice, as the slice path did.

The state database keeps its contract: every consumed candle, warm-up included, is
journaled once with one ``slices`` row per warm-up ``ts`` (what reconcile reads). The
warm-up commit itself is the strategy checkpoint at ``t0 - tf`` (what a restart resumes
from); the journal rows follow — at once when they are few, else in short transactions
between live slices (:meth:`WarmupSink.journal_chunks`), at stop for a bounded time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from tandem.daemon.logconfig import get_logger

log = get_logger("daemon")

#: journal rows written in one transaction (~10 ms): between live slices, never a bar's worth
JOURNAL_CHUNK_ROWS = 5_000
#: up to this many warm-up candles are journaled in the warm-up commit itself
JOURNAL_AT_ONCE_ROWS = 100_000
_ORIGINS = ("store", "rest", "ws")


class WarmupSink:
    """Collects each asset's warm-up bars (``ts < end``) and steps them through the core.

    ``stepper`` is a :class:`tandem.daemon.strategy.ProfileStepper` (``warm_asset``,
    ``warm_window``). :meth:`begin` opens it once ``t0`` is known; feeds call
    :meth:`takes` and :meth:`bars`; the daemon calls :meth:`finish`."""

    def __init__(self, symbols: Sequence[str], stepper: Any, tf_ms: int, ops: Any = None):
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.stepper = stepper
        self.tf = tf_ms
        self.ops = ops
        self.start: int | None = None
        self.end: int | None = None  # t0: bars before it are warm-up
        self.finished = False
        self.n_bars = 0
        self.late = 0
        self.seconds = 0.0  # in the core's kernel (summed over assets and threads)
        self._next: list[int | None] = [None] * len(self.symbols)
        # per asset: (ts, values (k, 5), origin code) chunks, in order (for the journal)
        self._chunks: list[list[tuple[np.ndarray, np.ndarray, int]]] = [[] for _ in self.symbols]
        self._received_at = time.time()
        self._committed_at = self._received_at

    def begin(self, start: int, end: int) -> None:
        self.start, self.end = int(start), int(end)

    def takes(self, ts: int) -> bool:
        """True when bar ``ts`` belongs to the warm-up (the feed hands it here)."""
        return self.end is not None and ts < self.end

    def bars(self, symbol: str, ts: np.ndarray, values: np.ndarray, origin: str) -> None:
        """Consume ``symbol``'s next warm-up bars: ``ts`` (int64, increasing, after the ones
        before) and ``values`` ``(k, 5)`` o, h, l, c, v — validated by the feed."""
        args = self._check(symbol, ts, values)
        if args is not None:
            t = time.perf_counter()
            self.stepper.warm_asset(*args)
            self._took(symbol, origin, time.perf_counter() - t, *args)

    async def bars_in_thread(
        self, symbol: str, ts: np.ndarray, values: np.ndarray, origin: str
    ) -> None:
        """:meth:`bars` with the core's kernel in a worker thread (it releases the GIL):
        the event loop keeps reading sockets and the store meanwhile. The caller awaits it
        before the asset's next bars (per asset, the bars go in order)."""
        args = self._check(symbol, ts, values)
        if args is not None:
            took = await asyncio.to_thread(self._timed_warm, *args)
            self._took(symbol, origin, took, *args)

    def _timed_warm(self, j: int, ts: np.ndarray, values: np.ndarray) -> float:
        t = time.perf_counter()
        self.stepper.warm_asset(j, ts, values)
        return time.perf_counter() - t

    def _check(self, symbol: str, ts: np.ndarray, values: np.ndarray) -> tuple | None:
        k = len(ts)
        if k == 0:
            return None
        if self.finished:
            # The first live slice was stepped without them (as a slice released by grace).
            self.late += k
            log.warning("warmup_bars_late", symbol=symbol, bars=k, first_ts=int(ts[0]))
            return None
        j = self.index[symbol]
        prev = self._next[j]
        if prev is not None and int(ts[0]) < prev:
            raise ValueError(f"warm-up bars of {symbol} out of order: {int(ts[0])} < {prev}")
        self._next[j] = int(ts[-1]) + self.tf
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        return j, ts, np.ascontiguousarray(values, dtype=np.float64).reshape(k, 5)

    def _took(
        self, symbol: str, origin: str, seconds: float, j: int, ts: np.ndarray, values: np.ndarray
    ) -> None:
        k = len(ts)
        self.seconds += seconds
        self._chunks[j].append((ts, values, _ORIGINS.index(origin)))
        self.n_bars += k
        if self.ops is not None:
            self.ops.on_candle(symbol, int(ts[-1]) + self.tf, k)

    def finish(self) -> dict[str, Any]:
        """No more warm-up bars: feed the cross-asset window (weighting profiles) and return
        what the warm-up commit records."""
        self.finished = True
        self._committed_at = time.time()
        if self.stepper.wants_warm_window() and self.n_bars:
            t = time.perf_counter()
            self.stepper.warm_window(self._close_matrix())
            self.seconds += time.perf_counter() - t
        return {"warmup_from": self.start, "warmup_to": self.end, "warmup_candles": self.n_bars}

    def _axis(self) -> np.ndarray:
        """Every warm-up ts at which some asset has a bar (= the slices the slice path
        stepped), sorted."""
        parts = [c[0] for chunks in self._chunks for c in chunks]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def _close_matrix(self) -> np.ndarray:
        """Closes ``(warm-up slices, assets)``, NaN where an asset has no bar."""
        axis = self._axis()
        close = np.full((len(axis), len(self.symbols)), np.nan)
        for j, chunks in enumerate(self._chunks):
            for ts, values, _ in chunks:
                close[np.searchsorted(axis, ts), j] = values[:, 3]
        return close

    # ---- the journal ---------------------------------------------------------------------
    def journal_chunks(self, store: Any, chunk_rows: int = JOURNAL_CHUNK_ROWS) -> Iterator[int]:
        """Write the warm-up's ``slices`` and ``candles`` rows in time order, one
        transaction per ~``chunk_rows`` candles; yields after each (rows written). The
        collected bars are released as they go."""
        axis = self._axis()
        n = len(self.symbols)
        # per asset, its bars concatenated (one array each), then the chunks dropped
        ts_of, val_of, org_of = [], [], []
        for j in range(n):
            chunks = self._chunks[j]
            if chunks:
                ts_of.append(np.concatenate([c[0] for c in chunks]))
                val_of.append(np.concatenate([c[1] for c in chunks]))
                org_of.append(np.concatenate([np.full(len(c[0]), c[2], np.int8) for c in chunks]))
            else:
                ts_of.append(np.empty(0, np.int64))
                val_of.append(np.empty((0, 5)))
                org_of.append(np.empty(0, np.int8))
            self._chunks[j] = []
        # the candles table's key is (ts, symbol): insert in that order (B-tree appends)
        rank = np.argsort(np.argsort(np.array(self.symbols, dtype=object)))
        per_slice = max(1, chunk_rows // max(1, n))
        now = self._received_at
        # chunk c holds the slices axis[c * per_slice : (c + 1) * per_slice]; its rows of
        # asset j are ts_of[j][cut[j][c] : cut[j][c + 1]]
        edges = axis[per_slice::per_slice]
        cut = [np.concatenate([[0], np.searchsorted(t, edges), [len(t)]]).tolist() for t in ts_of]
        for c in range(len(edges) + 1):
            ts_p, val_p, org_p, sym_p = [], [], [], []
            for j in range(n):
                a, b = cut[j][c], cut[j][c + 1]
                if b > a:
                    ts_p.append(ts_of[j][a:b])
                    val_p.append(val_of[j][a:b])
                    org_p.append(org_of[j][a:b])
                    sym_p.append(np.full(b - a, j, np.int64))
            if not ts_p:
                continue
            ts_c, val_c = np.concatenate(ts_p), np.concatenate(val_p)
            org_c, sym_c = np.concatenate(org_p), np.concatenate(sym_p)
            order = np.lexsort((rank[sym_c], ts_c))
            ts_c, val_c, org_c, sym_c = ts_c[order], val_c[order], org_c[order], sym_c[order]
            slices = self._slice_rows(ts_c, sym_c, self._committed_at)
            names = [self.symbols[j] for j in sym_c.tolist()]
            origins = [_ORIGINS[o] for o in org_c.tolist()]
            cols = [val_c[:, q].tolist() for q in range(5)]
            candles = zip(names, ts_c.tolist(), *cols, origins, [now] * len(names), strict=True)
            store.journal_warmup(slices, candles)
            yield len(names)
        store.set_meta("warmup_journal", "done")

    def _slice_rows(self, ts: np.ndarray, sym: np.ndarray, now: float) -> list[tuple]:
        """``slices`` rows (ts, n_assets, missing, warmup=1, n_fills=0, committed_at) of
        the warm-up ts in this chunk (``ts`` sorted)."""
        bounds = np.flatnonzero(np.diff(ts)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        stops = np.concatenate([bounds, [len(ts)]]).astype(np.int64)
        n = len(self.symbols)
        rows = []
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            k = b - a
            if k == n:
                missing = "[]"
            else:
                have = np.zeros(n, dtype=bool)
                have[sym[a:b]] = True
                missing = json.dumps([self.symbols[j] for j in np.flatnonzero(~have).tolist()])
            rows.append((int(ts[a]), k, missing, 1, 0, now))
        return rows
