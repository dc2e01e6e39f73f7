"""Planted differences through the real live path, each classified by reconcile.

Like ``test_parity.py`` (same real candles, manifest and backtests), but the replay is
disturbed on purpose and reconcile must name the cause:

* a candle altered in the emulator only (the store keeps the true one) -> ``data``/altered;
* a closing candle held back past the daemon's grace period (the slice is stepped without
  that asset; the candle arrives afterwards) -> ``data``/late.

* the daemon runs another intrabar policy than the backtest -> ``intrabar``;
* the daemon runs another entry threshold than the backtest -> ``config``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from tandem.backtest.reconcile import reconcile
from tandem.core import journal
from tandem.core.store import CandleStore

from tests.test_parity import START, TF, WARMUP, backtest
from tests.test_parity import world as world  # noqa: F401 - the shared fixture

pytestmark = [pytest.mark.slow, pytest.mark.data]

SHORT_END = START + 4 * 24 * TF  # four days are enough to show one planted difference
PROFILE = "rating_all_discrete"


def replay(world: dict, db: Path, *, alter=None, plant=None, grace_s: float = 60.0,  # noqa: ANN001
           bar_timeout_s: float = 3.0, manifest: Path | None = None) -> None:
    """Replay PROFILE over [START, SHORT_END) in-process, through emulator + ccxt.pro + daemon."""
    from tandem.core.manifest import load_manifest
    from tandem.core.timeframes import timeframe_to_ms
    from tandem.daemon.app import Daemon, DaemonConfig
    from tandem.daemon.emulator.market import MarketData
    from tandem.daemon.replay import run_replay
    from tandem.daemon.strategy import stepper_factory

    prof = load_manifest(manifest or world["manifest"]).profile(PROFILE)
    store = CandleStore(world["store"], exchange="binance", timeframe="1h")
    aligned = store.load_aligned(prof.assets, "1h", START - WARMUP * TF, SHORT_END)
    market = MarketData.from_aligned(aligned, "1h")
    if alter is not None:
        alter(market)
    cfg = DaemonConfig(
        profile_name=prof.name, profile_json=prof.canonical_json(), symbols=prof.assets,
        exchange_id=prof.exchange, base_timeframe=prof.base_timeframe,
        tf_ms=timeframe_to_ms(prof.base_timeframe), warmup_bars=prof.warmup, state_db=db,
        grace_s=grace_s, watchdog_s=30.0, fresh=True,
    )

    async def go() -> None:
        await run_replay(Daemon(cfg, stepper_factory(prof)), market, START, SHORT_END,
                         on_emulator=plant, bar_timeout_s=bar_timeout_s)

    asyncio.run(go())


def first_fill_after(bt: Path, hours: int) -> tuple[str, int]:
    """(symbol, bar open ts) of the backtest's first signal fill (entry/exit: at the bar's
    close, so a changed or missing close must change it) ``hours`` into the run."""
    f = journal.read_parquet(bt)
    f = f[(f["ts"] >= START + hours * TF) & f["reason"].isin(["entry", "exit"])]
    return str(f["symbol"].iloc[0]), int(f["ts"].iloc[0]) - TF


def test_candle_altered_in_emulator_is_data(world):  # noqa: F811
    bt = backtest(world, PROFILE, SHORT_END)
    sym, bar = first_fill_after(bt, 24)

    def alter(market) -> None:  # noqa: ANN001
        i = int(np.searchsorted(market.ts[sym], bar))
        o, h, lo, c, v = market.ohlcv[sym][i]
        market.ohlcv[sym][i, 3] = c * 1.03
        market.ohlcv[sym][i, 1] = max(h, c * 1.03)

    db = world["root"] / "planted-altered.sqlite"
    replay(world, db, alter=alter)
    report = reconcile(db, bt, history=world["store"], backtest_manifest=world["manifest"])
    text = report.to_terminal()
    assert not report.ok
    ev = report.events
    assert list(zip(ev["kind"], ev["symbol"], ev["ts"], strict=True)) == [("altered", sym, bar)], text
    d = report.differences
    assert len(d) > 0 and set(d["category"]) == {"data"}, text
    first = d.sort_values("ts", kind="stable").iloc[0]
    assert first["ts"] == bar + TF and first["symbol"] == sym, text
    assert f"altered candle {sym}" in first["evidence"]


def test_candle_later_than_grace_is_data(world):  # noqa: F811
    bt = backtest(world, PROFILE, SHORT_END)
    sym, bar = first_fill_after(bt, 24)
    armed: list[int] = []

    def plant(emu) -> None:  # noqa: ANN001
        advance = emu.advance

        async def advance_and_delay(n_bars: int = 1) -> int:
            if emu.now == bar and not armed:  # this advance closes the bar opening at `bar`
                # Hold every frame of this stream in the bar and at its close (mid-bar update,
                # closing frame, next bar's first update): a newer bar's frame would let the
                # daemon see the close and fetch it over REST in time.
                emu.inject_message_fault("late", count=3, symbol=sym, closing_only=False,
                                         delay_ms=2 * TF)
                armed.append(bar)
            return await advance(n_bars)

        emu.advance = advance_and_delay

    db = world["root"] / "planted-late.sqlite"
    # Grace 1 s: the held-back candle misses its slice; every other one arrives in time.
    replay(world, db, plant=plant, grace_s=1.0, bar_timeout_s=4.0)
    assert armed == [bar]
    report = reconcile(db, bt, history=world["store"], backtest_manifest=world["manifest"])
    text = report.to_terminal()
    assert not report.ok
    ev = report.events
    assert ("late", sym, bar) in set(zip(ev["kind"], ev["symbol"], ev["ts"], strict=True)), text
    d = report.differences
    assert len(d) > 0 and set(d["category"]) == {"data"}, text
    at_bar = d[(d["ts"] == bar + TF) & (d["symbol"] == sym)]
    assert len(at_bar) and all(f"late candle {sym}" in e for e in at_bar["evidence"]), text


def variant(world: dict, name: str, **changes: dict) -> Path:
    """A copy of the world's manifest with PROFILE's sections updated (``exit_rules={...}``)."""
    data = json.loads(world["manifest"].read_text())
    prof = data["profiles"][PROFILE]
    for key, value in changes.items():
        if isinstance(value, dict):
            prof[key] = {**prof[key], **value}
        else:
            prof[key] = value
    path = world["root"] / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_intrabar_policy_change_through_replay(world):  # noqa: F811
    # Tight stops so that some bars hold both the stop and the target.
    tight = {"stop_loss_pct": 0.004, "take_profit_pct": 0.005, "trailing_stop_pct": None}
    bt_manifest = variant(world, "tight-pessimistic", exit_rules={**tight, "intrabar": "pessimistic"})
    paper_manifest = variant(world, "tight-ohlc", exit_rules={**tight, "intrabar": "ohlc"})
    bt = backtest(world, PROFILE, SHORT_END, manifest=bt_manifest)
    db = world["root"] / "planted-intrabar.sqlite"
    replay(world, db, manifest=paper_manifest)
    # The backtest side knows only its profile hash (stats.json): the intrabar-only change is
    # recognised by re-hashing the daemon's profile JSON with each policy.
    report = reconcile(db, bt, history=world["store"])
    text = report.to_terminal()
    (p,) = report.profiles
    assert p.config.fields == ("exit_rules.intrabar",), text
    d = report.differences
    assert len(d) > 0 and set(d["category"]) == {"intrabar"}, text
    roots = d[d["caused_by"] == ""]
    assert set(roots["intrabar_backtest"].dropna()) <= {"pessimistic"}
    assert set(roots["intrabar_paper"].dropna()) <= {"ohlc"}
    assert report.events.empty


def test_threshold_change_through_replay(world):  # noqa: F811
    bt = backtest(world, PROFILE, SHORT_END)
    paper_manifest = variant(world, "threshold", entry_threshold=0.25)
    db = world["root"] / "planted-threshold.sqlite"
    replay(world, db, manifest=paper_manifest)
    report = reconcile(db, bt, history=world["store"], backtest_manifest=world["manifest"])
    text = report.to_terminal()
    (p,) = report.profiles
    assert p.config.hash_differs and p.config.fields == ("entry_threshold",), text
    d = report.differences
    assert len(d) > 0 and set(d["category"]) == {"config"}, text
