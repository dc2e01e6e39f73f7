"""Candle store: Parquet per exchange / symbol / base timeframe, plus read-only CSV sources.

Layout of a store rooted at ``root``::

    root/<exchange>/<BASE-QUOTE>/<timeframe>.parquet      e.g. root/binance/BTC-USDT/1h.parquet

Each file holds one table ``ts, open, high, low, close, volume`` (``ts`` int64 = bar *open*
time in ms UTC, prices/volume float64), sorted by ``ts`` with unique ``ts``.

Rules (the contract, see docs/CONTRACTS.md):

* **Append-only.** ``append`` never changes a stored bar. A new file version is written to a
  temporary file and atomically renamed over the old one, so a crash (or an interrupted
  download) leaves either the old or the new file, never a torn one.
* **Deduplicated by ts; the first written value wins.** A bar whose ``ts`` is already stored
  is dropped; if its OHLCV differ from the stored bar this is a *conflict* and is logged
  (count and first ts). Within one ``append`` batch the first occurrence of a ``ts`` wins
  the same way. Why first-wins: the store only receives *closed* bars, so the first
  closed value is authoritative, and re-running a download can never rewrite history that
  a backtest has already used.
* Bars with a NaN/inf price or a negative volume are rejected (``ValueError``); the store
  does not repair bad candles (real data keeps real bad prints).

Read-only sources with the same reading API (``symbols``, ``read``, ``last_ts``,
``load_aligned``): :class:`CsvFolderSource` (``<exchange>_<BASE-QUOTE>_<tf>.csv`` files, the
``../shared/data`` format) and :class:`UniverseParquetSource` (long format: ``symbol``,
``timestamp``, ``open`` … ``volume``). :func:`open_candles` picks the right one for a path.

Time ranges: ``start`` is inclusive and ``end`` exclusive, both on the bar *open* time;
either may be ``None`` (unbounded), an int (ms) or a string of digits (ms), or anything
else ``pandas.Timestamp`` accepts (naive values are taken as UTC).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import structlog

log = structlog.get_logger(__name__)

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_SCHEMA = pa.schema(
    [("ts", pa.int64())] + [(name, pa.float64()) for name in PRICE_COLUMNS]
)
_CSV_NAME = re.compile(r"^(?P<exchange>[^_]+)_(?P<pair>[^_]+)_(?P<tf>[^_.]+)\.csv$")

TimeLike = int | str | pd.Timestamp | None


class CandleStoreError(Exception):
    """Any error reading or writing candles (corrupt file, bad input, ...)."""


class SymbolNotFoundError(CandleStoreError, KeyError):
    """The requested symbol/timeframe has no candles in this source."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else "symbol not found"


@dataclass(frozen=True)
class AlignedCandles:
    """Candles of several assets on one time axis.

    ``ts`` holds the union of all assets' bar open times (int64 ms, sorted, unique);
    ``open`` … ``volume`` are ``n_bars × n_assets`` float64 arrays with NaN where an asset
    has no bar at that ``ts``. Column ``j`` belongs to ``symbols[j]``.
    """

    ts: np.ndarray
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @property
    def n_bars(self) -> int:
        return int(self.ts.shape[0])

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    def asset(self, symbol: str) -> pd.DataFrame:
        """One asset's bars (rows where it has a bar) as a ``ts, open, ... volume`` frame."""
        j = self.symbols.index(symbol)
        have = ~np.isnan(self.close[:, j])
        return pd.DataFrame(
            {
                "ts": self.ts[have],
                "open": self.open[have, j],
                "high": self.high[have, j],
                "low": self.low[have, j],
                "close": self.close[have, j],
                "volume": self.volume[have, j],
            }
        )


# --------------------------------------------------------------------------- helpers


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds in a ccxt timeframe string (``"1h" -> 3_600_000``)."""
    match = re.fullmatch(r"(\d+)([smhdwMy])", timeframe)
    if not match:
        raise CandleStoreError(f"unknown timeframe {timeframe!r}")
    unit_s = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
    return int(match.group(1)) * unit_s[match.group(2)] * 1000


def to_ms(value: TimeLike) -> int | None:
    """Convert a time bound to int ms UTC (``None`` stays ``None``; naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # a command line's "1700000000000": ms, not a date
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1_000_000)


