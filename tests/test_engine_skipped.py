"""Skipped entries are counted, by cause (``layout.S_SKIP_*``, ``Engine.entries_skipped``).

The expected counts are derived here from the signals and the fills alone: an entry signal
(+1, or -1 with ``long_short``) on a bar where the asset is flat once the slice's exits are
done, with no entry fill for that asset on that bar, is one skipped entry. The runs have no
stops, so the re-arm block never holds an entry back.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tandem.core.engine import Engine, EngineConfig, run_batch
from tandem.core.engine.layout import N_PSTATE, S_SKIP_MIN_TRADE, S_SKIP_UNFUNDED

H = 3_600_000


def _market(n_bars: int, n_assets: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (n_bars, n_assets)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.005, close.shape))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    ts = (np.arange(n_bars, dtype=np.int64) + 1) * H
    return ts, open_, high, low, close


def _levels(n_bars: int, n_assets: int, seed: int, long_short: bool) -> np.ndarray:
    """Signal levels held for a few bars each, so entries compete for the same cash."""
    rng = np.random.default_rng(seed)
    choices = np.array([-1.0, 0.0, 1.0])
    runs = rng.choice(choices, size=(n_bars // 4 + 1, n_assets), p=[0.3, 0.2, 0.5])
    sig = np.repeat(runs, 4, axis=0)[:n_bars]
    return sig if long_short else np.where(sig < 0.0, -1.0, sig)


def entries_without_fill(fills, symbols, ts, sig, long_short: bool) -> int:
    """Entry signals on bars where the asset was flat at entry time and nothing entered."""
    skipped = 0
    for j, sym in enumerate(symbols):
        f = fills[fills["symbol"] == sym]
        by_ts: dict[int, list[tuple[str, float]]] = {}
        for t, reason, pos in zip(f["ts"], f["reason"], f["position_after"], strict=True):
            by_ts.setdefault(int(t), []).append((reason, float(pos)))
        pos = 0.0
        for k, t in enumerate(ts.tolist()):
            rows = by_ts.get(t, [])
            for reason, after in rows:  # the slice's stop and signal exits come first
                if reason != "entry":
                    pos = after
            s = sig[k, j]
            wants = s == 1.0 or (long_short and s == -1.0)
            entered = any(reason == "entry" for reason, _ in rows)
            if wants and pos == 0.0 and not entered:
                skipped += 1
            for reason, after in rows:
                if reason == "entry":
                    pos = after
    return skipped


@pytest.mark.parametrize("long_short", [False, True])
def test_unfundable_entries_are_counted(long_short: bool) -> None:
    """size_pct 0.45 over four assets: at most two positions fit in free cash (with
    long_short a short locks its proceeds and as much again, so one short fills it)."""
    n_bars, n_assets = 400, 4
    ts, o, h, lo, c = _market(n_bars, n_assets, seed=5)
    sig = _levels(n_bars, n_assets, seed=6, long_short=long_short)
    syms = [f"A{j}" for j in range(n_assets)]
    cfg = EngineConfig(
        size_pct=0.45,
        fee_rate=0.001,
        slippage_bps=5.0,
        min_trade_value=0.0,
        exit_on_signal=True,
        long_short=long_short,
    )
    res = run_batch(cfg, ts, o, h, lo, c, sig, symbols=syms, profile="p", run_id="r")
    want = entries_without_fill(res.fills, syms, ts, sig, long_short)
    assert want > 50  # the scenario must actually skip
    assert (res.fills["reason"] == "entry").sum() > 20  # ... and trade
    assert res.engine.entries_skipped() == {"unfunded": want, "below_min_trade_value": 0}


def test_entries_below_min_trade_value_are_counted() -> None:
    """One asset falling: each loss shrinks the next entry (size_pct of equity) until it
    is worth less than min_trade_value; from then on every entry signal is skipped."""
    n_bars = 120
    ts = (np.arange(n_bars, dtype=np.int64) + 1) * H
    c = (100.0 * 0.99 ** np.arange(n_bars)).reshape(-1, 1)
    sig = np.where(np.arange(n_bars) % 6 < 3, 1.0, -1.0).reshape(-1, 1)
    cfg = EngineConfig(
        size_pct=0.9,
        fee_rate=0.001,
        slippage_bps=0.0,
        min_trade_value=800.0,
        exit_on_signal=True,
        initial_cash=1_000.0,
    )
    res = run_batch(cfg, ts, c, c, c, c, sig, symbols=["X"], profile="p", run_id="r")
    entries = res.fills[res.fills["reason"] == "entry"]
    assert 1 <= len(entries) < n_bars // 6  # traded, then stopped trading
    want = entries_without_fill(res.fills, ["X"], ts, sig, False)
    assert want > 30
    assert res.engine.entries_skipped() == {"unfunded": 0, "below_min_trade_value": want}
    # Exits are never held back by min_trade_value: every entry was closed.
    assert (res.fills["reason"] == "exit").sum() == len(entries)


def test_equity_wiped_out_counts_as_unfunded() -> None:
    """Equity <= 0 once ended the slice's entry loop (``break``): those entries are now
    counted as unfunded, and no fill changes."""
    eng = Engine(EngineConfig(size_pct=0.5), ["A", "B"])
    eng.pstate[0] = 0.0  # S_CASH: nothing left
    one = np.array([100.0, 50.0])
    rows = eng.step_raw(H, one, one, one, one, np.array([1.0, 1.0]))
    assert len(rows) == 0
    assert eng.entries_skipped() == {"unfunded": 2, "below_min_trade_value": 0}


def test_counts_survive_to_bytes_and_old_layout_is_refused() -> None:
    eng = Engine(EngineConfig(size_pct=1.0), ["A", "B"])
    one = np.array([100.0, 50.0])
    eng.step_raw(H, one, one, one, one, np.array([1.0, 1.0]))  # B cannot be funded
    assert eng.entries_skipped() == {"unfunded": 1, "below_min_trade_value": 0}
    restored = Engine.from_bytes(eng.to_bytes())
    assert restored.entries_skipped() == eng.entries_skipped()
    assert restored.pstate.tobytes() == eng.pstate.tobytes()

    # A checkpoint written before the skip counters: 3 portfolio slots, and no count of the
    # entries skipped since the run's start. Never padded or guessed at: refused, naming
    # both layouts (the daemon then rebuilds from its journal: test_daemon_skipped.py).
    blob = eng.to_bytes()
    (k,) = struct.unpack_from("<I", blob, 0)
    head = struct.Struct("<8sIII")
    magic, n_assets, n_a, n_p = head.unpack_from(blob, 4 + k)
    assert n_p == N_PSTATE == max(S_SKIP_UNFUNDED, S_SKIP_MIN_TRADE) + 1
    old = (
        blob[: 4 + k]
        + head.pack(magic, n_assets, n_a, 3)
        + blob[4 + k + head.size : len(blob) - 8 * (N_PSTATE - 3)]
    )
    with pytest.raises(
        ValueError,
        match=r"another layout \(7 asset / 3 portfolio slots; "
        r"this core has 7 / 5\)",
    ):
        Engine.from_bytes(old)
