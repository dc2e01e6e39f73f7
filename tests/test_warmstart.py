"""The batched warm-up (tandem.daemon.warmstart) against the slice path it replaces: the same
strategy state bit for bit — MTF/rating states per asset and a weighting profile's
cross-asset return window — with bars missing here and there and the bars handed over in
uneven chunks, and the same journal rows (``slices`` with their missing assets, ``candles``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tandem.daemon.slices import make_slice
from tandem.daemon.state import ClosedCandle, StateStore
from tandem.daemon.strategy import ProfileStepper
from tandem.daemon.warmstart import WarmupSink

from tests.test_daemon_support import TF_MS, sample_market, small_profile

WARM = 300


def _holes(market, seed: int) -> dict[str, np.ndarray]:
    """Each asset's warm-up bars with ~5 % dropped (never a whole slice: the slice path only
    steps a ts some asset has), as (ts, values (k, 5))."""
    rng = np.random.default_rng(seed)
    out = {}
    for j, s in enumerate(market.symbols):
        f = market.frame(s).iloc[:WARM]
        keep = rng.random(len(f)) > 0.05
        keep[0] = keep[0] or j == 0
        if j == 0:
            keep[:] = True  # one asset has every bar: every warm-up ts is a slice
        f = f[keep]
        out[s] = (
            f["ts"].to_numpy(np.int64),
            f[["open", "high", "low", "close", "volume"]].to_numpy(np.float64),
        )
    return out


@pytest.mark.parametrize(
    "profile",
    [
        small_profile(warmup=WARM),
        small_profile(
            "portfolio",
            warmup=WARM,
            portfolio={
                "rebalance_every": "5m",
                "max_weight": 0.4,
                "weighting": "inverse_vol",
                "lookback": 30,
            },
        ),
    ],
    ids=["discrete", "inverse_vol"],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_batched_warmup_equals_the_slice_steps(tmp_path, profile, seed):
    market = sample_market(warmup=WARM, n_tradable=5)
    bars = _holes(market, seed)
    syms = list(profile.assets)
    t0 = market.first_ts + WARM * TF_MS

    # the slice path: every ts some asset has, assets in manifest order, NaN = missing
    by_ts: dict[int, dict[str, ClosedCandle]] = {}
    for s, (ts, vals) in bars.items():
        for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
            by_ts.setdefault(t, {})[s] = ClosedCandle(s, t, *v, origin="store")
    sliced = ProfileStepper(profile, "a")
    want_missing = {}
    for t in sorted(by_ts):
        sl = make_slice(syms, t, by_ts[t])
        assert sliced.step(sl, trade=False) == []
        want_missing[t] = sl.missing

    # the batch: per asset, in uneven chunks, assets interleaved
    batched = ProfileStepper(profile, "b")
    sink = WarmupSink(syms, batched, TF_MS)
    sink.begin(market.first_ts, t0)
    rng = np.random.default_rng(seed)
    cuts = {s: sorted(set(rng.integers(1, len(bars[s][0]), 4).tolist())) for s in syms}
    parts = {s: np.split(np.arange(len(bars[s][0])), cuts[s]) for s in syms}
    for k in range(5):
        for s in syms:
            idx = parts[s][k]
            sink.bars(s, bars[s][0][idx], bars[s][1][idx], "rest" if k % 2 else "store")
    sink.finish()

    np.testing.assert_array_equal(batched.states, sliced.states)
    assert batched.states.tobytes() == sliced.states.tobytes()
    if sliced.wstate is not None:
        assert batched.wstate.tobytes() == sliced.wstate.tobytes()

    with StateStore(tmp_path / "s.sqlite") as st:
        st.bind_profile("tst", "{}", "r", fresh=True)
        st.commit_warmup(t0 - TF_MS, batched.blobs(), {})
        assert sum(sink.journal_chunks(st, chunk_rows=97)) == sum(len(b[0]) for b in bars.values())
        assert st.get_meta("warmup_journal") == "done"
        assert st.last_ts == t0 - TF_MS and st.checkpoint_ts == t0 - TF_MS
        rows = st.conn.execute("SELECT ts, n_assets, missing, warmup FROM slices ORDER BY ts")
        got = {t: (n, m, w) for t, n, m, w in rows}
        candles = st.candles_frame()
    assert sorted(got) == sorted(want_missing)
    assert all(got[t] == (len(by_ts[t]), json.dumps(want_missing[t]), 1) for t in got)
    assert len(candles) == sum(len(b[0]) for b in bars.values())
    for s in syms:
        mine = candles[candles["symbol"] == s].sort_values("ts")
        assert mine["ts"].tolist() == bars[s][0].tolist()
        assert (
            mine[["open", "high", "low", "close", "volume"]].to_numpy().tobytes()
            == bars[s][1].tobytes()
        )


def test_bars_after_the_warmup_finished_are_counted_late_not_stepped():
    profile = small_profile(warmup=WARM)
    stepper = ProfileStepper(profile, "x")
    sink = WarmupSink(list(profile.assets), stepper, TF_MS)
    sink.begin(0, WARM * TF_MS)
    sink.finish()
    before = stepper.states.copy()
    sink.bars(profile.assets[0], np.array([0], np.int64), np.ones((1, 5)), "rest")
    assert sink.late == 1 and sink.n_bars == 0
    assert stepper.states.tobytes() == before.tobytes()


@pytest.mark.parametrize("stop_s", [60.0, 0.0])
async def test_journal_between_live_slices_and_at_stop(tmp_path, monkeypatch, stop_s):
    """A replay whose warm-up journal goes out in the background (as for 500 assets): fills
    == backtest; the journal is whole once done, and a stop that leaves it no time (0 s)
    leaves it ``pending`` — the state committed, the journal never half a chunk."""
    import tandem.daemon.app as app

    from tests.test_daemon_support import (
        assert_candles_exactly_once,
        assert_journal_equal,
        batch_fills,
        replay,
        replay_window,
    )

    monkeypatch.setattr(app, "JOURNAL_AT_ONCE_ROWS", 0)
    monkeypatch.setattr(app, "STOP_JOURNAL_S", stop_s)
    if stop_s == 0.0:  # no background chunk runs before the stop: it is all left to the stop

        async def never(self):  # noqa: ANN001
            return None

        monkeypatch.setattr(app.Daemon, "_journal_between_slices", never)
    profile = small_profile(warmup=WARM)
    market = sample_market(warmup=WARM, n_tradable=40)
    db = tmp_path / "d.sqlite"
    await replay(profile, market, db)
    t0, end = replay_window(market, WARM)
    with StateStore(db) as st:
        assert_journal_equal(st.fills_frame(), batch_fills(profile, market, t0, end))
        state = st.get_meta("warmup_journal")
        n_warm = st.conn.execute("SELECT COUNT(*) FROM candles WHERE ts < ?", (t0,)).fetchone()[0]
    if stop_s:
        assert state == "done"
        assert_candles_exactly_once(db, market, profile.assets, t0 - WARM * TF_MS, end)
    else:
        # one chunk (every row here: fewer than a chunk) went out before the deadline; no "done"
        assert state == "pending" and n_warm == WARM * len(profile.assets)