def symbol_to_filename(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC-USDT`` (the ../shared/data spelling; '/' cannot be a file name)."""
    if not symbol or "/" not in symbol and "-" not in symbol:
        raise CandleStoreError(f"symbol must look like BASE/QUOTE, got {symbol!r}")
    return symbol.replace("/", "-").replace(":", "_")


def filename_to_symbol(name: str) -> str:
    """Inverse of :func:`symbol_to_filename` (``BTC-USDT`` -> ``BTC/USDT``)."""
    base, _, quote = name.partition("-")
    return f"{base}/{quote}".replace("_", ":")


def normalize_candles(data: Any) -> pd.DataFrame:
    """Coerce a frame / array / list of ``[ts, o, h, l, c, v]`` rows to the store schema.

    Accepts a DataFrame with ``ts`` or ``timestamp`` column, or any 2-D array-like of six
    columns (e.g. ccxt ``fetch_ohlcv`` rows). Raises ``ValueError`` on NaN/inf prices or
    negative volume. The result keeps input order (dedup/sort happen in ``append``).
    """
    if isinstance(data, pd.DataFrame):
        frame = data.rename(columns={"timestamp": "ts"})
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"candles lack columns {missing}")
        frame = frame.loc[:, list(COLUMNS)]
    else:
        arr = np.asarray(data, dtype=object) if len(data) else np.empty((0, 6))
        if arr.ndim != 2 or arr.shape[1] < 6:
            raise ValueError("candles must be rows of [ts, open, high, low, close, volume]")
        frame = pd.DataFrame(arr[:, :6], columns=list(COLUMNS))
    out = pd.DataFrame({"ts": np.asarray(frame["ts"], dtype=np.int64)})
    for name in PRICE_COLUMNS:
        out[name] = np.asarray(frame[name], dtype=np.float64)
    values = out.loc[:, list(PRICE_COLUMNS)].to_numpy()
    if not np.isfinite(values).all():
        raise ValueError("candles contain NaN or inf")
    if (out["volume"].to_numpy() < 0).any():
        raise ValueError("candles contain negative volume")
    return out


def _slice(frame: pd.DataFrame, start: TimeLike, end: TimeLike) -> pd.DataFrame:
    ts = frame["ts"].to_numpy()
    lo = 0 if start is None else int(np.searchsorted(ts, to_ms(start), side="left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, to_ms(end), side="left"))
    return frame.iloc[lo:hi].reset_index(drop=True)


def align(frames: dict[str, pd.DataFrame], symbols: list[str] | tuple[str, ...]) -> AlignedCandles:
    """Put per-asset frames (sorted, unique ``ts``) on the union time axis, NaN elsewhere."""
    all_ts = [frames[s]["ts"].to_numpy(np.int64) for s in symbols]
    ts = np.unique(np.concatenate(all_ts)) if all_ts else np.empty(0, np.int64)
    shape = (ts.shape[0], len(symbols))
    arrays = {name: np.full(shape, np.nan) for name in PRICE_COLUMNS}
    for j, sym in enumerate(symbols):
        rows = np.searchsorted(ts, all_ts[j])
        for name in PRICE_COLUMNS:
            arrays[name][rows, j] = frames[sym][name].to_numpy(np.float64)
    return AlignedCandles(ts=ts, symbols=tuple(symbols), **arrays)


# --------------------------------------------------------------------------- sources


class _Source:
    """Reading API shared by the store and the read-only sources."""

    default_timeframe: str | None = None

    def symbols(self, timeframe: str | None = None) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def _read_all(self, symbol: str, timeframe: str) -> pd.DataFrame:  # pragma: no cover
        raise NotImplementedError

    def _tf(self, timeframe: str | None) -> str:
        tf = timeframe or self.default_timeframe
        if tf is None:
            raise CandleStoreError("no timeframe given and the source has no default")
        return tf

    def _missing(self, symbol: str, timeframe: str, where: str) -> SymbolNotFoundError:
        have = self.symbols(timeframe)
        shown = ", ".join(have[:20]) + (" ..." if len(have) > 20 else "")
        return SymbolNotFoundError(
            f"no {timeframe} candles for {symbol} in {where} (available: {shown or 'none'})"
        )

    def read(
        self, symbol: str, start: TimeLike = None, end: TimeLike = None, *, timeframe: str | None = None
    ) -> pd.DataFrame:
        """One symbol's bars with ``start <= ts < end`` as a ``ts, open, ..., volume`` frame."""
        return _slice(self._read_all(symbol, self._tf(timeframe)), start, end)

    def last_ts(self, symbol: str, *, timeframe: str | None = None) -> int | None:
        """Open time of the newest stored bar, or ``None`` when nothing is stored."""
        try:
            frame = self._read_all(symbol, self._tf(timeframe))
        except SymbolNotFoundError:
            return None
        return int(frame["ts"].iloc[-1]) if len(frame) else None

    def load_aligned(
        self,
        symbols: list[str] | tuple[str, ...] | None = None,
        timeframe: str | None = None,
        start: TimeLike = None,
        end: TimeLike = None,
    ) -> AlignedCandles:
        """Several symbols on one time axis (see :class:`AlignedCandles`); ``None`` = all."""
        tf = self._tf(timeframe)
        syms = list(symbols) if symbols is not None else self.symbols(tf)
        if len(set(syms)) != len(syms):
            raise CandleStoreError(f"duplicate symbols in {syms}")
        frames = {s: self.read(s, start, end, timeframe=tf) for s in syms}
        return align(frames, syms)


class CandleStore(_Source):
    """Writable Parquet candle store for one exchange (see the module docstring)."""

    def __init__(self, root: str | Path, exchange: str = "binance", timeframe: str | None = "1h"):
        self.root = Path(root)
        self.exchange = exchange
        self.default_timeframe = timeframe

    def path(self, symbol: str, timeframe: str | None = None) -> Path:
        """File holding ``symbol``'s bars of ``timeframe``."""
        return self.root / self.exchange / symbol_to_filename(symbol) / f"{self._tf(timeframe)}.parquet"

    def symbols(self, timeframe: str | None = None) -> list[str]:
        tf = self._tf(timeframe)
        base = self.root / self.exchange
        if not base.is_dir():
            return []
        return sorted(filename_to_symbol(p.name) for p in base.iterdir() if (p / f"{tf}.parquet").is_file())

    def _read_all(self, symbol: str, timeframe: str) -> pd.DataFrame:
        path = self.path(symbol, timeframe)
        if not path.is_file():
            raise self._missing(symbol, timeframe, f"store {self.root / self.exchange}")
        try:
            table = pq.read_table(path)
            frame = table.to_pandas()
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise CandleStoreError(f"corrupt candle file {path}: {exc}") from exc
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise CandleStoreError(f"corrupt candle file {path}: missing columns {missing}")
        return frame.loc[:, list(COLUMNS)].astype({"ts": np.int64} | dict.fromkeys(PRICE_COLUMNS, np.float64))

    def append(self, symbol: str, candles: Any, *, timeframe: str | None = None) -> int:
        """Add bars (deduplicated, first written wins); return how many new bars were stored."""
        tf = self._tf(timeframe)
        new = normalize_candles(candles)
        if new.empty:
            return 0
        # First occurrence of a ts inside the batch wins (stable sort keeps input order).
        new = new.sort_values("ts", kind="stable")
        dup_in_batch = new["ts"].duplicated(keep="first")
        if dup_in_batch.any():
            self._log_conflicts(symbol, tf, new, dup_in_batch, "batch")
            new = new[~dup_in_batch]
        path = self.path(symbol, tf)
        old = self._read_all(symbol, tf) if path.is_file() else None
        if old is not None and len(old):
            known = np.isin(new["ts"].to_numpy(), old["ts"].to_numpy())
            if known.any():
                self._log_stored_conflicts(symbol, tf, old, new[known])
            new = new[~known]
            if new.empty:
                return 0
            merged = pd.concat([old, new], ignore_index=True).sort_values("ts", kind="stable")
        else:
            merged = new
        self._write(path, merged)
        return int(len(new))

    def _log_conflicts(self, symbol: str, tf: str, batch: pd.DataFrame, dup: pd.Series, where: str) -> None:
        firsts = batch[~dup].set_index("ts")
        later = batch[dup]
        differs = later.set_index("ts").ne(firsts.loc[later["ts"]]).any(axis=1)
        if differs.any():
            log.warning(
                "candle_conflict", symbol=symbol, timeframe=tf, where=where,
                conflicts=int(differs.sum()), first_ts=int(differs[differs].index[0]), kept="first",
            )

    def _log_stored_conflicts(self, symbol: str, tf: str, old: pd.DataFrame, dupes: pd.DataFrame) -> None:
        stored = old.set_index("ts").loc[dupes["ts"]]
        differs = dupes.set_index("ts").ne(stored).any(axis=1)
        if differs.any():
            log.warning(
                "candle_conflict", symbol=symbol, timeframe=tf, where="stored",
                conflicts=int(differs.sum()), first_ts=int(differs[differs].index[0]), kept="stored",
            )

    def _write(self, path: Path, frame: pd.DataFrame) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame.reset_index(drop=True), schema=_SCHEMA, preserve_index=False)
        # Write-then-rename: readers and crashes only ever see a complete file.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class CsvFolderSource(_Source):
    """Read-only folder of ``<exchange>_<BASE-QUOTE>_<tf>.csv`` files (``../shared/data``)."""

    def __init__(self, folder: str | Path, exchange: str | None = None, timeframe: str | None = "1h"):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CandleStoreError(f"CSV folder {self.folder} does not exist")
        self.exchange = exchange
        self.default_timeframe = timeframe
        self._files: dict[tuple[str, str], Path] = {}
        for path in sorted(self.folder.glob("*.csv")):
            m = _CSV_NAME.match(path.name)
            if not m or (exchange is not None and m["exchange"] != exchange):
                continue
            key = (filename_to_symbol(m["pair"]), m["tf"])
            if key in self._files:
                raise CandleStoreError(
                    f"{key[0]} {key[1]} is in two files: {self._files[key].name}, {path.name}; "
                    "pass exchange= to choose"
                )
            self._files[key] = path
        self._cache: dict[tuple[str, str], pd.DataFrame] = {}

    def symbols(self, timeframe: str | None = None) -> list[str]:
        tf = self._tf(timeframe)
        return sorted(sym for sym, t in self._files if t == tf)

    def _read_all(self, symbol: str, timeframe: str) -> pd.DataFrame:
        key = (symbol, timeframe)
        if key not in self._cache:
            path = self._files.get(key)
            if path is None:
                raise self._missing(symbol, timeframe, f"CSV folder {self.folder}")
            try:
                raw = pd.read_csv(path)
                frame = normalize_candles(raw)
            except Exception as exc:
                raise CandleStoreError(f"bad candle CSV {path}: {exc}") from exc
            self._cache[key] = _sorted_unique(frame, str(path))
        return self._cache[key]


