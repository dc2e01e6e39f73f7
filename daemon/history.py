"""Warm-up from the local candle store (``TANDEM_DATA_DIR``, filled by ``tandem-backtest
download``): read what it holds, fetch only the missing tail over REST, store that tail.

The shipped profiles need 6,024 1h warm-up bars per asset: over REST that is 7 pages per
asset, ~3,500 requests for 500 assets — more than a minute of Binance's request-weight
budget at every start. A feed (:class:`tandem.daemon.feeds.CandleFeed`) asks :meth:`read_arrays` for its
first backfill's range and delivers the stored bars that continue it without a gap; REST
takes over at the first bar the store lacks. The bars REST delivered in that first backfill
are appended to the store (:meth:`save`, in a worker thread) so the next start reads them.

The store's read policy is the one rule of :mod:`tandem.core.candles` (same as the backtest's
loaders); the feed checks the rows again (the same rule as :func:`tandem.daemon.feeds.candle_fault`
and the timeframe grid, on arrays) and stops taking stored rows at the first one that fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tandem.core.store import CandleStore, CandleStoreError, SymbolNotFoundError, timeframe_ms
from tandem.daemon.logconfig import get_logger

log = get_logger("history")
_NONE = (np.empty(0, np.int64), np.empty((0, 5)))


class StoreHistory:
    """Closed bars of one exchange and base timeframe from a :class:`tandem.core.store.CandleStore`."""

    def __init__(self, root: str | Path, exchange: str, timeframe: str):
        self.store = CandleStore(root, exchange=exchange, timeframe=timeframe)
        self.timeframe = timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.rows_read = 0
        self.rows_saved = 0

    def read_arrays(self, symbol: str, start_ts: int, end_ts: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored bars with ``start_ts <= ts < end_ts``: ``ts`` (int64) and ``values``
        ``(k, 5)`` o, h, l, c, v (none when the store has no file for ``symbol``; a damaged
        file is logged)."""
        try:
            ts, values = self.store.read_arrays(symbol, start_ts, end_ts, timeframe=self.timeframe)
        except SymbolNotFoundError:
            return _NONE  # not downloaded: all of it comes over REST
        except CandleStoreError as exc:
            log.warning("store_unreadable", symbol=symbol, error=str(exc)[:200])
            return _NONE
        # Copies: the slices are views of the symbol's whole file (years of bars), which
        # the warm-up would otherwise keep alive until its journal is written.
        ts = np.array(ts, dtype=np.int64)
        values = np.array(values, dtype=np.float64)
        self.rows_read += len(ts)
        return ts, values

    def save(self, symbol: str, rows: list[list]) -> int:
        """Append closed bars fetched over REST (the store keeps what it already had)."""
        if not rows:
            return 0
        try:
            # Only a tail that continues the stored bars: a store older than the warm-up
            # window would otherwise get a hole between its last bar and the first REST row
            # that nothing ever fills (`tandem-backtest download` resumes after the LAST
            # stored bar), so backtests over it silently miss those bars. The next
            # download fetches all of it instead.
            last = self.store.last_ts(symbol, timeframe=self.timeframe)
            first = min(int(r[0]) for r in rows)
            if last is not None and first > last + self.tf_ms:
                log.info("store_tail_not_saved", symbol=symbol, store_last_ts=last,
                         first_ts=first, reason="would leave a gap after the stored bars; "
                         "run tandem-backtest download to extend the store")
                return 0
            # rows as they are: the store's append makes its frame (and imports pandas
            # only now, not for the reads of every start)
            n = self.store.append(symbol, [r[:6] for r in rows],
                                  timeframe=self.timeframe)
        except (CandleStoreError, ValueError, OSError) as exc:
            log.warning("store_save_failed", symbol=symbol, error=str(exc)[:200])
            return 0
        self.rows_saved += n
        return n
