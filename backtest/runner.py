"""The backtest driver: candles → MTF ratings → signals → engine → journal, stats, report.

No trading rule lives here. Every number that decides a fill comes from the core:
:func:`tandem.core.signals.signals_from_candles` (MTF ratings and the combiner) and
:func:`tandem.core.engine.run_batch` (the numba engine loop). This module only chooses the bars,
hands them over, and writes what comes back.

Bars and time (DESIGN.md "Bars and time"): ``start``/``end`` are bar *open* times, start
inclusive, end exclusive. The first tradable bar is the first bar at or after ``start``;
the indicator state is seeded with the base bars of the ``warmup_bars × base timeframe``
before it — the same time window the daemon warms up on (``t0 − warmup_bars · tf``) — and
nothing trades during warm-up: the engine only sees bars from ``start`` on. Without
``start``, the first tradable bar is the first bar of the data plus the warm-up.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import structlog
from tandem.backtest.stats import EquityCurve, compute_stats, write_stats_json
from tandem.core.store import AlignedCandles, CandleStoreError, to_ms
from tandem.core.utc import iso_from_ms

if TYPE_CHECKING:  # a run that only writes files never imports pandas (~0.3 s a process)
    import pandas as pd
    import pyarrow as pa

log = structlog.get_logger(__name__)

Mode = Literal["discrete", "portfolio"]
#: Bars per chunk of the ratings loop; chunks only feed the progress bar (the MTF state
#: carries over exactly, so chunked and one-shot ratings are identical).
CHUNK_BARS = 2048
#: Runs smaller than this (bars × assets) get no progress bar: they finish in a blink.
PROGRESS_MIN_CELLS = 500_000


class BacktestError(Exception):
    """A run that cannot go ahead; the message says why and what to do."""


class ConfigError(BacktestError):
    """Bad configuration or arguments (CLI exit code 2)."""


class DataError(BacktestError):
    """The candles cannot serve the request: no data in range, missing symbol, corrupt file."""


@dataclass
class BacktestResult:
    """Everything a run produced (also written to ``out_dir`` when one is given).

    ``fills``, ``trades`` and ``equity`` are pandas objects built on first use from
    ``fills_table`` (Arrow), ``trade_rows`` and ``equity_values``.
    """

    profile: str
    run_id: str
    mode: str
    symbols: list[str]
    ts_close: np.ndarray  # close times of the tradable bars (int64 ms)
    fills_table: pa.Table  # the journal (core.journal schema)
    trade_rows: list[dict[str, Any]]  # core.journal.trade_rows
    equity_values: np.ndarray  # equity after each tradable bar
    stats: dict[str, Any]
    meta: dict[str, Any]  # profile hash, data range, warm-up, fingerprint...
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @cached_property
    def fills(self) -> pd.DataFrame:
        """The journal as a frame."""
        return self.fills_table.to_pandas()

    @cached_property
    def trades(self) -> pd.DataFrame:
        """:func:`tandem.core.journal.trades_table` of the fills."""
        from tandem.core.journal import trades_frame

        return trades_frame(self.trade_rows)

    @cached_property
    def equity(self) -> pd.Series:
        """Equity after each tradable bar, index = ts_close."""
        import pandas as pd

        return pd.Series(self.equity_values, index=pd.Index(self.ts_close, name="ts"),
                         name="equity")


def with_overrides(profile: Any, *, mode: Mode | None = None, warmup_bars: int | None = None) -> Any:
    """The profile with ``execution.mode`` / ``warmup_bars`` replaced, validated again.

    Going through :func:`tandem.core.manifest.parse_manifest` keeps every cross-field rule (e.g.
    portfolio mode is long-only) and its clear error messages.
    """
    if mode is None and warmup_bars is None:
        return profile
    from tandem.core.manifest import ManifestError, parse_manifest

    data = profile.model_dump(mode="json")
    if mode is not None:
        data["execution"]["mode"] = mode
    if warmup_bars is not None:
        data["warmup_bars"] = int(warmup_bars)
    name = profile.name or "profile"
    try:
        return parse_manifest({"profiles": {name: data}}, source="overrides").profile(name)
    except ManifestError as exc:
        raise ConfigError(str(exc)) from None


def default_run_id(profile: Any, symbols: Sequence[str], start_ms: int, end_ms: int) -> str:
    """Deterministic run id: same profile, assets and range → same id (so reruns are
    byte-identical, ``run_id`` column included)."""
    key = json.dumps([profile.profile_hash(), list(symbols), int(start_ms), int(end_ms)])
    return "bt-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_from_ms(ms)


def _load(
    candles: Any, symbols: list[str], timeframe: str, start: int | None, end: int | None
) -> AlignedCandles:
    """Aligned candles from a source (store, CSV folder, universe) or an AlignedCandles."""
    if isinstance(candles, AlignedCandles):
        missing = [s for s in symbols if s not in candles.symbols]
        if missing:
            raise DataError(f"no candles for {', '.join(missing)} in the given data")
        cols = [candles.symbols.index(s) for s in symbols]
        lo = 0 if start is None else int(np.searchsorted(candles.ts, start, side="left"))
        hi = len(candles.ts) if end is None else int(np.searchsorted(candles.ts, end, side="left"))
        sel = {k: getattr(candles, k)[lo:hi][:, cols] for k in ("open", "high", "low", "close",
                                                                "volume")}
        keep = ~np.all(np.isnan(sel["close"]), axis=1)  # a slice where no asset has a bar
        return AlignedCandles(ts=candles.ts[lo:hi][keep], symbols=tuple(symbols),
                              **{k: v[keep] for k, v in sel.items()})
    try:
        return candles.load_aligned(symbols, timeframe, start=start, end=end)
    except CandleStoreError as exc:
        raise DataError(str(exc)) from exc


def _coverage(candles: Any, symbols: list[str], timeframe: str) -> str:
    """'first → last' bar open times of the data (for error messages)."""
    try:
        a = _load(candles, symbols, timeframe, None, None)
    except DataError:
        return "unknown"
    if len(a.ts) == 0:
        return "no bars at all"
    return f"{_iso(int(a.ts[0]))} → {_iso(int(a.ts[-1]))}"


@dataclass
class Window:
    """The bars of one run: warm-up + tradable, and where trading starts."""

    candles: AlignedCandles  # warm-up bars followed by the tradable bars
    symbols: list[str]  # manifest order
    start_ms: int  # open time of the first tradable bar (requested or derived)
    end_ms: int | None  # exclusive end as requested
    k0: int  # row of the first tradable bar in ``candles``
    warmup_bars: int  # the profile's warm-up (base bars)
    warmup_available: int  # base-bar periods of data actually before ``start_ms`` (≤ wanted)
    base_ms: int
    no_bars: list[str] = field(default_factory=list)  # assets with no tradable bar at all
    bar_periods: int = 0  # base-bar periods from the first to the last tradable bar (gaps too)

    @property
    def first_bar_ms(self) -> int:
        """Open time of the first bar that trades: ``start_ms`` when a bar opens there; later
        when ``--from`` falls in a gap or before the data (the run id keeps the request)."""
        return int(self.candles.ts[self.k0])


def load_window(
    profile: Any,
    candles: Any,
    start: int | str | pd.Timestamp | None = None,
    end: int | str | pd.Timestamp | None = None,
    symbols: Sequence[str] | None = None,
) -> Window:
    """Load the bars a run needs: ``[start − warmup·tf, end)`` (see the module docstring).

    Raises :class:`ConfigError` for bad symbols/dates and :class:`DataError` when the data
    cannot serve the range.
    """
    from tandem.core.timeframes import timeframe_to_ms

    syms = list(profile.assets) if symbols is None else list(symbols)
    unknown = [s for s in syms if s not in profile.assets]
    if unknown:
        raise ConfigError(f"profile {profile.name!r} does not trade {', '.join(unknown)}")
    if not syms:
        raise ConfigError("no symbols to backtest")
    syms = [s for s in profile.assets if s in syms]  # engine order = manifest order
    tf = profile.base_timeframe
    base_ms = timeframe_to_ms(tf)
    warm = int(profile.warmup)
    try:
        start_ms, end_ms = to_ms(start), to_ms(end)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad date: {exc}") from None
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigError(f"--to ({_iso(end_ms)}) must be after --from ({_iso(start_ms)})")

    load_from = None if start_ms is None else start_ms - warm * base_ms
    a = _load(candles, syms, tf, load_from, end_ms)
    if start_ms is None:
        if len(a.ts) == 0:
            before = f" before {_iso(end_ms)}" if end_ms is not None else ""
            raise DataError(f"no {tf} candles for {', '.join(syms)}{before}; the data covers "
                            + _coverage(candles, syms, tf))
        start_ms = int(a.ts[0]) + warm * base_ms
    k0 = int(np.searchsorted(a.ts, start_ms, side="left"))
    if k0 >= len(a.ts):
        raise DataError(
            f"no {tf} candles to trade from {_iso(start_ms)}"
            + (f" to {_iso(end_ms)}" if end_ms is not None else "")
            + f" after a warm-up of {warm} bars; the data covers "
            + _coverage(candles, syms, tf)
            + " (pick another --from/--to, or a shorter --warmup-bars)"
        )
    # Counted up to the first tradable bar's open (--from rounded up to the grid, as the
    # daemon does), not to --from: a --from of 00:30 left the 00:00 bar out of the count.
    first_open = -(-start_ms // base_ms) * base_ms
    warm_avail = min(warm, int((first_open - int(a.ts[0])) // base_ms)) if k0 > 0 else 0
    if warm_avail < warm:
        log.warning("warmup_short", wanted_bars=warm, available_bars=warm_avail,
                    first_tradable=_iso(first_open),
                    hint="ratings of the first bars differ from a fully warmed run")
    # An asset of the run with no tradable bar (listed after --to, delisted before --from, a
    # CSV of another range) trades nothing; the run still counted it among its "N assets"
    # and said nothing. Kept (late listings are normal in a universe) but named, here and in
    # stats.json / the summary.
    no_bars = [s for j, s in enumerate(syms) if np.isnan(a.close[k0:, j]).all()]
    if no_bars:
        log.warning("assets_without_bars", count=len(no_bars), symbols=no_bars,
                    first_tradable=_iso(first_open),
                    last_bar=_iso(int(a.ts[-1])), hint="they trade nothing in this run")
    # Bar periods of the tradable span where no asset has a bar (an outage, a hole in a
    # file): the run skips them, and CAGR/Sharpe/Sortino annualize over the bars present,
    # so a two-month hole in four months doubled the CAGR without a word. Named, not
    # repaired (the statistics' definitions stay vectorbt's).
    traded = a.ts[k0:]
    periods = int((traded[-1] - traded[0]) // base_ms) + 1
    if periods > len(traded):
        steps = np.diff(traded) // base_ms
        at = int(np.argmax(steps))
        # A warning when the statistics move (1 % of the periods or more); the exchanges'
        # maintenance hours (11 of 5,493 in the shared universe) are an info line: the
        # summary's data line shows both counts either way.
        emit = log.warning if periods - len(traded) >= 0.01 * periods else log.info
        emit("data_gaps", bar_periods=periods, bars=len(traded),
                    missing=periods - len(traded), largest_gap_bars=int(steps[at]) - 1,
                    largest_gap_after=_iso(int(traded[at])),
                    hint="CAGR, Sharpe and Sortino annualize over the bars present")
    return Window(candles=a, symbols=syms, start_ms=start_ms, end_ms=end_ms, k0=k0,
                  warmup_bars=warm, warmup_available=warm_avail, base_ms=base_ms,
                  no_bars=no_bars, bar_periods=periods)


def run_backtest(
    profile: Any,
    candles: Any,
    start: int | str | pd.Timestamp | None = None,
    end: int | str | pd.Timestamp | None = None,
    out_dir: str | Path | None = None,
    *,
    symbols: Sequence[str] | None = None,
    run_id: str | None = None,
    data_label: str = "",
    chart_symbols: Sequence[str] | None = None,
    progress: bool | None = None,
    report: bool = True,
    warmup: bool | None = None,
) -> BacktestResult:
    """Backtest ``profile`` (a :class:`tandem.core.manifest.Profile`) over ``candles``.

    ``candles``: a candle source with ``load_aligned`` (:func:`tandem.core.store.open_candles`) or
    an :class:`tandem.core.store.AlignedCandles`. ``symbols``: a subset of ``profile.assets`` (in
    that order); default all. ``out_dir``: where ``fills.csv``, ``fills.parquet``,
    ``trades.csv``, ``equity.csv``, ``stats.json``, ``report.html`` and ``equity.png`` go
    (nothing is written when None). ``progress``: tqdm bar (None = on for big runs on a TTY).
    ``warmup``: on an empty numba cache, a worker process compiles the MTF loop, the signal
    combiner and the engine while this one loads the candles and compiles the rating kernel
    (:func:`tandem.core.warmup.jit_warmup`;
    True = always, False = never, None = as ``TANDEM_WARMUP`` says, by default on two or
    more CPUs).
    Raises :class:`DataError` / :class:`ConfigError` with a clear message.
    """
    from tandem.core.engine import EngineConfig, run_batch
    from tandem.core.fingerprint import run_fingerprint
    from tandem.core.journal import trade_columns, trade_rows
    from tandem.core.warmup import jit_warmup

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    # On an empty numba cache a worker compiles the MTF loop, the combiner and the engine
    # while this process loads the candles and compiles the rating kernel; each core stage
    # waits for it right before its kernels run (timings: wait_<stage>).
    with jit_warmup(profile, enabled=warmup, timings=timings):
        w = load_window(profile, candles, start, end, symbols)
        a, syms, k0, base_ms = w.candles, w.symbols, w.k0, w.base_ms
        start_ms, end_ms, warm, warm_avail = (w.start_ms, w.end_ms, w.warmup_bars,
                                              w.warmup_available)
        timings["load"] = time.perf_counter() - t_all

        ts_close_all = a.ts + base_ms
        run_end = int(a.ts[-1]) + base_ms
        rid = run_id or default_run_id(profile, syms, start_ms, end_ms if end_ms is not None
                                       else run_end)
        mode = profile.execution.mode
        log.info("backtest_start", profile=profile.name, run_id=rid, mode=mode,
                 assets=len(syms), bars=int(len(a.ts) - k0), warmup_bars=warm,
                 first_tradable=_iso(start_ms), last_bar=_iso(int(a.ts[-1])))

        # 1+2. MTF ratings and signals over warm-up + tradable bars, in chunks for the
        # progress bar; the MTF state carries over, and the combiner is stateless per bar.
        t0 = time.perf_counter()
        sig_rows, tgt_rows = _signals(profile, a, syms, progress)
        if mode == "portfolio" and not profile.portfolio.plain_score():
            from tandem.core.weighting import apply_weighting

            # core.weighting: warm-up bars feed the return window, tradable ones rebalance.
            apply_weighting(profile.portfolio, a.close, sig_rows, tgt_rows, k0)
        timings["ratings_signals"] = time.perf_counter() - t0

        # 3. The engine over the tradable bars only (warm-up never trades).
        t0 = time.perf_counter()
        trade_sig = (tgt_rows if mode == "portfolio" else sig_rows)[k0:]
        cfg = EngineConfig(**profile.engine_params())
        res = run_batch(cfg, ts_close_all[k0:], a.open[k0:], a.high[k0:], a.low[k0:],
                        a.close[k0:], trade_sig, symbols=syms, profile=profile.name, run_id=rid,
                        source="backtest")
        timings["engine"] = time.perf_counter() - t0

        # 4. Derived tables and statistics.
        t0 = time.perf_counter()
        trades = trade_rows(res.fills_table)
        # Skipped entries are a discrete-mode count (a portfolio rebalance has no entries).
        skipped = res.engine.entries_skipped() if mode == "discrete" else None
        stats = compute_stats(EquityCurve(res.ts_close, res.equity_values), trade_columns(trades),
                              res.fills_table, initial_cash=cfg.initial_cash, symbols=syms,
                              entries_skipped=skipped)
        meta = {
            "profile": profile.name,
            "profile_hash": profile.profile_hash(),
            "run_id": rid,
            "strategy": profile.strategy,
            "mode": mode,
            "mtf": profile.mtf.mode,
            "timeframes": list(profile.timeframes),
            "data": data_label,
            "n_assets": len(syms),
            "assets_without_bars": w.no_bars,
            "bar_periods": w.bar_periods,
            "first_tradable_bar": _iso(w.first_bar_ms),  # a bar, not the --from asked for
            "last_bar": _iso(int(a.ts[-1])),
            "warmup_bars": warm,
            "warmup_bars_available": warm_avail,
            "run_fingerprint": run_fingerprint(res.fills_table),
        }
        timings["stats"] = time.perf_counter() - t0
        result = BacktestResult(
            profile=profile.name, run_id=rid, mode=mode, symbols=syms,
            ts_close=ts_close_all[k0:], fills_table=res.fills_table, trade_rows=trades,
            equity_values=res.equity_values, stats=stats, meta=meta, timings=timings,
        )

        # 5. Outputs.
        if out_dir is not None:
            t0 = time.perf_counter()
            result.files = write_outputs(result, Path(out_dir), profile, a.close[k0:],
                                         chart_symbols, report)
            timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    log.info("backtest_done", run_id=rid, fills=len(res.fills_table), trades=stats["n_trades"],
             total_return=round(stats["total_return"], 6),
             **{f"t_{k}": round(v, 3) for k, v in timings.items()})
    return result


def _write_frame_csv(frame: Mapping[str, np.ndarray] | pd.DataFrame, path: Path) -> None:
    """``frame.to_csv(path, index=False)``, byte for byte, through Python's csv writer:
    pandas formats each block first, which took ~10x the writing itself. Floats print as
    their shortest round-trip repr (as pandas does), NaN and None as an empty field.
    ``frame``: a frame or its columns as arrays."""
    import csv

    names = list(frame)
    columns = []
    for name in names:
        values = np.asarray(frame[name])
        if values.dtype.kind in "fO":  # floats, and strings that may be missing (NaN)
            columns.append(["" if v != v else v for v in values.tolist()])  # v != v: NaN
        else:
            columns.append(values.tolist())
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*columns, strict=True))


def _signals(profile: Any, a: AlignedCandles, syms: list[str], progress: bool | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Discrete signals (float) and portfolio targets for every loaded bar, via the core
    (:func:`tandem.core.signals.signals_from_candles` in its two halves, chunk by chunk)."""
    from tandem.core.signals import compute_signals, ratings_from_candles
    from tandem.core.timeframes import timeframe_to_ms

    n = len(a.ts)
    if progress is None:
        import sys

        progress = n * len(syms) >= PROGRESS_MIN_CELLS and sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="bar", desc=f"ratings {len(syms)} assets", leave=False)
    sig = np.empty((n, len(syms)))
    tgt = np.empty((n, len(syms)))
    ts_close = a.ts + timeframe_to_ms(profile.base_timeframe)
    states = None
    try:
        for lo in range(0, n, CHUNK_BARS):
            hi = min(n, lo + CHUNK_BARS)
            ratings, states = ratings_from_candles(
                profile, a.ts[lo:hi], a.open[lo:hi], a.high[lo:hi], a.low[lo:hi],
                a.close[lo:hi], a.volume[lo:hi], syms, states=states,
            )
            s = compute_signals(profile, ratings, ts_close[lo:hi], syms)
            sig[lo:hi] = s.signal
            tgt[lo:hi] = s.target
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    return sig, tgt


