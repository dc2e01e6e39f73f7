"""Reconcile with planted differences, each classified by its true cause.

Every scenario is built the way the two drivers really work: the *backtest* runs the core
engine's batch loop over the candles in a candle store; the *paper* side steps the core
``Engine`` one slice at a time over the candles a daemon would have consumed, and journals
slices, candles, late candles and fills through the daemon's own ``StateStore`` (so the
test also pins the database layout reconcile reads). A plant changes exactly one thing —
one candle's values, one candle's arrival, the intrabar policy, the entry threshold — and
the test checks the category reconcile gives every resulting difference.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.reconcile import Tolerance, reconcile
from tandem.backtest.reconcile.match import IDENTICAL, MISMATCHED, MISSING_PAPER, match_fills
from tandem.core import journal
from tandem.core.engine import Engine, EngineConfig, run_batch
from tandem.core.fingerprint import run_fingerprint
from tandem.core.store import CandleStore
from tandem.daemon.state import ClosedCandle, StateStore, canonical_json, profile_hash

SYMS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
TF = 3_600_000
N_BARS = 240
T0 = 1_612_137_600_000  # 2021-02-01 00:00 UTC


def make_candles(n: int = N_BARS, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Random-walk OHLCV per symbol (wide enough bars that SL and TP often share a bar)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, sym in enumerate(SYMS):
        c = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        o = np.r_[c[0], c[:-1]]
        hi = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.008, n)))
        lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.008, n)))
        out[sym] = pd.DataFrame(
            {"ts": T0 + TF * np.arange(n, dtype=np.int64), "open": o, "high": hi, "low": lo,
             "close": c, "volume": rng.uniform(1, 10, n)}
        )
    return out


def matrices(candles: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """``n_bars x n_assets`` arrays on the union time axis (NaN = no bar)."""
    ts = np.unique(np.concatenate([f["ts"].to_numpy() for f in candles.values()]))
    out = {"ts": ts}
    for col in ("open", "high", "low", "close", "volume"):
        m = np.full((len(ts), len(SYMS)), np.nan)
        for j, s in enumerate(SYMS):
            f = candles[s]
            m[np.searchsorted(ts, f["ts"].to_numpy()), j] = f[col].to_numpy()
        out[col] = m
    return out


def signals(close: np.ndarray, threshold: float) -> np.ndarray:
    """One-bar momentum: +1 above ``threshold``, -1 below ``-threshold`` (NaN bar -> 0)."""
    prev = np.vstack([np.full((1, close.shape[1]), np.nan), close[:-1]])
    r = close / prev - 1.0
    return np.where(r > threshold, 1.0, np.where(r < -threshold, -1.0, 0.0))


@dataclass
class Plan:
    """What the daemon side does differently from history."""

    threshold: float = 0.0
    intrabar: str = "pessimistic"
    altered: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)  # (sym, i) -> values
    late: list[tuple[str, int]] = field(default_factory=list)  # (sym, i): arrives after its slice
    stop_at: int | None = None  # the daemon stops before this bar (crash, not restarted)


def profile(threshold: float, intrabar: str) -> dict:
    return {
        "strategy": "momentum", "base_timeframe": "1h", "entry_threshold": threshold,
        "exit_rules": {"stop_loss_pct": 0.01, "take_profit_pct": 0.012, "intrabar": intrabar},
        "execution": {"mode": "discrete", "fee_rate": 0.001, "slippage_bps": 5.0, "size_pct": 0.3},
        "initial_cash": 10_000.0,
    }


def engine_config(threshold: float, intrabar: str) -> EngineConfig:
    p = profile(threshold, intrabar)
    return EngineConfig(
        stop_loss_pct=0.01, take_profit_pct=0.012, intrabar=intrabar, fee_rate=0.001,
        slippage_bps=5.0, size_pct=0.3, initial_cash=p["initial_cash"],
    )


def write_backtest(
    root: Path, candles: dict[str, pd.DataFrame], threshold=0.0, intrabar="pessimistic", with_json=True
) -> Path:
    """Store the candles, backtest them, write fills.csv + run.json; return the fills path."""
    store = CandleStore(root / "store", exchange="binance", timeframe="1h")
    for s, f in candles.items():
        store.append(s, f)
    m = matrices(candles)
    res = run_batch(
        engine_config(threshold, intrabar), m["ts"] + TF, m["open"], m["high"], m["low"], m["close"],
        signals(m["close"], threshold), symbols=SYMS, profile="p1", run_id="bt-1",
    )
    out = root / "bt"
    out.mkdir()
    journal.write_csv(res.fills, out / "fills.csv")
    prof = profile(threshold, intrabar)
    meta = {"profile": "p1", "profile_hash": profile_hash(prof)}
    if with_json:
        meta["profile_json"] = canonical_json(prof)
    (out / "run.json").write_text(json.dumps(meta))
    return out / "fills.csv"


def write_paper(root: Path, candles: dict[str, pd.DataFrame], plan: Plan) -> Path:
    """Step the engine slice by slice over what the daemon saw; journal it in a daemon db."""
    seen = {s: f.copy() for s, f in candles.items()}
    for (s, i), vals in plan.altered.items():
        for k, v in vals.items():
            seen[s].loc[i, k] = v
    late_rows = []
    for s, i in plan.late:
        late_rows.append((s, seen[s].loc[i].copy()))
        seen[s] = seen[s].drop(index=i)
    m = matrices({s: f.reset_index(drop=True) for s, f in seen.items()})
    full_ts = matrices(candles)["ts"][: plan.stop_at]
    sig = signals(m["close"], plan.threshold)
    db = root / "paper.db"
    st = StateStore(db)
    st.conn.execute("PRAGMA synchronous=OFF")  # test speed; durability is not under test here
    prof = profile(plan.threshold, plan.intrabar)
    st.bind_profile("p1", prof, "sess-1")
    eng = Engine(engine_config(plan.threshold, plan.intrabar), SYMS, profile="p1", run_id="sess-1", source="paper")
    # Older StateStore versions also took engine-state blobs per slice; none are needed here.
    blobs = {"blobs": {}} if "blobs" in inspect.signature(st.commit_slice).parameters else {}
    steps = []
    for ts in full_ts:
        k = int(np.searchsorted(m["ts"], ts))
        row = {c: m[c][k] for c in ("open", "high", "low", "close", "volume")}
        raw = eng.step_raw(int(ts) + TF, row["open"], row["high"], row["low"], row["close"], sig[k])
        steps.append((int(ts), row, raw))
    # One journal conversion for all slices (fill ids only count within a slice, so this
    # equals converting slice by slice, and is much faster than Engine.step per slice).
    all_fills = journal.fills_frame(
        np.concatenate([r for _, _, r in steps]), SYMS, "p1", "sess-1", "paper"
    )
    by_ts = {int(t): g for t, g in all_fills.groupby("ts")}
    for ts, row, _ in steps:
        present = ~np.isnan(row["close"])
        cands = [
            ClosedCandle(s, ts, *(float(row[c][j]) for c in ("open", "high", "low", "close", "volume")), origin="ws")
            for j, s in enumerate(SYMS) if present[j]
        ]
        missing = [s for j, s in enumerate(SYMS) if not present[j]]
        fills = by_ts.get(ts + TF)
        recs = [] if fills is None else fills.to_dict("records")
        st.commit_slice(ts, cands, missing, fills=recs, positions={}, warmup=False, **blobs)
    for s, r in late_rows:
        st.record_late(ClosedCandle(s, int(r["ts"]), *(float(r[c]) for c in ("open", "high", "low", "close", "volume")),
                                    origin="rest"))
    st.close()
    return db


def scenario(tmp_path: Path, plan: Plan, bt_threshold=0.0, bt_intrabar="pessimistic", with_json=True):
    candles = make_candles()
    bt = write_backtest(tmp_path, candles, bt_threshold, bt_intrabar, with_json)
    db = write_paper(tmp_path, candles, plan)
    report = reconcile(db, bt, history=tmp_path / "store")
    return report, db, bt


# ------------------------------------------------------------------------------------------


def test_identical_runs_reconcile_clean(tmp_path):
    report, db, bt = scenario(tmp_path, Plan())
    p = report.profiles[0]
    assert report.ok and report.exit_code == 0
    assert p.paper_fills == p.backtest_fills > 20
    assert p.identical == p.paper_fills and p.identical_pct == 100.0
    assert p.paper_fingerprint == p.backtest_fingerprint
    assert p.trades_differing == 0 and p.data_events == 0
    assert p.config.hash_differs is False
    assert report.differences.empty
    assert (report.drift["equity_drift"] == 0).all()
    # Independent check of "identical": the journals agree column by column (pandas).
    a = journal.read_csv(bt).drop(columns=["source", "run_id"])
    b = StateStore(db).fills_frame().drop(columns=["source", "run_id"])
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_dtype=False)


def test_altered_candle_is_data(tmp_path):
    # BTC bar 60's close moved 3% (and its high with it): the daemon saw a different candle.
    c = make_candles()["BTC/USDT"].loc[60]
    plan = Plan(altered={("BTC/USDT", 60): {"close": c["close"] * 1.03, "high": max(c["high"], c["close"] * 1.03)}})
    report, _, _ = scenario(tmp_path, plan)
    assert not report.ok and report.exit_code == 1
    ev = report.events
    assert list(ev["kind"]) == ["altered"] and ev["symbol"].iloc[0] == "BTC/USDT"
    assert int(ev["ts"].iloc[0]) == T0 + 60 * TF
    d = report.differences
    assert len(d) > 0
    assert set(d["category"]) == {"data"}, d[["category", "evidence"]]
    first = d.sort_values("ts").iloc[0]
    assert first["ts"] >= T0 + 61 * TF and "altered candle BTC/USDT" in first["evidence"]


def test_late_candle_is_data(tmp_path):
    # Make late the ETH bar of the first ETH fill after bar 60 of the backtest: the daemon
    # stepped that slice without ETH (grace expired), so that fill cannot happen live.
    candles = make_candles()
    bt = write_backtest(tmp_path, candles)
    fills = journal.read_csv(bt)
    eth = fills[(fills["symbol"] == "ETH/USDT") & (fills["ts"] > T0 + 60 * TF)]
    i = int((eth["ts"].iloc[0] - TF - T0) // TF)
    db = write_paper(tmp_path, candles, Plan(late=[("ETH/USDT", i)]))
    report = reconcile(db, bt, history=tmp_path / "store")
    assert not report.ok
    ev = report.events
    assert list(ev["kind"]) == ["late"] and ev["symbol"].iloc[0] == "ETH/USDT"
    assert int(ev["ts"].iloc[0]) == T0 + i * TF
    d = report.differences
    assert len(d) > 0 and set(d["category"]) == {"data"}
    first = d.sort_values("ts", kind="stable").iloc[0]
    assert first["ts"] == T0 + (i + 1) * TF and first["symbol"] == "ETH/USDT"
    assert "late candle ETH/USDT" in first["evidence"]


@pytest.mark.parametrize("with_json", [True, False], ids=["json", "hash-only"])
def test_intrabar_policy_change_is_intrabar(tmp_path, with_json):
    # hash-only: the backtest side knows just its profile hash (like stats.json); the policy
    # change is still recognised from the daemon's profile JSON re-hashed with each policy.
    report, _, _ = scenario(tmp_path, Plan(intrabar="ohlc"), bt_intrabar="pessimistic", with_json=with_json)
    p = report.profiles[0]
    assert p.config.fields == ("exit_rules.intrabar",)
    d = report.differences.sort_values("ts", kind="stable")
    assert len(d) > 0 and set(d["category"]) == {"intrabar"}
    roots = d[d["caused_by"] == ""]
    # Every root is an ambiguous bar: the backtest stopped out (pessimistic), paper took profit.
    assert len(roots) >= 1
    assert set(roots["intrabar_backtest"].dropna()) <= {"pessimistic"}
    assert set(roots["intrabar_paper"].dropna()) <= {"ohlc"}
    assert {"stop_loss", "take_profit"} <= set(roots["reason"])


def test_changed_threshold_is_config(tmp_path):
    report, _, _ = scenario(tmp_path, Plan(threshold=0.004), bt_threshold=0.0)
    p = report.profiles[0]
    assert p.config.hash_differs and p.config.fields == ("entry_threshold",)
    d = report.differences
    assert len(d) > 0 and set(d["category"]) == {"config"}
    assert all("entry_threshold" in e for e in d["evidence"])


def test_daemon_that_stopped_early_is_data_not_logic(tmp_path):
    report, _, _ = scenario(tmp_path, Plan(stop_at=150))
    d = report.differences
    assert len(d) > 0 and set(d["status"]) == {MISSING_PAPER}
    assert (d["ts"] > T0 + 150 * TF).all()
    assert set(d["category"]) == {"data"}
    assert all("after the daemon's last stepped slice" in e for e in d["evidence"])


def test_edited_fill_is_logic_and_ulp_is_rounding(tmp_path):
    candles = make_candles()
    bt = write_backtest(tmp_path, candles)
    fills = journal.read_csv(bt)
    k = len(fills) // 2
    logic = fills.copy()
    logic.loc[k, "price"] *= 1.005
    r = reconcile(logic.assign(source="paper"), bt)
    d = r.differences
    assert list(d["status"]) == [MISMATCHED] and list(d["category"]) == ["logic"]
    assert d["d_price"].iloc[0] == pytest.approx(fills.loc[k, "price"] * 0.005)
    ulp = fills.copy()
    ulp.loc[k, "qty"] = np.nextafter(ulp.loc[k, "qty"], np.inf)
    r = reconcile(ulp, bt)
    assert list(r.differences["category"]) == ["rounding"] and not r.ok
    assert reconcile(ulp, bt, tolerance=Tolerance(rel=1e-12)).ok
    for col in ("price", "qty"):  # a NaN is no rounding (it compared False: "rounding")
        nan = fills.copy()
        nan.loc[k, col] = np.nan
        r = reconcile(nan, bt)
        assert list(r.differences["category"]) == ["logic"] and not r.ok, col
    dropped = fills.drop(index=k)
    r = reconcile(dropped, bt)
    first = r.differences.iloc[0]
    assert first["status"] == MISSING_PAPER and first["ts"] == fills.loc[k, "ts"]


def test_match_counts_agree_with_independent_pandas(tmp_path):
    candles = make_candles()
    bt = write_backtest(tmp_path, candles)
    a = journal.read_csv(bt)
    b = a.sample(frac=0.8, random_state=1).sort_index()
    b.loc[b.index[::7], "fee"] += 0.01
    m = match_fills(b, a)
    # Independent count: rows present on both sides keyed by the unique fill_id.
    j = a.merge(b, on="fill_id", suffixes=("_a", "_b"))
    same = (j["fee_a"] == j["fee_b"]).sum()
    assert (m["status"] == IDENTICAL).sum() == same
    assert (m["status"] == MISSING_PAPER).sum() == len(a) - len(b)
    assert run_fingerprint(a) != run_fingerprint(b)


def test_journal_formats_reconcile_alike(tmp_path):
    """CSV, Parquet and the daemon db of the same fills all reconcile identically."""
    report, db, bt = scenario(tmp_path, Plan())
    df = StateStore(db).fills_frame()
    journal.write_parquet(df, tmp_path / "paper.parquet")
    journal.write_csv(df, tmp_path / "paper.csv")
    for path in (tmp_path / "paper.parquet", tmp_path / "paper.csv"):
        r = reconcile(path, bt)
        assert r.ok and r.profiles[0].identical == len(df)


def test_history_defaults_to_the_backtests_stats_json(tmp_path):
    """Without --history, the candles named in the backtest's stats.json are compared."""
    candles = make_candles()
    bt = write_backtest(tmp_path, candles)
    (bt.parent / "stats.json").write_text(json.dumps({"data": str(tmp_path / "store")}))
    c = candles["ETH/USDT"].loc[100]
    db = write_paper(tmp_path, candles, Plan(altered={("ETH/USDT", 100): {"open": c["open"] * 1.01,
                                                                          "high": max(c["high"], c["open"] * 1.01)}}))
    report = reconcile(db, bt)
    assert report.inputs["history"] == [str(tmp_path / "store")]
    assert list(report.events["kind"]) == ["altered"]
    assert "open" in report.events["detail"].iloc[0]
