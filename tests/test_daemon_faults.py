"""Injected faults, one at a time and mixed, with the real ccxt.pro client over real sockets:
every closed candle reaches the engine exactly once, in order, with the exchange's values,
and the fills equal the undisturbed batch run. Bad messages are logged and skipped (or the
bar is re-fetched over REST) and the daemon keeps going."""

from __future__ import annotations

import io
import json

import pytest
from tandem.daemon.emulator.market import kline_event
from tandem.daemon.logconfig import configure_logging
from tandem.daemon.state import StateStore

from tests.test_daemon_support import (
    TF,
    TF_MS,
    assert_candles_exactly_once,
    assert_journal_equal,
    batch_fills,
    replay,
    replay_window,
    sample_market,
    small_profile,
)

AT = 25  # inject after this many live bars (well after warm-up)


async def _close(emu):
    await emu.close_connections()


async def _abort(emu):
    emu.abort_connections()


async def _silence(emu):
    emu.silence_connections(True)  # the watchdog (3 s) must force a reconnect


async def _refuse(emu):
    emu.refuse_handshakes(3)
    await emu.close_connections()


async def _rest_5xx(emu):
    emu.inject_message_fault("drop", count=2)  # force backfills...
    emu.fail_rest(3, status=503)  # ...that first meet three 503s


async def _rest_timeout(emu):
    emu.inject_message_fault("drop", count=1)
    emu.stall_rest(1, seconds=3.0)  # the client times out at 2 s and retries


def _msg(kind, count=4, **kw):
    async def inject(emu):
        emu.inject_message_fault(kind, count=count, **kw)
    return inject


async def _mix(emu, k):
    steps = {
        AT: _msg("duplicate"), AT + 3: _msg("out_of_order"), AT + 6: _close,
        AT + 9: _msg("late", delay_ms=2 * TF_MS), AT + 12: _msg("malformed"),
        AT + 15: _abort, AT + 18: _msg("drop", count=3), AT + 21: _refuse,
        AT + 24: _rest_5xx, AT + 27: _silence, AT + 33: _rest_timeout,
    }
    if k in steps:
        await steps[k](emu)


FAULTS = {
    "close_frame": _close,
    "tcp_abort": _abort,
    "silent_socket": _silence,
    "refused_handshakes": _refuse,
    "rest_5xx": _rest_5xx,
    "rest_timeout": _rest_timeout,
    "duplicate": _msg("duplicate"),
    "out_of_order": _msg("out_of_order"),
    "late": _msg("late", delay_ms=2 * TF_MS),
    "malformed": _msg("malformed"),
    "drop": _msg("drop"),
}


async def _run(tmp_path, on_bar, n_tradable=60):
    profile = small_profile()
    market = sample_market(n_tradable=n_tradable)
    db = tmp_path / "d.sqlite"
    daemon = await replay(profile, market, db, on_bar=on_bar)
    t0, end = replay_window(market)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    with StateStore(db) as st:
        paper = st.fills_frame()
        assert st.last_ts == end - TF_MS
    assert_journal_equal(paper, batch_fills(profile, market, t0, end))
    return daemon


@pytest.mark.parametrize("name", list(FAULTS))
async def test_each_fault_exactly_once_and_same_fills(tmp_path, name):
    fault = FAULTS[name]

    async def on_bar(emu, k):
        if k == AT:
            await fault(emu)

    daemon = await _run(tmp_path, on_bar)
    feeds = daemon.supervisor.feeds
    if name in ("close_frame", "tcp_abort", "silent_socket", "refused_handshakes"):
        assert sum(f.reconnects for f in feeds) > 0
    if name == "silent_socket":
        assert daemon.supervisor.watchdog_fires > 0
    if name in ("drop", "late", "rest_5xx", "rest_timeout"):
        # the initial warm-up backfill is one per feed; the fault needed more
        assert sum(f.backfills for f in feeds) > len(feeds)


async def test_mix_of_all_faults(tmp_path):
    daemon = await _run(tmp_path, _mix, n_tradable=75)
    assert daemon.supervisor.watchdog_fires > 0
    assert sum(f.reconnects for f in daemon.supervisor.feeds) > 0


async def test_bad_messages_logged_and_skipped(tmp_path):
    """Malformed JSON, an unknown symbol, a kline for an unsubscribed stream and a closing
    candle with high < low: each is logged; the bad close is not trusted and the bar is
    fetched over REST instead (stated rule in tandem.daemon.feeds), so parity still holds."""
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    profile = small_profile()
    market = sample_market(n_tradable=40, symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"))
    # The profile trades the first three only; XRP/USDT is listed but never subscribed.
    assert "XRP/USDT" not in profile.assets

    async def on_bar(emu, k):
        if k != AT:
            return
        stream = "btcusdt@kline_1m"
        await emu.send_raw('{"e": "kline", "k": {"s": "BTCUSDT",', stream)  # malformed JSON
        bar = market.bar("BTC/USDT", int((emu.now - market.first_ts) // TF_MS) - 1)
        unknown = kline_event("BTC/USDT", TF, bar, TF_MS, emu.now)
        unknown["s"] = unknown["k"]["s"] = "NOPEUSDT"
        await emu.send_raw(unknown, stream)
        xrp_i = int((emu.now - market.first_ts) // TF_MS) - 1
        unsub = kline_event("XRP/USDT", TF, market.bar("XRP/USDT", xrp_i), TF_MS, emu.now)
        await emu.send_raw(unsub, stream)
        # The next bar's closing frame arrives with high < low (a corrupted print).
        nxt = market.bar("BTC/USDT", int((emu.now - market.first_ts) // TF_MS))
        bad = kline_event("BTC/USDT", TF, nxt, TF_MS, emu.now + TF_MS)
        bad["k"]["h"], bad["k"]["l"] = bad["k"]["l"], bad["k"]["h"]
        bad["k"]["x"] = True
        await emu.send_raw(bad, stream)
        emu.inject_message_fault("drop", count=1, symbol="BTC/USDT")  # the true close is lost

    try:
        db = tmp_path / "d.sqlite"
        await replay(profile, market, db, on_bar=on_bar)
    finally:
        configure_logging("json", "WARNING")
    events = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
    names = {e["event"] for e in events}
    assert {"ws_malformed_frame", "kline_unknown_symbol", "kline_unsubscribed",
            "ws_candle_invalid"} <= names, names
    t0, end = replay_window(market)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    with StateStore(db) as st:
        assert_journal_equal(st.fills_frame(), batch_fills(profile, market, t0, end))
