"""The candles an emulator plays, and how they look on Binance's wire.

``MarketData`` holds one base timeframe of closed candles per symbol. Everything the
emulator sends is derived from it *deterministically*, so a test can predict every frame:

* a **closed** bar is sent exactly as stored (prices formatted with the shortest decimal
  string that parses back to the same float64, so ccxt's ``float()`` round-trips bit for
  bit);
* a **forming** bar at fraction ``p`` of its period is a prefix of a fixed intrabar path
  ``open -> low -> high -> close`` for an up bar (``open -> high -> low -> close`` for a down
  bar), linear between the four points at ``p = 0, 1/3, 2/3, 1``; high/low are the extremes
  of the path so far and volume is ``p × volume``. At ``p = 1`` it equals the stored bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from tandem.core.store import AlignedCandles, timeframe_ms

if TYPE_CHECKING:  # pandas only for the frames tests compare with (MarketData.frame)
    import pandas as pd

# Binance spot interval names == ccxt timeframe names for these.
BINANCE_INTERVALS = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
)


def fmt(x: float) -> str:
    """Shortest positional decimal string that round-trips to the same float64."""
    text = repr(float(x))  # shortest round-trip repr; fast path
    if "e" in text or "n" in text:  # 1e-05 / inf / nan: Binance never sends exponents
        return np.format_float_positional(float(x), unique=True, trim="0")
    return text


def market_id(symbol: str) -> str:
    """ccxt unified ``BTC/USDT`` -> Binance id ``BTCUSDT``."""
    return symbol.replace("/", "")


@dataclass(frozen=True)
class Bar:
    """One candle as the wire shows it (maybe forming)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool


