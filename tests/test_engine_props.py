"""Invariants of the engine under hypothesis: accounting, fees, long-only, determinism,
slice-by-slice == batch bit for bit, save -> restore -> continue == uninterrupted."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tandem.core.engine import Engine, EngineConfig, run_batch, run_batch_raw
from tandem.core.engine.layout import (
    F_CASH_AFTER,
    F_FEE,
    F_POS_AFTER,
    F_PRICE,
    F_QTY,
    F_REASON,
    F_SIDE,
    REASON_ENTRY,
)
from tandem.core.journal import equity_series, fills_frame

HOUR = 3_600_000
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_market(seed: int, n: int, m: int, missing: float, mode: str):
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, m)), axis=0))
    o = np.vstack([np.full((1, m), 100.0), c[:-1]]) * np.exp(rng.normal(0, 0.01, (n, m)))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.01, (n, m))))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.01, (n, m))))
    gone = rng.random((n, m)) < missing
    for a in (o, h, lo, c):
        a[gone] = np.nan
    if mode == "discrete":
        sig = rng.choice([-1.0, 0.0, 1.0], size=(n, m), p=[0.15, 0.6, 0.25])
    else:
        sig = np.full((n, m), np.nan)
        rows = rng.random(n) < 0.3
        w = rng.dirichlet(np.ones(m + 1), size=n)[:, :m]
        w[rng.random((n, m)) < 0.25] = 0.0
        sig[rows] = w[rows]
    ts = (np.arange(n) + 1) * HOUR
    return ts, o, h, lo, c, sig


@st.composite
def scenarios(draw):
    mode = draw(st.sampled_from(["discrete", "portfolio"]))
    stop = st.sampled_from([None, 0.01, 0.03, 0.08])
    sizing = draw(st.sampled_from(["fraction", "risk"])) if mode == "discrete" else "fraction"
    sl = draw(st.sampled_from([0.02, 0.05])) if sizing == "risk" else draw(stop)
    cfg = EngineConfig(
        mode=mode,
        stop_loss_pct=sl,
        take_profit_pct=draw(stop),
        trailing_stop_pct=draw(stop),
        exit_on_signal=draw(st.booleans()),
        intrabar=draw(st.sampled_from(["pessimistic", "ohlc", "adaptive"])),
        fee_rate=draw(st.sampled_from([0.0, 0.001, 0.0075])),
        slippage_bps=draw(st.sampled_from([0.0, 5.0])),
        sizing=sizing,
        size_pct=draw(st.sampled_from([0.2, 0.5, 1.0])),
        risk_pct=0.01,
        long_short=draw(st.booleans()) if mode == "discrete" else False,
        max_weight=draw(st.sampled_from([0.3, 1.0])),
        min_trade_value=draw(st.sampled_from([0.0, 25.0])),
        initial_cash=10_000.0,
    )
    n = draw(st.integers(5, 150))
    m = draw(st.integers(1, 5))
    missing = draw(st.sampled_from([0.0, 0.1]))
    seed = draw(st.integers(0, 2**32 - 1))
    return cfg, make_market(seed, n, m, missing, mode)


def state_bytes(eng: Engine) -> bytes:
    return eng.astate.tobytes() + eng.pstate.tobytes()


def symbols(m: int) -> list[str]:
    return [f"S{j}/USDT" for j in range(m)]


@SETTINGS
@given(scenarios())
def test_accounting_fees_and_positions(sc) -> None:  # noqa: ANN001
    cfg, (ts, o, h, lo, c, sig) = sc
    m = c.shape[1]
    res = run_batch(cfg, ts, o, h, lo, c, sig, symbols=symbols(m), profile="p", run_id="r")
    raw = res.raw
    # Equity = cash + sum(position x close), rebuilt independently from the journal alone.
    rebuilt = equity_series(res.fills, ts, c, symbols(m), cfg.initial_cash)
    np.testing.assert_allclose(res.equity.to_numpy(), rebuilt.to_numpy(), rtol=1e-9, atol=1e-6)
    if len(raw) == 0:
        return
    # Every fill moves cash by exactly -side x notional - fee.
    notional = raw[:, F_QTY] * raw[:, F_PRICE]
    prev_cash = np.r_[cfg.initial_cash, raw[:-1, F_CASH_AFTER]]
    np.testing.assert_allclose(
        raw[:, F_CASH_AFTER] - prev_cash,
        -raw[:, F_SIDE] * notional - raw[:, F_FEE],
        rtol=1e-9,
        atol=1e-6,
    )
    # Sum of fees = fee rate x traded notional.
    np.testing.assert_allclose(raw[:, F_FEE].sum(), cfg.fee_rate * notional.sum(), rtol=1e-12)
    assert (raw[:, F_QTY] > 0).all()
    if not cfg.long_short:
        assert (raw[:, F_POS_AFTER] >= 0).all()
        assert (res.engine.astate[:, 0] >= 0).all()
    # Funding: every entry fits in free cash (cash - 2 x open shorts' notional at their fill
    # prices, rebuilt from the journal): short proceeds never pay for another entry.
    short_lock = np.zeros(m)
    for r in raw:
        j = int(r[1])
        short_lock[j] = -2.0 * r[F_POS_AFTER] * r[F_PRICE] if r[F_POS_AFTER] < 0 else 0.0
        if r[F_REASON] == REASON_ENTRY:
            assert r[F_CASH_AFTER] - short_lock.sum() >= -1e-6, r
    # Position bookkeeping: position_after follows from the signed quantities.
    for j in range(m):
        rows = raw[raw[:, 1] == j]
        np.testing.assert_allclose(
            np.cumsum(rows[:, F_SIDE] * rows[:, F_QTY]), rows[:, F_POS_AFTER], atol=1e-9, rtol=1e-9
        )


@SETTINGS
@given(scenarios())
def test_deterministic_fill_ids(sc) -> None:  # noqa: ANN001
    cfg, (ts, o, h, lo, c, sig) = sc
    sy = symbols(c.shape[1])
    a = run_batch(cfg, ts, o, h, lo, c, sig, symbols=sy, profile="prof", run_id="one").fills
    b = run_batch(cfg, ts, o, h, lo, c, sig, symbols=sy, profile="prof", run_id="two").fills
    assert list(a["fill_id"]) == list(b["fill_id"])
    assert a["fill_id"].is_unique
    expect = [
        f"prof:{s}:{t}:{r}:" for s, t, r in zip(a["symbol"], a["ts"], a["reason"], strict=True)
    ]
    assert all(fid.startswith(e) for fid, e in zip(a["fill_id"], expect, strict=True))


@SETTINGS
@given(scenarios(), st.floats(0.0, 1.0))
def test_slices_equal_batch_and_restore_equals_uninterrupted(sc, cut: float) -> None:  # noqa: ANN001
    cfg, (ts, o, h, lo, c, sig) = sc
    n, m = c.shape
    sy = symbols(m)
    raw, equity, eng = run_batch_raw(cfg, ts, o, h, lo, c, sig, symbols=sy)
    # 1. slice by slice through the daemon-facing Engine, saved and restored at `k`.
    k = int(cut * n)
    stepper = Engine(cfg, sy)
    rows = []
    eq = []
    for t in range(n):
        if t == k:
            stepper = Engine.from_bytes(stepper.to_bytes())
        rows.append(stepper.step_raw(ts[t], o[t], h[t], lo[t], c[t], sig[t]))
        eq.append(stepper.equity())
    stepped = np.concatenate(rows) if rows else np.empty((0, raw.shape[1]))
    assert stepped.tobytes() == raw.tobytes()  # bit for bit
    assert np.array(eq).tobytes() == equity.tobytes()
    assert state_bytes(stepper) == state_bytes(eng)
    # 2. batch interrupted at `k`, saved, restored, continued in batch.
    raw1, eq1, first = run_batch_raw(cfg, ts[:k], o[:k], h[:k], lo[:k], c[:k], sig[:k], symbols=sy)
    resumed = Engine.from_bytes(first.to_bytes())
    raw2, eq2, last = run_batch_raw(
        cfg, ts[k:], o[k:], h[k:], lo[k:], c[k:], sig[k:], engine=resumed
    )
    assert np.concatenate([raw1, raw2]).tobytes() == raw.tobytes()
    assert np.concatenate([eq1, eq2]).tobytes() == equity.tobytes()
    assert state_bytes(last) == state_bytes(eng)
    # The journal rows agree too (fill ids included).
    a = fills_frame(raw, sy, "p", "r", "backtest")
    b = fills_frame(stepped, sy, "p", "r", "backtest")
    assert a.equals(b)