class UniverseParquetSource(_Source):
    """Read-only long-format Parquet (``symbol, timestamp, open … volume``) of one timeframe."""

    def __init__(self, path: str | Path, timeframe: str | None = None):
        self.path = Path(path)
        if timeframe is None:  # e.g. binance_USDT_1h_universe.parquet
            m = re.search(r"_(\d+[smhdwMy])_", self.path.name)
            timeframe = m.group(1) if m else None
        self.default_timeframe = timeframe
        try:
            frame = pd.read_parquet(self.path)
        except Exception as exc:
            raise CandleStoreError(f"corrupt or unreadable parquet {self.path}: {exc}") from exc
        if "symbol" not in frame.columns:
            raise CandleStoreError(f"{self.path} is not a long-format universe (no 'symbol' column)")
        # Index rows by symbol once; each symbol's frame is built (and checked) on first read.
        codes, names = pd.factorize(frame["symbol"].astype(str), sort=True)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        self._raw = frame.iloc[order].reset_index(drop=True)
        self._rows = {str(n): (int(bounds[i]), int(bounds[i + 1])) for i, n in enumerate(names)}
        self._cache: dict[str, pd.DataFrame] = {}

    def symbols(self, timeframe: str | None = None) -> list[str]:
        return sorted(self._rows) if self._tf(timeframe) == self.default_timeframe else []

    def _read_all(self, symbol: str, timeframe: str) -> pd.DataFrame:
        if timeframe != self.default_timeframe or symbol not in self._rows:
            raise self._missing(symbol, timeframe, f"universe {self.path}")
        if symbol not in self._cache:
            lo, hi = self._rows[symbol]
            try:
                frame = normalize_candles(self._raw.iloc[lo:hi])
            except ValueError as exc:
                raise CandleStoreError(f"bad candles for {symbol} in {self.path}: {exc}") from exc
            self._cache[symbol] = _sorted_unique(frame, f"{self.path}:{symbol}")
        return self._cache[symbol]


