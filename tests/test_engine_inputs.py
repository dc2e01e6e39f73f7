"""Bad input is refused with a clear ValueError before any fill is produced."""

from __future__ import annotations

import numpy as np
import pytest
from tandem.core.engine import Engine, EngineConfig, run_batch

HOUR = 3_600_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stop_loss_pct": -0.01}, "stop_loss_pct"),
        ({"take_profit_pct": -0.5}, "take_profit_pct"),
        ({"trailing_stop_pct": -0.1}, "trailing_stop_pct"),
        ({"stop_loss_pct": 1.5}, "stop_loss_pct"),
        ({"fee_rate": -0.001}, "fee_rate"),
        ({"slippage_bps": -1}, "slippage_bps"),
        ({"size_pct": 0.0}, "size_pct"),
        ({"size_pct": 1.5}, "size_pct"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"initial_cash": 0.0}, "initial_cash"),
        ({"sizing": "risk"}, "stop_loss_pct"),
        ({"intrabar": "optimistic"}, "intrabar"),
        ({"mode": "portfolio", "long_short": True}, "long-only"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_config_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EngineConfig(**kwargs)


def test_zero_or_nan_stop_means_off() -> None:
    """docs/CONTRACTS.md: NaN or 0 switch a stop off (the manifest uses both)."""
    for v in (0.0, float("nan"), None):
        p = EngineConfig(stop_loss_pct=v, take_profit_pct=v).to_params()
        assert p[0] == 0.0 and p[1] == 0.0


def arrays(n: int = 5, m: int = 2):
    c = np.full((n, m), 100.0)
    return (np.arange(n) + 1) * HOUR, c, c * 1.01, c * 0.99, c


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.update(high=a["high"][:, :1]), "high has shape"),
        (lambda a: a.update(signals=a["signals"][:-1]), "signals has shape"),
        (lambda a: a.update(ts_close=a["ts_close"][:-1]), "ts_close has shape"),
        (lambda a: a.update(ts_close=a["ts_close"][::-1].copy()), "strictly increasing"),
        (lambda a: a["signals"].__setitem__((1, 1), 2.0), "-1, 0 or \\+1"),
        (lambda a: a["open"].__setitem__((1, 1), np.nan), "open/high/low is not finite"),
        (lambda a: a["close"].__setitem__((1, 1), -5.0), "prices must be finite and > 0"),
    ],
)
def test_run_batch_rejects(mutate, match: str) -> None:  # noqa: ANN001
    ts, o, h, lo, c = arrays()
    a = {
        "ts_close": ts,
        "open": o.copy(),
        "high": h.copy(),
        "low": lo.copy(),
        "close": c.copy(),
        "signals": np.ones_like(c),
    }
    mutate(a)
    with pytest.raises(ValueError, match=match):
        run_batch(
            EngineConfig(),
            a["ts_close"],
            a["open"],
            a["high"],
            a["low"],
            a["close"],
            a["signals"],
            symbols=["A", "B"],
            profile="p",
            run_id="r",
        )


def test_portfolio_weights_summing_over_one() -> None:
    ts, o, h, lo, c = arrays()
    w = np.full_like(c, np.nan)
    w[2] = [0.7, 0.4]
    cfg = EngineConfig(mode="portfolio")
    with pytest.raises(ValueError, match="sum to more than 1.*row 2"):
        run_batch(cfg, ts, o, h, lo, c, w, symbols=["A", "B"], profile="p", run_id="r")
    # The cap applies first: 0.7 and 0.4 capped at 0.5 sum to 0.9, which is fine.
    cfg = EngineConfig(mode="portfolio", max_weight=0.5)
    res = run_batch(cfg, ts, o, h, lo, c, w, symbols=["A", "B"], profile="p", run_id="r")
    assert len(res.fills) == 2
    w[3] = [-0.1, 0.2]
    with pytest.raises(ValueError, match=">= 0"):
        run_batch(cfg, ts, o, h, lo, c, w, symbols=["A", "B"], profile="p", run_id="r")


def test_symbols_count_must_match() -> None:
    ts, o, h, lo, c = arrays()
    with pytest.raises(ValueError, match="2 asset columns"):
        run_batch(EngineConfig(), ts, o, h, lo, c, c * 0, symbols=["A"], profile="p", run_id="r")


def test_rejected_step_leaves_state_untouched() -> None:
    eng = Engine(EngineConfig(), ["A", "B"])
    eng.step(HOUR, [100, 100], [101, 101], [99, 99], [100, 100], [1, 0])
    before = eng.to_bytes()
    with pytest.raises(ValueError, match="signal has shape"):
        eng.step(2 * HOUR, [100, 100], [101, 101], [99, 99], [100, 100], [1, 0, 1])
    with pytest.raises(ValueError, match="not after the last slice"):
        eng.step(HOUR, [100, 100], [101, 101], [99, 99], [100, 100], [1, 0])
    with pytest.raises(ValueError, match="-1, 0 or"):
        eng.step(2 * HOUR, [100, 100], [101, 101], [99, 99], [100, 100], [0.5, 0])
    assert eng.to_bytes() == before


def test_from_bytes_rejects_foreign_data() -> None:
    blob = Engine(EngineConfig(), ["A"]).to_bytes()
    with pytest.raises(ValueError):
        Engine.from_bytes(blob[:-8])
