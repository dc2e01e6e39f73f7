"""Candle store: Parquet per exchange / symbol / base timeframe, plus read-only CSV sources.

Layout of a store rooted at ``root``::

    root/<exchange>/<BASE-QUOTE>/<timeframe>.parquet      e.g. root/binance/BTC-USDT/1h.parquet

Each file holds one table ``ts, open, high, low, close, volume`` (``ts`` int64 = bar *open*
time in ms UTC, prices/volume float64), sorted by ``ts`` with unique ``ts``.

Rules (the contract, see docs/CONTRACTS.md):

* **Append-only.** ``append`` never changes a stored bar. A new file version is written to a
  temporary file and atomically renamed over the old one, so a crash (or an interrupted
  download) leaves either the old or the new file, never a torn one. Concurrent appends to
  one file (several processes) are serialized by an advisory ``flock``.
* **Deduplicated by ts; the first written value wins.** A bar whose ``ts`` is already stored
  is dropped; if its OHLCV differ from the stored bar this is a *conflict* and is logged
  (count and first ts). Within one ``append`` batch the first occurrence of a ``ts`` wins
  the same way, except that a copy failing the per-bar checks
  (:func:`tandem.core.candles.bar_fault`) yields to the first later valid copy (the read
  policy's duplicate rule). Why first-wins: the store only receives *closed* bars, so the
  first closed value is authoritative, and re-running a download can never rewrite history
  that a backtest has already used.
* Bars with a NaN/inf price or a negative volume are rejected on ``append``
  (``ValueError``); the store does not repair bad candles (real data keeps real bad prints).
* **Reading** goes through the one source policy of :mod:`tandem.core.candles` for every source
  (store, CSV folder, universe Parquet): timestamps by type or epoch magnitude, sorted and
  deduplicated (first valid copy wins, logged), on the timeframe's grid (else :class:`CandleStoreError`),
  bad bars dropped and logged (they read as missing bars). The file itself is never changed.

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
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from tandem.core.arrow_numpy import arrow_to_numpy, numpy_to_arrow
from tandem.core.candles import (
    CandleDataError,
    clean_candles,
    first_valid_copies,
    timestamps_to_ms,
)
from tandem.core.datapaths import reads_as_csv_folder
from tandem.core.utc import ms_from_iso

try:  # POSIX only; elsewhere appends are not guarded against a concurrent writer
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:  # imported where used: the daemon reads the store without pandas
    import pandas as pd

log = structlog.get_logger(__name__)

COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_SCHEMA = pa.schema(
    [("ts", pa.int64())] + [(name, pa.float64()) for name in PRICE_COLUMNS]
)
_CSV_NAME = re.compile(r"^(?P<exchange>[^_]+)_(?P<pair>[^_]+)_(?P<tf>[^_.]+)\.csv$")

TimeLike = int | str | datetime | None  # datetime: pandas.Timestamp too


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
        import pandas as pd

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
    if isinstance(value, str) and (ms := ms_from_iso(value)) is not None:
        return ms
    import pandas as pd  # datetimes and the text forms ISO 8601 lacks

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
    import pandas as pd

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
    _check_candle_values(out.loc[:, list(PRICE_COLUMNS)].to_numpy())
    return out


Arrays = tuple[np.ndarray, np.ndarray]  # (ts int64[n], values float64[n, 5]) sorted, unique ts


def _check_candle_values(values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ValueError("candles contain NaN or inf")
    if (values[:, PRICE_COLUMNS.index("volume")] < 0).any():
        raise ValueError("candles contain negative volume")


def _candle_arrays(candles: Any) -> Arrays:
    """:func:`normalize_candles` as ``(ts, values)`` arrays; rows (ccxt's OHLCV lists, the
    daemon's REST tail) need no pandas."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(candles, pd.DataFrame):
        return _frame_arrays(normalize_candles(candles))
    arr = np.asarray(candles, dtype=object) if len(candles) else np.empty((0, 6))
    if arr.ndim != 2 or arr.shape[1] < 6:
        raise ValueError("candles must be rows of [ts, open, high, low, close, volume]")
    ts = np.asarray(arr[:, 0], dtype=np.int64)
    values = np.asarray(arr[:, 1:6], dtype=np.float64).reshape(-1, len(PRICE_COLUMNS))
    _check_candle_values(values)
    return ts, values


def _log_conflicts(symbol: str, tf: str, ts: np.ndarray, unequal: np.ndarray, where: str,
                   kept: str) -> None:
    """Log bars whose ``ts`` was already there with other values (``unequal``: per bar and
    column, sorted by ``ts``)."""
    differs = unequal.any(axis=1)
    if differs.any():
        log.warning("candle_conflict", symbol=symbol, timeframe=tf, where=where,
                    conflicts=int(differs.sum()), first_ts=int(ts[differs][0]), kept=kept)


def _bounds(ts: np.ndarray, start: TimeLike, end: TimeLike) -> tuple[int, int]:
    lo = 0 if start is None else int(np.searchsorted(ts, to_ms(start), side="left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, to_ms(end), side="left"))
    return lo, max(lo, hi)


def _to_frame(ts: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame({"ts": np.asarray(ts, dtype=np.int64)})
    for k, name in enumerate(PRICE_COLUMNS):
        frame[name] = np.asarray(values[:, k], dtype=np.float64)
    return frame


def _frame_arrays(frame: pd.DataFrame) -> Arrays:
    return (
        frame["ts"].to_numpy(np.int64),
        frame.loc[:, list(PRICE_COLUMNS)].to_numpy(np.float64).reshape(-1, len(PRICE_COLUMNS)),
    )


def _align_arrays(parts: list[Arrays], symbols: list[str] | tuple[str, ...]) -> AlignedCandles:
    # Usually every asset has the same bars: then the union is the first asset's axis, and
    # the sort behind np.unique (most of the cost on a year of 100 assets) is skipped.
    first = parts[0][0] if parts else np.empty(0, np.int64)
    same = all(np.array_equal(p[0], first) for p in parts[1:])
    ts = first if same else np.unique(np.concatenate([p[0] for p in parts]))
    cube = np.full((len(PRICE_COLUMNS), ts.shape[0], len(symbols)), np.nan)
    for j, (t, v) in enumerate(parts):
        rows = slice(None) if same else np.searchsorted(ts, t)
        cube[:, rows, j] = v.T
    return AlignedCandles(ts=ts.astype(np.int64), symbols=tuple(symbols),
                          **{name: np.ascontiguousarray(cube[k]) for k, name in enumerate(PRICE_COLUMNS)})


def align(frames: dict[str, pd.DataFrame], symbols: list[str] | tuple[str, ...]) -> AlignedCandles:
    """Put per-asset frames (sorted, unique ``ts``) on the union time axis, NaN elsewhere."""
    return _align_arrays([_frame_arrays(frames[s]) for s in symbols], symbols)


# --------------------------------------------------------------------------- sources


class _Source:
    """Reading API shared by the store and the read-only sources."""

    default_timeframe: str | None = None

    def symbols(self, timeframe: str | None = None) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    # Subclasses implement one of the two hooks; each defaults to the other.
    def _read_all(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """All bars of ``symbol`` (sorted, unique ts) as a frame."""
        return _to_frame(*self._arrays(symbol, timeframe))

    def _arrays(self, symbol: str, timeframe: str) -> Arrays:
        """All bars of ``symbol`` as ``(ts, values)`` arrays (the fast path)."""
        return _frame_arrays(self._read_all(symbol, timeframe))

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
        return _to_frame(*self.read_arrays(symbol, start, end, timeframe=timeframe))

    def read_arrays(
        self, symbol: str, start: TimeLike = None, end: TimeLike = None, *, timeframe: str | None = None
    ) -> Arrays:
        """:meth:`read` as arrays: ``ts`` (int64) and ``values`` ``(n, 5)`` o, h, l, c, v
        (no DataFrame: the daemon's warm-up reads hundreds of symbols at a start)."""
        ts, values = self._arrays(symbol, self._tf(timeframe))
        lo, hi = _bounds(ts, start, end)
        return ts[lo:hi], values[lo:hi]

    def last_ts(self, symbol: str, *, timeframe: str | None = None) -> int | None:
        """Open time of the newest stored bar, or ``None`` when nothing is stored."""
        try:
            ts, _ = self._arrays(symbol, self._tf(timeframe))
        except SymbolNotFoundError:
            return None
        return int(ts[-1]) if len(ts) else None

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
        parts = []
        for ts, values in self._arrays_many(syms, tf):
            lo, hi = _bounds(ts, start, end)
            parts.append((ts[lo:hi], values[lo:hi]))
        return _align_arrays(parts, syms)

    def _arrays_many(self, symbols: list[str], timeframe: str) -> list[Arrays]:
        """:meth:`_arrays` of several symbols, in order (the first error is raised)."""
        return [self._arrays(sym, timeframe) for sym in symbols]


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

    def _raw_arrays(self, symbol: str, timeframe: str) -> Arrays:
        """The file's rows as stored (ts in ms, file order): what ``append`` merges into."""
        path = self.path(symbol, timeframe)
        if not path.is_file():
            raise self._missing(symbol, timeframe, f"store {self.root / self.exchange}")
        try:
            # ParquetFile.read: ~1/3 less overhead per file than read_table's dataset path.
            table = pq.ParquetFile(path, pre_buffer=False).read(use_threads=False)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise CandleStoreError(f"corrupt candle file {path}: {exc}") from exc
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise CandleStoreError(f"corrupt candle file {path}: missing columns {missing}")
        try:
            ts = timestamps_to_ms(table.column("ts"), str(path))
        except CandleDataError as exc:
            raise CandleStoreError(str(exc)) from None
        values = np.column_stack([_numbers(table.column(c), c, str(path)).astype(np.float64, copy=False)
                                  for c in PRICE_COLUMNS])
        return ts, values.reshape(-1, len(PRICE_COLUMNS))

    def _arrays(self, symbol: str, timeframe: str) -> Arrays:
        ts, values = self._raw_arrays(symbol, timeframe)
        return _clean(ts, values, timeframe, str(self.path(symbol, timeframe)))

    def _arrays_many(self, symbols: list[str], timeframe: str) -> list[Arrays]:
        # One file per symbol: decode them on a few threads (pyarrow releases the GIL while
        # it reads and decodes; ~2x on two cores for a 100-asset universe). map() yields in
        # order, so the first failing symbol raises, as in a sequential read.
        if len(symbols) < 8:
            return super()._arrays_many(symbols, timeframe)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda sym: self._arrays(sym, timeframe), symbols))

    def append(self, symbol: str, candles: Any, *, timeframe: str | None = None) -> int:
        """Add bars (deduplicated, first written wins); return how many new bars were stored.
        Works on arrays: rows (the daemon's REST tail) are stored without importing pandas."""
        tf = self._tf(timeframe)
        ts, values = _candle_arrays(candles)
        if not len(ts):
            return 0
        # Inside the batch the first *valid* copy of a ts wins (the read policy's rule,
        # core.candles.first_valid_copies; stable sort keeps input order): a malformed first
        # copy stored over a good later one would read as a missing bar for ever.
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        if len(ts) > 1 and (ts[1:] == ts[:-1]).any():
            kept = first_valid_copies(ts, values)
            dup = np.ones(len(ts), dtype=bool)
            dup[kept] = False
            group = np.cumsum(np.concatenate([[True], ts[1:] != ts[:-1]])) - 1
            _log_conflicts(symbol, tf, ts[dup], values[dup] != values[kept[group[dup]]], "batch",
                           "first valid")
            ts, values = ts[kept], values[kept]
        path = self.path(symbol, tf)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(path.parent / f".{tf}.lock"):  # read-merge-write by one writer at a time
            # The rows as stored (not the read policy's view): append never drops a stored bar.
            if path.is_file():
                old_ts, old_values = self._raw_arrays(symbol, tf)
            else:
                old_ts, old_values = np.empty(0, np.int64), np.empty((0, len(PRICE_COLUMNS)))
            if len(old_ts):
                known = np.isin(ts, old_ts)
                if known.any():
                    by_ts = np.argsort(old_ts, kind="stable")
                    at = by_ts[np.searchsorted(old_ts[by_ts], ts[known])]
                    _log_conflicts(symbol, tf, ts[known], values[known] != old_values[at],
                                   "stored", "stored")
                ts, values = ts[~known], values[~known]
                if not len(ts):
                    return 0
                all_ts = np.concatenate([old_ts, ts])
                order = np.argsort(all_ts, kind="stable")
                self._write(path, all_ts[order], np.concatenate([old_values, values])[order])
            else:
                self._write(path, ts, values)
        return int(len(ts))

    def _write(self, path: Path, ts: np.ndarray, values: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = [numpy_to_arrow(ts, pa.int64())] + [
            numpy_to_arrow(values[:, k], pa.float64()) for k in range(len(PRICE_COLUMNS))]
        table = pa.Table.from_arrays(columns, schema=_SCHEMA)
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
        self._cache: dict[tuple[str, str], Arrays] = {}

    def symbols(self, timeframe: str | None = None) -> list[str]:
        tf = self._tf(timeframe)
        return sorted(sym for sym, t in self._files if t == tf)

    def _arrays(self, symbol: str, timeframe: str) -> Arrays:
        key = (symbol, timeframe)
        if key not in self._cache:
            path = self._files.get(key)
            if path is None:
                raise self._missing(symbol, timeframe, f"CSV folder {self.folder}")
            self._cache[key] = _clean(*_read_csv(path), timeframe, str(path))
        return self._cache[key]

    def _missing(self, symbol: str, timeframe: str, where: str) -> SymbolNotFoundError:
        if self.symbols(timeframe):
            return super()._missing(symbol, timeframe, where)
        # Nothing of this timeframe (and exchange): say what is there and what is expected,
        # not just "available: none" (e.g. coinbase files for a binance profile).
        found = sorted(p.name for p in self.folder.glob("*.csv"))
        shown = ", ".join(found[:10]) + (f" ... ({len(found)} files)" if len(found) > 10 else "")
        pair = symbol_to_filename(symbol) if "/" in symbol or "-" in symbol else "BASE-QUOTE"
        return SymbolNotFoundError(
            f"no {timeframe} candles for {symbol} in CSV folder {self.folder}: expected a file "
            f"named {self.exchange or '<exchange>'}_{pair}_{timeframe}.csv "
            f"(<exchange>_<BASE-QUOTE>_<timeframe>.csv); found: {shown or 'no .csv files'}"
        )


def _numbers(column: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    """A Parquet price/volume column as NumPy: numbers as stored (nulls read as NaN: a bad
    bar, dropped by the policy); text only where it reads as a number, as in a CSV. Anything
    else is refused naming the row (it crashed in ``astype`` with a traceback)."""
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return arrow_to_numpy(column)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        raise CandleStoreError(f"{where}: column {name!r} is {t}, not numbers")
    out = np.empty(len(column))
    for i, v in enumerate(column.to_pylist()):
        try:
            out[i] = np.nan if v is None else float(v)
        except ValueError:
            raise CandleStoreError(f"{where}: {name} {v[:40]!r} at row {i} is not a number") from None
    return out


def _read_csv(path: Path) -> Arrays:
    """A candle CSV's rows (file order) with ts in ms: timestamps by type or magnitude."""
    import pandas as pd

    try:
        raw = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for unreadable text
        raise CandleStoreError(f"bad candle CSV {path}: {str(exc)[:200]}") from None
    ts_col = "ts" if "ts" in raw.columns and "timestamp" not in raw.columns else "timestamp"
    missing = [c for c in (ts_col, *PRICE_COLUMNS) if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns[:8]))
        raise CandleStoreError(
            f"bad candle CSV {path}: missing columns {missing} (found: {found}); a candle CSV "
            f"has the lower-case header timestamp (or ts),{','.join(PRICE_COLUMNS)}")
    if raw.empty:  # a header only: a run traded the asset as present with no bar, exit 0
        raise CandleStoreError(f"bad candle CSV {path}: a header and no candle rows")
    try:
        ts = timestamps_to_ms(raw[ts_col], str(path))
    except CandleDataError as exc:
        raise CandleStoreError(str(exc)) from None
    cols = []
    for name in PRICE_COLUMNS:
        col = pd.to_numeric(raw[name], errors="coerce")
        text = col.isna() & raw[name].notna()
        if text.any():
            i = int(np.argmax(text.to_numpy()))
            raise CandleStoreError(f"bad candle CSV {path}: {name} {str(raw[name].iloc[i])[:40]!r} "
                                   f"at row {i} is not a number")
        cols.append(col.to_numpy(np.float64))
    return ts, np.column_stack(cols).reshape(-1, len(PRICE_COLUMNS))


class UniverseParquetSource(_Source):
    """Read-only long-format Parquet (``symbol, timestamp, open … volume``) of one timeframe."""

    def __init__(self, path: str | Path, timeframe: str | None = None):
        self.path = Path(path)
        if timeframe is None:  # e.g. binance_USDT_1h_universe.parquet
            m = re.search(r"_(\d+[smhdwMy])_", self.path.name)
            timeframe = m.group(1) if m else None
        self.default_timeframe = timeframe
        try:
            # ParquetFile.read as for the store's files: no dataset layer, one chunk per column.
            # The symbols come dictionary-encoded straight from the file: no pyarrow.compute
            # (~0.1 s to import) and no per-row string objects.
            pf = pq.ParquetFile(self.path)
            if "symbol" in pf.schema_arrow.names:
                pf = pq.ParquetFile(self.path, read_dictionary=["symbol"])
            table = pf.read()
        except Exception as exc:
            raise CandleStoreError(f"corrupt or unreadable parquet {self.path}: {exc}") from exc
        names = set(table.column_names)
        ts_col = "timestamp" if "timestamp" in names else "ts"
        missing = [c for c in ("symbol", ts_col, *PRICE_COLUMNS) if c not in names]
        if missing:
            missing = ["timestamp (or ts)" if c == "ts" else c for c in missing]  # not just 'ts'
            raise CandleStoreError(f"{self.path} is not a long-format universe (missing "
                                   f"{', '.join(missing)}; found {', '.join(sorted(names))[:200]})")
        # Rows grouped by symbol (a stable sort: file order within a symbol); each symbol's
        # rows are sorted by ts only when it is read, so a run of 10 pairs of a 100-pair
        # universe sorts and copies only those 10.
        symbol_col = table.column("symbol")
        if symbol_col.null_count:  # a bar of no asset: refused, not guessed
            import pyarrow.compute as pc

            row = int(np.argmax(arrow_to_numpy(pc.is_null(symbol_col).cast(pa.int8()))))
            raise CandleStoreError(f"{self.path}: {symbol_col.null_count} row(s) have no "
                                   f"symbol (first: row {row})")
        if not pa.types.is_dictionary(symbol_col.type):  # symbols that are not text
            import pyarrow.compute as pc

            symbol_col = pc.dictionary_encode(symbol_col)
        symbol_col = symbol_col.unify_dictionaries().combine_chunks()  # one shared dictionary
        codes = arrow_to_numpy(symbol_col.indices).astype(np.int64)
        uniques = symbol_col.dictionary.to_pylist()
        try:  # an Arrow timestamp column by its unit, integer epochs by magnitude
            ts = timestamps_to_ms(table.column(ts_col), str(self.path))
        except CandleDataError as exc:
            raise CandleStoreError(str(exc)) from None
        by_symbol = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[by_symbol], np.arange(len(uniques) + 1))
        self._rows = {str(n): by_symbol[bounds[i]:bounds[i + 1]] for i, n in enumerate(uniques)}
        # One asset spelled two ways (BTC/USDT and BTCUSDT or btc/usdt): each spelling read
        # as a thinned series, refused as "not 1h data"; name the spellings instead.
        self._spellings: dict[str, list[str]] = {}
        for name in self._rows:
            self._spellings.setdefault(_spelling_key(name), []).append(name)
        self._ts = ts
        self._columns = [_numbers(table.column(c), c, str(self.path)) for c in PRICE_COLUMNS]
        self._cache: dict[str, Arrays] = {}

    def symbols(self, timeframe: str | None = None) -> list[str]:
        return sorted(self._rows) if self._tf(timeframe) == self.default_timeframe else []

    def _arrays(self, symbol: str, timeframe: str) -> Arrays:
        if timeframe != self.default_timeframe:
            # One timeframe per file, read from its name: say so ("available: none" hid why).
            held = (f"its name says {self.default_timeframe}" if self.default_timeframe else
                    "its name carries no timeframe (like binance_USDT_1h_universe.parquet)")
            raise SymbolNotFoundError(f"no {timeframe} candles for {symbol} in universe "
                                      f"{self.path}: {held}")
        if symbol not in self._rows:
            raise self._missing(symbol, timeframe, f"universe {self.path}")
        spelled = self._spellings.get(_spelling_key(symbol), [symbol])
        if len(spelled) > 1:
            counts = ", ".join(f"{n!r} ({len(self._rows[n])} rows)" for n in sorted(spelled))
            raise CandleStoreError(f"universe {self.path}: {symbol} is spelled {len(spelled)} "
                                   f"ways: {counts}; write one symbol per asset (BASE/QUOTE)")
        if symbol not in self._cache:
            rows = self._rows[symbol]
            # A stable sort by ts: among duplicate ts the first row in the file comes first,
            # and the policy dedups (the first valid row wins).
            rows = rows[np.argsort(self._ts[rows], kind="stable")]
            values = np.column_stack([c[rows].astype(np.float64, copy=False) for c in self._columns])
            ts, values = _clean(self._ts[rows], values, timeframe, f"{self.path}:{symbol}")
            self._cache[symbol] = (ts, values)
        return self._cache[symbol]


def _spelling_key(symbol: str) -> str:
    """``BTC/USDT``, ``BTCUSDT``, ``btc-usdt`` -> ``BTCUSDT``: spellings of one asset."""
    return re.sub(r"[/\-_:]", "", symbol).upper()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An advisory inter-process lock (flock) around one file's read-merge-write."""
    with open(lock_path, "a+") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _clean(ts: np.ndarray, values: np.ndarray, timeframe: str, where: str) -> Arrays:
    """The one read policy (:func:`tandem.core.candles.clean_candles`), errors as CandleStoreError."""
    try:
        return clean_candles(ts, values, timeframe, where)
    except CandleDataError as exc:
        raise CandleStoreError(str(exc)) from None


def open_candles(
    path: str | Path, exchange: str | None = None, timeframe: str | None = "1h"
) -> CandleStore | CsvFolderSource | UniverseParquetSource:
    """Open a candle source by what is at ``path``.

    A ``.parquet`` file -> :class:`UniverseParquetSource`; a folder holding ``*.csv`` (and
    no ``<exchange>/`` store folder) -> :class:`CsvFolderSource`; otherwise a
    :class:`CandleStore` rooted there. A missing path is an error (a typo must not read as
    an empty store). ``exchange``: the profile's venue (None = not known: ``binance`` for
    the store and CSV names); a universe file named for another venue is refused.
    """
    p = Path(path)
    if not p.exists():
        raise CandleStoreError(f"candle data path {p} does not exist")
    if p.is_file():
        if p.suffix == ".parquet":
            _check_universe_venue(p, exchange)
            return UniverseParquetSource(p)
        raise CandleStoreError(f"{p} is neither a folder nor a .parquet universe file")
    exchange = exchange or "binance"
    if reads_as_csv_folder(p, exchange):
        return CsvFolderSource(p, exchange=exchange, timeframe=timeframe)
    return CandleStore(p, exchange=exchange, timeframe=timeframe)


def _check_universe_venue(path: Path, exchange: str | None) -> None:
    """``binance_USDT_1h_universe.parquet`` for a bybit profile: refused as the store and
    the CSV folder refuse another venue's files (they read ``<exchange>/`` and
    ``<exchange>_*.csv`` only); a universe file was read whatever its venue, so a bybit or
    okx backtest silently ran on Binance's prices. Names without a ccxt id prefix pass."""
    named = path.name.split("_", 1)[0] if "_" in path.name else None
    if exchange is None or named is None or named == exchange:
        return
    from tandem.core.manifest import _ccxt_exchanges  # lazy: the manifest model imports pydantic

    if named in _ccxt_exchanges():
        raise CandleStoreError(
            f"universe {path}: its name says {named} candles, but the profile trades on "
            f"{exchange}; use {exchange} candles (or rename the file if that is intended)")