class MarketData:
    """Closed candles of several symbols in one base timeframe (the emulator's history)."""

    def __init__(self, timeframe: str, candles: dict[str, np.ndarray]):
        """``candles[symbol]`` = ``n × 6`` array ``[ts, o, h, l, c, v]`` sorted by ts."""
        if timeframe not in BINANCE_INTERVALS:
            raise ValueError(f"Binance has no {timeframe!r} klines")
        self.timeframe = timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.symbols: tuple[str, ...] = tuple(candles)
        self.ts: dict[str, np.ndarray] = {}
        self.ohlcv: dict[str, np.ndarray] = {}
        for sym, arr in candles.items():
            arr = np.asarray(arr, dtype=np.float64)
            ts = arr[:, 0].astype(np.int64)
            if len(ts) > 1 and not (np.diff(ts) > 0).all():
                raise ValueError(f"{sym}: candle ts must be strictly increasing")
            if (ts % self.tf_ms != 0).any():
                raise ValueError(f"{sym}: candle ts not aligned to {timeframe}")
            self.ts[sym] = ts
            self.ohlcv[sym] = np.ascontiguousarray(arr[:, 1:6])
        self.by_id = {market_id(s): s for s in self.symbols}

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_aligned(cls, aligned: AlignedCandles, timeframe: str) -> MarketData:
        """From ``load_aligned`` output (NaN rows = no bar for that asset)."""
        candles = {}
        for j, sym in enumerate(aligned.symbols):
            have = ~np.isnan(aligned.close[:, j])
            candles[sym] = np.column_stack(
                [aligned.ts[have].astype(np.float64)]
                + [getattr(aligned, n)[have, j] for n in ("open", "high", "low", "close", "volume")]
            )
        return cls(timeframe, candles)

    @classmethod
    def from_source(
        cls,
        source: Any,
        symbols: list[str] | tuple[str, ...] | None,
        timeframe: str,
        start: Any = None,
        end: Any = None,
    ) -> MarketData:
        """From any :mod:`tandem.core.store` source (store, CSV folder, universe parquet)."""
        return cls.from_aligned(source.load_aligned(symbols, timeframe, start, end), timeframe)

    @classmethod
    def from_frames(cls, frames: dict[str, pd.DataFrame], timeframe: str) -> MarketData:
        """From per-symbol frames with ``ts`` (or ``timestamp``) and OHLCV columns."""
        out = {}
        for sym, f in frames.items():
            f = f.rename(columns={"timestamp": "ts"})
            out[sym] = f.loc[:, ["ts", "open", "high", "low", "close", "volume"]].to_numpy(np.float64)
        return cls(timeframe, out)

    @classmethod
    def generate(
        cls,
        symbols: list[str] | tuple[str, ...] = ("BTC/USDT", "ETH/USDT"),
        timeframe: str = "1m",
        start: int = 1_700_000_000_000 // 3_600_000 * 3_600_000,
        n_bars: int = 500,
        seed: int = 0,
    ) -> MarketData:
        """Seeded random-walk candles (no network, no files): same seed, same candles."""
        tf = timeframe_ms(timeframe)
        start = start // tf * tf
        rng = np.random.default_rng(seed)
        candles = {}
        for k, _sym in enumerate(symbols):
            price0 = 100.0 * (k + 1)
            rets = rng.normal(0.0, 0.01, n_bars)
            close = np.round(price0 * np.exp(np.cumsum(rets)), 4)
            open_ = np.concatenate([[price0], close[:-1]])
            wick_hi = np.abs(rng.normal(0, 0.004, n_bars))
            wick_lo = np.abs(rng.normal(0, 0.004, n_bars))
            high = np.round(np.maximum(open_, close) * (1 + wick_hi), 4)
            low = np.round(np.minimum(open_, close) * (1 - wick_lo), 4)
            high = np.maximum(high, np.maximum(open_, close))  # rounding must not break h >= o, c
            low = np.minimum(low, np.minimum(open_, close))
            vol = np.round(rng.lognormal(3.0, 0.5, n_bars), 3)
            ts = start + tf * np.arange(n_bars, dtype=np.int64)
            candles[_sym] = np.column_stack([ts.astype(np.float64), open_, high, low, close, vol])
        return cls(timeframe, candles)

    # ------------------------------------------------------------------ queries
    def symbol_of(self, mid: str) -> str | None:
        """Binance id (any case) -> unified symbol, or None."""
        return self.by_id.get(mid.upper())

    @property
    def first_ts(self) -> int:
        return int(min(t[0] for t in self.ts.values() if len(t)))

    @property
    def end_ts(self) -> int:
        """Close time of the last bar of any symbol."""
        return int(max(t[-1] for t in self.ts.values() if len(t))) + self.tf_ms

    def frame(self, symbol: str) -> pd.DataFrame:
        """All closed bars of ``symbol`` (for tests that compare against the source)."""
        import pandas as pd

        arr = self.ohlcv[symbol]
        return pd.DataFrame(
            {"ts": self.ts[symbol], "open": arr[:, 0], "high": arr[:, 1], "low": arr[:, 2],
             "close": arr[:, 3], "volume": arr[:, 4]}
        )

    def bar(self, symbol: str, i: int, now: int | None = None) -> Bar:
        """Bar ``i`` of ``symbol`` as seen at virtual time ``now`` (closed if ``now`` >= close)."""
        ts = int(self.ts[symbol][i])
        o, h, low, c, v = self.ohlcv[symbol][i].tolist()  # one call -> Python floats
        if now is None or now >= ts + self.tf_ms:
            return Bar(ts, o, h, low, c, v, True)
        p = max(0.0, (now - ts) / self.tf_ms)
        return Bar(ts, *partial_bar(o, h, low, c, v, p), False)

    def bars_until(self, symbol: str, now: int) -> list[Bar]:
        """What Binance's klines would list at ``now``: closed bars, then the forming one."""
        ts = self.ts[symbol]
        n = int(np.searchsorted(ts, now, side="right"))  # bars that opened at or before now
        return [self.bar(symbol, i, now) for i in range(n)]

    def index_range(self, symbol: str, lo_ts: int, hi_ts: int) -> range:
        """Indices of bars with ``lo_ts <= ts <= hi_ts``."""
        ts = self.ts[symbol]
        return range(int(np.searchsorted(ts, lo_ts, "left")), int(np.searchsorted(ts, hi_ts, "right")))


def partial_bar(o: float, h: float, low: float, c: float, v: float, p: float) -> tuple[float, ...]:
    """Forming bar at fraction ``p`` in [0, 1) of the fixed intrabar path (module docstring)."""
    path = (o, low, h, c) if c >= o else (o, h, low, c)
    pos = p * 3.0
    k = min(int(pos), 2)
    frac = pos - k
    price = path[k] + (path[k + 1] - path[k]) * frac
    seen = (*path[: k + 1], price)
    return o, max(seen), min(seen), price, v * p