def write_outputs(
    result: BacktestResult,
    out_dir: Path,
    profile: Any,
    close: np.ndarray,
    chart_symbols: Sequence[str] | None = None,
    report: bool = True,
) -> dict[str, Path]:
    """Write the run's files into ``out_dir``; returns ``{name: path}``. ``close``: the
    tradable bars' closes (``n_bars x n_assets``, ``result.symbols`` order), for the report."""
    from tandem.core.journal import trade_columns, trade_csv_columns, write_csv, write_parquet

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "fills.csv": out_dir / "fills.csv",
        "fills.parquet": out_dir / "fills.parquet",
        "trades.csv": out_dir / "trades.csv",
        "equity.csv": out_dir / "equity.csv",
        "stats.json": out_dir / "stats.json",
    }
    write_csv(result.fills_table, files["fills.csv"])
    write_parquet(result.fills_table, files["fills.parquet"])
    # exit_ts / duration_ms as whole ms, empty for an open trade (not 1612137600000.0)
    _write_frame_csv(trade_csv_columns(result.trade_rows), files["trades.csv"])
    ts = np.asarray(result.ts_close, dtype=np.int64)
    seconds = ts.astype("datetime64[ms]").astype("datetime64[s]")
    _write_frame_csv({"ts": ts, "time": np.char.add(np.datetime_as_string(seconds), "Z"),
                      "equity": np.asarray(result.equity_values, dtype=np.float64)},
                     files["equity.csv"])
    write_stats_json(result.stats, files["stats.json"], **result.meta)
    if not report:
        # A report left by an earlier run in the same folder would describe other fills.
        for stale in ("report.html", "equity.png"):
            (out_dir / stale).unlink(missing_ok=True)
    else:
        from tandem.backtest.plots import write_equity_png
        from tandem.backtest.report import Closes, ReportInput, write_report

        eq = EquityCurve(result.ts_close, result.equity_values)
        data = ReportInput(
            profile=result.profile, equity=eq, stats=result.stats, fills=result.fills_table,
            trades=trade_columns(result.trade_rows),
            closes=Closes(np.asarray(result.ts_close, dtype=np.int64), close,
                          list(result.symbols)),
            profile_config=profile.model_dump(mode="json"),
            meta={k: v for k, v in result.meta.items() if k != "profile"},
            initial_cash=float(profile.initial_cash),
        )
        files["report.html"] = write_report(out_dir / "report.html", data, chart_symbols)
        files["equity.png"] = write_equity_png(out_dir / "equity.png", eq,
                                               float(profile.initial_cash),
                                               title=f"{result.profile} equity")
    return files
