"""The daemon's duplicate candles follow the read policy's rule (core.candles.clean_candles):
among copies of one bar the first *valid* copy counts, and the bar is stepped once.

* A closing websocket frame repeated, the first copy malformed and the second good: the bad
  frame is not trusted (not recorded), the good one is delivered (origin ``ws``, no REST),
  and every bar is consumed exactly once (checked against the emulator's market).
* A REST page repeating a bar, a bad copy after a good one: the good copy is delivered. It
  used to keep the last copy (a dict built over the page), drop it as bad and leave a hole.
"""

from __future__ import annotations

import sqlite3

from tandem.daemon.emulator.market import kline_event
from tandem.daemon.feeds import CandleFeed, first_valid_rows

from tests.test_daemon_support import (
    TF,
    TF_MS,
    assert_candles_exactly_once,
    replay,
    replay_window,
    sample_market,
    small_profile,
)

AT = 25
T = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
M = 60_000


def _row(ts: int, close: float = 100.0) -> list:
    return [ts, 100.0, 101.0, 99.0, close, 5.0]


def _bad(ts: int) -> list:
    return [ts, 100.0, 98.0, 99.0, 100.0, 5.0]  # high < low


class _RestOnly:
    """The least of an exchange a feed's REST backfill touches."""

    def __init__(self, rows: list[list]):
        self.rows = rows
        self.subscribed: set = set()
        self.closed_rows: dict = {}

    async def fetch_ohlcv(self, symbol, timeframe, since=None, limit=None):  # noqa: ANN001
        return [r for r in self.rows if r[0] >= since]


async def _backfill(rows: list[list]) -> list:
    got: list = []

    async def start(first: int) -> int:
        return first

    feed = CandleFeed(_RestOnly(rows), "BTC/USDT", "1m", M, start, got.append)
    feed.next_ts, feed.forming_ts = T, T + 3 * M
    await feed._backfill()
    return got


async def test_rest_page_repeating_a_bar_keeps_its_first_valid_copy():
    for page in (
        [_row(T), _row(T + M, 100.5), _bad(T + M), _row(T + 2 * M), _row(T + 3 * M)],
        [
            _row(T),
            _bad(T + M),
            _row(T + M, 100.5),
            _row(T + M, 101.0),
            _row(T + 2 * M),
            _row(T + 3 * M),
        ],
    ):
        got = await _backfill(page)
        assert [c.ts for c in got] == [T, T + M, T + 2 * M]
        assert got[1].close == 100.5 and got[1].high > got[1].low


def test_first_valid_rows_rule():
    assert first_valid_rows([_bad(T), _bad(T)])[T] == _bad(T)  # none valid: the first
    assert first_valid_rows([_row(T, 1.5), _row(T, 1.25)], M)[T][4] == 1.5  # both valid: first
    assert first_valid_rows([_bad(T), _row(T)])[T] == _row(T)


async def test_repeated_closing_frame_bad_then_good_is_delivered_once_from_ws(tmp_path):
    profile = small_profile()
    market = sample_market(n_tradable=40)
    at: dict = {}

    async def on_bar(emu, k):
        if k != AT:
            return
        stream = "btcusdt@kline_1m"
        i = int((emu.now - market.first_ts) // TF_MS)
        bar = market.bar("BTC/USDT", i)  # the bar forming now
        good = kline_event("BTC/USDT", TF, bar, TF_MS, emu.now + TF_MS)
        good["k"]["x"] = True
        bad = kline_event("BTC/USDT", TF, bar, TF_MS, emu.now + TF_MS)
        bad["k"]["h"], bad["k"]["l"] = bad["k"]["l"], bad["k"]["h"]  # high < low
        bad["k"]["x"] = True
        at["ts"] = bar.ts
        await emu.send_raw(bad, stream)
        await emu.send_raw(good, stream)
        # The exchange's own close of the bar is lost: only the repeat can give it over ws
        # (else the feed re-fetches it over REST: origin "rest").
        emu.inject_message_fault("drop", count=1, symbol="BTC/USDT")

    db = tmp_path / "d.sqlite"
    await replay(profile, market, db, on_bar=on_bar)
    t0, end = replay_window(market)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    con = sqlite3.connect(str(db))
    try:
        (origin,) = con.execute(
            "SELECT origin FROM candles WHERE symbol = ? AND ts = ?", ("BTC/USDT", at["ts"])
        ).fetchone()
    finally:
        con.close()
    assert origin == "ws"  # the good repeat was used, not a REST re-fetch