def kline_row(bar: Bar, tf_ms: int) -> list:
    """One row of ``GET /api/v3/klines``, exactly Binance's 12-field layout."""
    quote_vol = bar.volume * bar.close
    return [
        bar.ts, fmt(bar.open), fmt(bar.high), fmt(bar.low), fmt(bar.close), fmt(bar.volume),
        bar.ts + tf_ms - 1, fmt(quote_vol), _n_trades(bar), fmt(bar.volume / 2),
        fmt(quote_vol / 2), "0",
    ]


def kline_event(symbol: str, interval: str, bar: Bar, tf_ms: int, event_time: int) -> dict:
    """A websocket ``kline`` stream event (Binance spot payload)."""
    mid = market_id(symbol)
    quote_vol = bar.volume * bar.close
    return {
        "e": "kline",
        "E": int(event_time),
        "s": mid,
        "k": {
            "t": bar.ts, "T": bar.ts + tf_ms - 1, "s": mid, "i": interval,
            "f": 100, "L": 100 + _n_trades(bar), "o": fmt(bar.open), "c": fmt(bar.close),
            "h": fmt(bar.high), "l": fmt(bar.low), "v": fmt(bar.volume), "n": _n_trades(bar),
            "x": bar.closed, "q": fmt(quote_vol), "V": fmt(bar.volume / 2),
            "Q": fmt(quote_vol / 2), "B": "0",
        },
    }


def kline_event_json(symbol: str, interval: str, bar: Bar, tf_ms: int, event_time: int) -> str:
    """:func:`kline_event` already serialized (the emulator's hot path; same JSON content)."""
    mid = market_id(symbol)
    quote_vol = bar.volume * bar.close
    n = _n_trades(bar)
    return (
        f'{{"e":"kline","E":{int(event_time)},"s":"{mid}","k":{{"t":{bar.ts},"T":{bar.ts + tf_ms - 1},'
        f'"s":"{mid}","i":"{interval}","f":100,"L":{100 + n},"o":"{fmt(bar.open)}",'
        f'"c":"{fmt(bar.close)}","h":"{fmt(bar.high)}","l":"{fmt(bar.low)}","v":"{fmt(bar.volume)}",'
        f'"n":{n},"x":{"true" if bar.closed else "false"},"q":"{fmt(quote_vol)}",'
        f'"V":"{fmt(bar.volume / 2)}","Q":"{fmt(quote_vol / 2)}","B":"0"}}}}'
    )


def closed_rows_json(market: MarketData, symbol: str, lo: int, hi: int) -> list[str]:
    """JSON texts of the closed klines rows ``lo .. hi-1`` of ``symbol``: the same values
    as :func:`kline_row` (a test pins it), built in one pass — Python's float ``repr`` per
    field (~2 µs each) was most of the emulator's CPU when a warm-up pages through thousands
    of bars. orjson prints the same shortest round-trip digits; a field it prints with an
    exponent or as null goes through :func:`fmt` (Binance never sends exponents)."""
    tf = market.tf_ms
    ts = market.ts[symbol][lo:hi].tolist()
    arr = market.ohlcv[symbol][lo:hi]
    v, c = arr[:, 4], arr[:, 3]
    qv = v * c
    cols = np.column_stack([arr[:, 0], arr[:, 1], arr[:, 2], c, v, qv, v / 2, qv / 2])
    flat = cols.ravel().tolist()
    texts = orjson.dumps(flat).decode()[1:-1].split(",") if flat else []
    for k, text in enumerate(texts):
        if "e" in text or "n" in text or "." not in text:
            texts[k] = fmt(flat[k])
    trades = [int(x * 10) if math.isfinite(x) else 0 for x in v.tolist()]
    out = []
    for j, t in enumerate(ts):
        f = texts[8 * j: 8 * j + 8]
        out.append(f'[{t}, "{f[0]}", "{f[1]}", "{f[2]}", "{f[3]}", "{f[4]}", '
                   f'{t + tf - 1}, "{f[5]}", {trades[j]}, "{f[6]}", "{f[7]}", "0"]')
    return out


def _n_trades(bar: Bar) -> int:
    return int(bar.volume * 10) if math.isfinite(bar.volume) else 0