def _sorted_unique(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Sort by ts; duplicates in a read-only source: first wins, logged."""
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    dup = frame["ts"].duplicated(keep="first")
    if dup.any():
        log.warning("candle_duplicates", source=where, dropped=int(dup.sum()), kept="first")
        frame = frame[~dup].reset_index(drop=True)
    return frame


def open_candles(
    path: str | Path, exchange: str = "binance", timeframe: str | None = "1h"
) -> CandleStore | CsvFolderSource | UniverseParquetSource:
    """Open a candle source by what is at ``path``.

    A ``.parquet`` file -> :class:`UniverseParquetSource`; a folder holding ``*.csv`` (and
    no ``<exchange>/`` store folder) -> :class:`CsvFolderSource`; otherwise a
    :class:`CandleStore` rooted there. A missing path is an error (a typo must not read as
    an empty store).
    """
    p = Path(path)
    if not p.exists():
        raise CandleStoreError(f"candle data path {p} does not exist")
    if p.is_file():
        if p.suffix == ".parquet":
            return UniverseParquetSource(p)
        raise CandleStoreError(f"{p} is neither a folder nor a .parquet universe file")
    if not (p / exchange).is_dir() and any(p.glob("*.csv")):
        return CsvFolderSource(p, exchange=exchange, timeframe=timeframe)
    return CandleStore(p, exchange=exchange, timeframe=timeframe)
