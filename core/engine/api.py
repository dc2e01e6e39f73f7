"""Python faces of the engine: :class:`Engine` (per-slice, for the daemon) and
:func:`run_batch` (whole history, for the backtest). Both call the same numba kernel,
:func:`tandem.core.engine.kernels.run_batch_nb` (the daemon with one slice at a time)."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import numpy as np
from tandem.core.engine.inputs import as_matrix, check_bars, check_signals
from tandem.core.engine.kernels import run_batch_nb
from tandem.core.engine.layout import (
    A_ENTRY,
    A_LAST_CLOSE,
    A_PEAK,
    A_POS,
    A_SL,
    A_TP,
    MAX_FILLS_PER_ASSET,
    N_FILL_COLS,
    S_CASH,
    S_LAST_TS,
    SKIP_CAUSES,
)
from tandem.core.engine.params import P_TRAIL, EngineConfig
from tandem.core.engine.state import new_state, state_from_bytes, state_to_bytes
from tandem.core.jit_ready import ready as jit_ready

if TYPE_CHECKING:  # pandas is imported where it is used (not on the daemon's hot path)
    import pandas as pd
    import pyarrow as pa

Source = Literal["backtest", "paper"]


class Engine:
    """Engine state for one profile over a fixed, ordered list of symbols.

    ``step`` consumes one closed time slice and returns its fills as journal rows.
    ``to_bytes``/``from_bytes`` save and restore the whole engine (config, symbols, state)
    exactly, so a restored engine continues bit for bit.
    """

    def __init__(
        self,
        config: EngineConfig,
        symbols: Sequence[str],
        *,
        profile: str = "",
        run_id: str = "",
        source: Source = "paper",
    ) -> None:
        self.config = config
        self.symbols = list(symbols)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols must be unique")
        self.profile = profile
        self.run_id = run_id
        self.source: Source = source
        self.params = config.to_params()
        self.astate, self.pstate = new_state(len(self.symbols), config.initial_cash)
        self._buf = np.zeros((MAX_FILLS_PER_ASSET * len(self.symbols), N_FILL_COLS))
        self._eq = np.empty(1)
        self._work = self.work_array()

    def work_array(self) -> np.ndarray | None:
        """The kernel's mode-selecting work array: None (discrete) or float64[n_assets]
        (portfolio); see :func:`tandem.core.engine.kernels.run_batch_nb`."""
        return np.empty(self.n_assets) if self.config.mode == "portfolio" else None

    @property
    def n_assets(self) -> int:
        return len(self.symbols)

    @property
    def cash(self) -> float:
        return float(self.pstate[S_CASH])

    def equity(self) -> float:
        """Cash plus positions at their last seen closes: ``equity_nb``'s sum, in the same
        order, in Python. The daemon's monitoring (metrics, dashboard, notifications) calls
        this on its event loop; the jitted one compiled there on a first start, waiting on
        numba's compiler lock while the core compiled in its thread, and the loop — SIGTERM,
        ``/health`` — froze for the whole compile."""
        eq = float(self.pstate[S_CASH])
        for pos, last in zip(self.astate[:, A_POS].tolist(), self.astate[:, A_LAST_CLOSE].tolist(),
                             strict=True):
            if pos != 0.0:
                eq += pos * last
        return eq

    def entries_skipped(self) -> dict[str, int]:
        """Discrete entry signals the engine did not act on since the start, by cause
        (``unfunded``, ``below_min_trade_value``; see :mod:`tandem.core.engine.layout`,
        ``S_SKIP_*``): counted per slice and asset, so a signal held while unfundable
        counts once per bar. Portfolio mode counts nothing (0)."""
        return {name: int(self.pstate[slot]) for name, slot in SKIP_CAUSES}

    def free_cash(self) -> float:
        """Cash an entry may spend: cash minus twice each open short's notional at its fill
        price (``free_cash_nb``'s sum, in the same order, in Python; see
        :mod:`tandem.core.engine.kernels`, "Funding"). Equals the cash without shorts."""
        free = float(self.pstate[S_CASH])
        for pos, entry in zip(self.astate[:, A_POS].tolist(), self.astate[:, A_ENTRY].tolist(),
                              strict=True):
            if pos < 0.0:
                free += 2.0 * pos * entry
        return free

    def step_raw(self, ts_close: int, o, h, lo, c, signal) -> np.ndarray:  # noqa: ANN001
        """One slice; returns the numeric fill rows (see :mod:`tandem.core.engine.layout`)."""
        shape = (self.n_assets,)
        o, h, lo, c = (
            as_matrix(n, a, shape)
            for n, a in zip(("open", "high", "low", "close"), (o, h, lo, c), strict=True)
        )
        sig = as_matrix("signal", signal, shape)
        check_bars(o, h, lo, c)
        check_signals(sig, self.config.mode, self.config.max_weight)
        ts = int(ts_close)
        last = self.pstate[S_LAST_TS]
        if ts <= last:
            raise ValueError(f"ts_close {ts} is not after the last slice {int(last)}")
        # A one-slice batch: the backtest's kernel, so both drivers run the same code.
        n, _ = run_batch_nb(
            self.params, self.astate, self.pstate, np.array([ts], dtype=np.int64),
            o.reshape(1, -1), h.reshape(1, -1), lo.reshape(1, -1), c.reshape(1, -1),
            sig.reshape(1, -1), self._buf, 0, 0, self._eq, self._work,
        )
        return self._buf[:n].copy()

    def step(self, ts_close: int, o, h, lo, c, signal) -> pd.DataFrame:  # noqa: ANN001
        """One slice; returns its fills as a journal frame (``tandem.core.journal`` schema)."""
        from tandem.core.journal import fills_frame

        raw = self.step_raw(ts_close, o, h, lo, c, signal)
        return fills_frame(raw, self.symbols, self.profile, self.run_id, self.source)

    def open_levels(self) -> list[dict[str, float | str | None]]:
        """Open positions with the levels the next slice's exit check will use: entry, last
        close, unrealized PnL (quote), fixed SL/TP and the trailing level (None = off).

        The trailing level is the same expression as the exit kernel's
        (``peak * (1 -/+ trailing_stop_pct)``); which stop is effective (the tighter one) is
        reported as ``stop``. A read-only view for people (dashboard, alerts)."""
        trail = float(self.params[P_TRAIL])
        out: list[dict[str, float | str | None]] = []
        for i, symbol in enumerate(self.symbols):
            row = self.astate[i]
            pos = float(row[A_POS])
            if pos == 0.0:
                continue
            long = pos > 0.0
            entry, last = float(row[A_ENTRY]), float(row[A_LAST_CLOSE])
            sl, tp, peak = float(row[A_SL]), float(row[A_TP]), float(row[A_PEAK])
            tl = (peak * (1.0 - trail) if long else peak * (1.0 + trail)) if trail > 0.0 else None
            stop = None if np.isnan(sl) else sl
            if tl is not None and (stop is None or (long and tl > stop)
                                   or (not long and tl < stop)):
                stop = tl
            out.append({
                "symbol": symbol, "qty": pos, "side": "long" if long else "short",
                "entry": entry, "last": last if np.isfinite(last) else None,
                "unrealized": (last - entry) * pos if np.isfinite(last) else None,
                "stop_loss": None if np.isnan(sl) else sl,
                "take_profit": None if np.isnan(tp) else tp,
                "trailing": tl, "stop": stop,
            })
        return out

    def to_bytes(self) -> bytes:
        """Config, symbols, profile/run/source and state as one self-describing blob."""
        meta = json.dumps(
            {
                "config": self.config.model_dump(mode="json"),
                "symbols": self.symbols,
                "profile": self.profile,
                "run_id": self.run_id,
                "source": self.source,
            },
            sort_keys=True,
        ).encode()
        return struct.pack("<I", len(meta)) + meta + state_to_bytes(self.astate, self.pstate)

    @classmethod
    def from_bytes(cls, data: bytes) -> Engine:
        """Inverse of :meth:`to_bytes`."""
        (k,) = struct.unpack_from("<I", data, 0)
        meta = json.loads(data[4 : 4 + k])
        eng = cls(
            EngineConfig.model_validate(meta["config"]),
            meta["symbols"],
            profile=meta["profile"],
            run_id=meta["run_id"],
            source=meta["source"],
        )
        astate, pstate = state_from_bytes(data[4 + k :])
        if astate.shape[0] != eng.n_assets:
            raise ValueError("engine state: asset count does not match the symbols")
        eng.astate, eng.pstate = astate, pstate
        return eng


@dataclass
class BatchResult:
    """What :func:`run_batch` returns.

    The journal and the equity curve as pandas objects (``fills``, ``equity``, built on
    first use) or as Arrow/NumPy (``fills_table``, ``ts_close`` + ``equity_values``), for a
    caller that only writes files and need not import pandas.
    """

    fills_table: pa.Table  # journal rows (core.journal schema)
    ts_close: np.ndarray  # int64 close time of each bar
    equity_values: np.ndarray  # equity after each bar
    raw: np.ndarray  # numeric fill rows (core.engine.layout)
    engine: Engine  # final state (continue with engine.step, or save it)

    @cached_property
    def fills(self) -> pd.DataFrame:
        """Journal rows as a frame."""
        return self.fills_table.to_pandas()

    @cached_property
    def equity(self) -> pd.Series:
        """Equity after each bar, indexed by ts_close."""
        import pandas as pd

        return pd.Series(self.equity_values, index=pd.Index(self.ts_close, name="ts"),
                         name="equity")


def run_batch_raw(
    config: EngineConfig,
    ts_close,  # noqa: ANN001
    open_,  # noqa: ANN001
    high,  # noqa: ANN001
    low,  # noqa: ANN001
    close,  # noqa: ANN001
    signals,  # noqa: ANN001
    engine: Engine | None = None,
    symbols: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, Engine]:
    """Validate inputs, then loop the step kernel over all bars in numba.

    Arrays are ``n_bars x n_assets`` (``ts_close`` is ``n_bars`` int64 close times,
    increasing). Starts from ``engine``'s state when given (it is advanced in place).
    Returns ``(raw_fills, equity, engine)``.
    """
    jit_ready("engine")  # a JIT warm-up worker may be compiling these kernels
    c = np.ascontiguousarray(np.asarray(close, dtype=np.float64))
    if c.ndim != 2:
        raise ValueError(f"close must be 2-D (n_bars x n_assets), got shape {c.shape}")
    shape = c.shape
    o = as_matrix("open", open_, shape)
    h = as_matrix("high", high, shape)
    lo = as_matrix("low", low, shape)
    sig = as_matrix("signals", signals, shape)
    ts = np.ascontiguousarray(np.asarray(ts_close, dtype=np.int64))
    if ts.shape != (shape[0],):
        raise ValueError(f"ts_close has shape {ts.shape}, expected {(shape[0],)}")
    if shape[0] > 1 and not (np.diff(ts) > 0).all():
        raise ValueError("ts_close must be strictly increasing")
    if engine is None:
        syms = list(symbols) if symbols is not None else [str(i) for i in range(shape[1])]
        if len(syms) != shape[1]:
            raise ValueError(f"{len(syms)} symbols for {shape[1]} asset columns")
        engine = Engine(config, syms, source="backtest")
    elif engine.n_assets != shape[1]:
        raise ValueError(f"{engine.n_assets} symbols for {shape[1]} asset columns")
    if shape[0] and ts[0] <= engine.pstate[S_LAST_TS]:
        raise ValueError("ts_close must start after the engine's last slice")
    check_bars(o, h, lo, c)
    check_signals(sig, engine.config.mode, engine.config.max_weight)

    equity = np.full(shape[0], np.nan)
    # A generous first guess (~2 fills per asset per 50 bars); the kernel pauses when full.
    cap = max(4096, MAX_FILLS_PER_ASSET * shape[1] * (2 + shape[0] // 50))
    chunks = []
    start = 0
    work = engine.work_array()
    while True:
        buf = np.empty((cap, N_FILL_COLS))
        n, start = run_batch_nb(
            engine.params, engine.astate, engine.pstate, ts, o, h, lo, c, sig, buf, 0, start,
            equity, work,
        )
        chunks.append(buf[:n])
        if start >= shape[0]:
            break
        cap *= 2
    raw = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return raw, equity, engine


def run_batch(
    config: EngineConfig,
    ts_close,  # noqa: ANN001
    open_,  # noqa: ANN001
    high,  # noqa: ANN001
    low,  # noqa: ANN001
    close,  # noqa: ANN001
    signals,  # noqa: ANN001
    *,
    symbols: Sequence[str],
    profile: str,
    run_id: str,
    source: Source = "backtest",
) -> BatchResult:
    """Backtest driver: every bar through the step kernel; fills as a journal."""
    from tandem.core.journal import fills_table

    eng = Engine(config, symbols, profile=profile, run_id=run_id, source=source)
    raw, equity, eng = run_batch_raw(config, ts_close, open_, high, low, close, signals, engine=eng)
    return BatchResult(fills_table=fills_table(raw, eng.symbols, profile, run_id, source),
                       ts_close=np.asarray(ts_close, dtype=np.int64), equity_values=equity,
                       raw=raw, engine=eng)
