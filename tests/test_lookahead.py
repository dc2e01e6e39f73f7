"""Look-ahead probe on real data for every strategy × combiner, and proof that the probe
catches a pipeline that peeks (so a pass means something)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tandem.core.lookahead import default_cuts, lookahead_probe
from tandem.core.manifest import parse_manifest
from tandem.core.signals import signals_from_candles

from tests.conftest import REPO_ROOT

DOC = json.loads((REPO_ROOT / "manifest.json").read_text())
H = 3_600_000


def _profile(base: str, strategy: str, mode: str):
    d = json.loads(json.dumps(DOC))
    p = d["profiles"][base]
    p["strategy"] = strategy
    if mode == "vote":
        p["mtf"] = {"mode": "vote", "weights": {"1h": 1.0, "4h": 1.0, "1d": 1.0}, "min_agree": 2.0}
    else:
        p["mtf"] = {"mode": "wide", "weights": {"1h": 1.0, "4h": 2.0, "1d": 2.0}}
    return parse_manifest(d).profile(base)


@pytest.fixture(scope="module")
def universe(shared_data):
    """The profile's 20 assets from the real Binance universe, aligned (NaN = missing)."""
    path = shared_data / "binance_USDT_1h_universe.parquet"
    if not path.exists():
        pytest.skip("universe parquet not found")
    syms = parse_manifest(DOC).profile("crypto_rating_all").assets
    df = pd.read_parquet(path, filters=[("symbol", "in", syms)])
    wide = {c: df.pivot(index="timestamp", columns="symbol", values=c)[syms] for c in
            ("open", "high", "low", "close", "volume")}
    ts = wide["close"].index.to_numpy(np.int64)
    return ts, [wide[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")]


@pytest.mark.data
@pytest.mark.parametrize("mode", ["wide", "vote"])
@pytest.mark.parametrize("strategy", ["rating_all", "rating_ma", "rating_osc"])
def test_probe_real_data_discrete(universe, strategy: str, mode: str) -> None:
    ts, p = universe
    prof = _profile("crypto_rating_all", strategy, mode)
    rep = lookahead_probe(prof, ts, *p, n_cuts=6, seed=len(strategy) * 7 + len(mode))
    assert rep.ok, rep.summary()
    assert len(rep.cuts) >= 5 and rep.n_assets == 20
    # the run is not trivially flat: signals of both signs exist
    _, s, _ = signals_from_candles(prof, ts, *p)
    assert (s.signal == 1).any() and (s.signal == -1).any()


@pytest.mark.data
@pytest.mark.parametrize("mode", ["wide", "vote"])
def test_probe_real_data_portfolio(universe, mode: str) -> None:
    ts, p = universe
    prof = _profile("crypto_rating_all_portfolio", "rating_all", mode)
    rep = lookahead_probe(prof, ts, *p, n_cuts=6, seed=11)
    assert rep.ok, rep.summary()
    _, s, _ = signals_from_candles(prof, ts, *p)
    assert (np.nan_to_num(s.target) > 0).any()


def test_default_cuts_hit_htf_closes() -> None:
    ts = (np.arange(24 * 40) + 24 * 18_000) * H
    cuts = default_cuts(ts, "1h", ["4h", "1d"], n_cuts=12, seed=1)
    closes = (ts[cuts] + H) % 86_400_000 == 0
    assert closes.any() and cuts[-1] == len(ts) - 1 and len(set(cuts)) == len(cuts)


def _synthetic(n=24 * 60, n_assets=4, seed=2):
    rng = np.random.default_rng(seed)
    ts = (np.arange(n) + 24 * 18_000) * H
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, n_assets)), axis=0))
    o = np.vstack([c[:1], c[:-1]])
    h = np.maximum(o, c) * 1.003
    lo = np.minimum(o, c) * 0.997
    v = rng.random(c.shape) * 10 + 1
    return ts, [o, h, lo, c, v]


def test_probe_catches_forming_htf_bar() -> None:
    """A pipeline that shows each HTF rating one base bar early (the classic MTF bug:
    using the forming candle) must fail the probe; the real pipeline passes."""
    ts, p = _synthetic()
    prof = _profile("crypto_rating_all", "rating_all", "wide")
    syms = prof.core_assets

    def peeking(profile, ts_, *prices, symbols=None):
        r, s, st = signals_from_candles(profile, ts_, *prices, symbols=symbols)
        r = r.copy()
        r[:-1, :, 1:] = r[1:, :, 1:]  # HTF value visible one bar before its close
        from tandem.core.signals import compute_signals

        return r, compute_signals(profile, r, ts_ + H, symbols), st

    cuts = default_cuts(ts, "1h", ["4h", "1d"], n_cuts=12, seed=3)
    good = lookahead_probe(prof, ts, *p, cuts, symbols=syms)
    bad = lookahead_probe(prof, ts, *p, cuts, symbols=syms, runner=peeking)
    assert good.ok, good.summary()
    assert not bad.ok
    assert "FAILED" in bad.summary()
    failing = [c for c in bad.cuts if not c.ok]
    # it fails exactly where the last kept bar is the one before an HTF close
    assert all((ts[c.cut] + 2 * H) % (4 * H) == 0 for c in failing)
    assert bad.to_records()[0].keys() >= {"cut", "ts", "ok", "signal", "ratings"}


@pytest.mark.data
def test_warmup_sensitivity_real_data(universe) -> None:
    """Ratings from a fixed bar on depend less on the warm-up the longer it is; the
    profile's derived warm-up is not the subject here (the data is only 228 days), the
    measurement is."""
    from tandem.core.lookahead import warmup_sensitivity

    ts, p = universe
    prof = _profile("crypto_rating_all", "rating_all", "wide")
    core = prof.core_assets
    idx = [prof.assets.index(s) for s in core]
    q = [x[:, idx] for x in p]
    start = 24 * 150
    recs = warmup_sensitivity(prof, ts[: start + 24 * 30], *(x[: start + 24 * 30] for x in q),
                              start=start, lengths=[24 * 10, 24 * 40, 24 * 100, 24 * 150], symbols=core)
    by = {r["warmup_bars"]: r for r in recs}
    assert by[24 * 150]["max_diff_1h"] == 0.0 and by[24 * 150]["signal_diff"] == 0.0
    # a short warm-up leaves daily ratings unavailable or different; a long one converges
    short, long_ = by[24 * 10], by[24 * 100]
    assert short["nan_1d"] + short["max_diff_1d"] > long_["nan_1d"] + long_["max_diff_1d"]
    assert short["signal_diff"] >= long_["signal_diff"]
