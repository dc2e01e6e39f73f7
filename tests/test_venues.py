"""Venues (issue 20): a venue the daemon does not support, a timeframe it does not stream
or a symbol it cannot stream is refused at start (one line, exit 2), before any database,
socket or emulator exists; the Binance adapter decodes Binance's documented frames."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tandem.daemon.venues import (
    ADAPTERS,
    BinanceAdapter,
    BybitAdapter,
    VenueError,
    adapter_for,
    check_venue,
)

from tests.test_daemon_support import small_profile
from tests.test_hostile_daemon import _daemon, _one_error_line


def _manifest(tmp_path: Path, **over) -> Path:
    prof = json.loads(small_profile().model_dump_json())
    prof.update(over)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "profiles": {"tst": prof}}))
    return path


def _cli(tmp_path: Path, monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    import tandem.daemon.cli as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_STATE_DB", str(tmp_path / "state.sqlite"))
    monkeypatch.setenv("TANDEM_HTTP_ENABLED", "false")
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = exc.code
    return subprocess.CompletedProcess([], code, "", capsys.readouterr().err)


@pytest.mark.parametrize("cmd", ["run", "replay"])
@pytest.mark.parametrize("venue", ["kraken", "kucoin"])
def test_unsupported_venue_is_refused_at_start(tmp_path, monkeypatch, capsys, cmd, venue):
    """Before: a profile on a ccxt venue other than Binance started, subscribed, skipped
    every frame and never traded. Now: exit 2 naming it and the supported venues, and
    nothing was started (no state database was created)."""
    m = _manifest(tmp_path, exchange=venue)
    proc = _cli(tmp_path, monkeypatch, capsys, cmd, "--manifest", str(m), "--profile", "tst")
    line = _one_error_line(proc, 2, f"exchange '{venue}' is not supported by the daemon")
    assert "(supported: binance, bybit, okx)" in line
    assert not (tmp_path / "state.sqlite").exists()
    assert not list(tmp_path.glob("*.sqlite*"))


def test_unsupported_venue_through_the_real_entry_point(tmp_path):
    proc = _daemon("replay", "--manifest", str(_manifest(tmp_path, exchange="kraken")),
                   "--profile", "tst", cwd=tmp_path, timeout=60)
    _one_error_line(proc, 2,
                    "exchange 'kraken' is not supported by the daemon (supported: binance, bybit, okx)")


@pytest.mark.parametrize("cmd", ["run", "replay"])
def test_symbol_the_venue_cannot_stream_is_named(tmp_path, monkeypatch, capsys, cmd):
    """A perpetual (``BTC/USDT:USDT``) is a valid ccxt symbol but not a spot kline stream."""
    m = _manifest(tmp_path, universe=["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"])
    proc = _cli(tmp_path, monkeypatch, capsys, cmd, "--manifest", str(m), "--profile", "tst")
    line = _one_error_line(proc, 2, "'BTC/USDT:USDT' (not a spot symbol BASE/QUOTE)")
    assert "ETH/USDT" not in line
    assert not (tmp_path / "state.sqlite").exists()


def test_timeframe_the_venue_does_not_stream_is_named():
    # Binance's documented kline intervals have no 2m and no 10m.
    for tf in ("2m", "10m"):
        with pytest.raises(VenueError, match=f"does not stream '{tf}' klines"):
            check_venue("binance", tf, ["BTC/USDT"])
    assert check_venue("binance", "1h", ["BTC/USDT"]) is ADAPTERS["binance"]


def test_registered_venues_are_the_ones_with_an_emulator_and_parity():
    from tandem.daemon.replay import emulator_class

    assert sorted(ADAPTERS) == ["binance", "bybit", "okx"]
    for venue in ADAPTERS:
        assert emulator_class(venue) is not None
    with pytest.raises(VenueError, match=r"\(supported: binance, bybit, okx\)"):
        adapter_for("kraken")


# ------------------------------------------------ the Binance adapter against Binance's docs

# The example payload of Binance's "Kline/Candlestick Streams" documentation (values as
# documented: strings for prices, bool x).
DOC_FRAME = {
    "e": "kline", "E": 1672515782136, "s": "BNBBTC",
    "k": {"t": 1672515780000, "T": 1672515839999, "s": "BNBBTC", "i": "1m", "f": 100,
          "L": 200, "o": "0.0010", "c": "0.0020", "h": "0.0025", "l": "0.0015",
          "v": "1000", "n": 100, "x": False, "q": "1.0000", "V": "500", "Q": "0.500",
          "B": "123456"},
}


def test_binance_forming_frame_is_not_closed():
    k = BinanceAdapter().parse_klines(DOC_FRAME)[0]
    assert BinanceAdapter().is_kline_frame(DOC_FRAME)
    assert (k.market_id, k.interval, k.bar_ts, k.closed, k.row) == (
        "BNBBTC", "1m", 1672515780000, False, None)


def test_binance_closed_frame_gives_the_row():
    frame = {**DOC_FRAME, "k": {**DOC_FRAME["k"], "x": True}}
    k = BinanceAdapter().parse_klines(frame)[0]
    assert k.closed and k.row == [1672515780000, 0.001, 0.0025, 0.0015, 0.002, 1000.0]


@pytest.mark.parametrize("x", ["missing", "true", 1, None])
def test_binance_closed_flag_missing_or_not_a_bool_is_not_closed(x):
    """Never guessed closed: the bar is proven closed by a newer bar and fetched over REST."""
    k = dict(DOC_FRAME["k"])
    if x == "missing":
        del k["x"]
    else:
        k["x"] = x
    parsed = BinanceAdapter().parse_klines({**DOC_FRAME, "k": k})[0]
    assert parsed.closed is False and parsed.row is None


def test_binance_subscribe_and_rest_request_match_the_docs():
    a = BinanceAdapter()
    market = {"id": "BTCUSDT", "lowercaseId": "btcusdt"}
    assert a.stream_name(market, "1h") == "btcusdt@kline_1h"
    assert a.subscribe_message(["btcusdt@kline_1h"], 7) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@kline_1h"], "id": 7}
    assert a.klines_request(market, "1h", 1_700_000_000_000, 5000) == {
        "symbol": "BTCUSDT", "interval": "1h", "startTime": 1_700_000_000_000, "limit": 1000}


def test_library_use_of_an_unsupported_venue_is_refused_too():
    """``Daemon`` builds its client with ``build_exchange``: no adapter, no client."""
    from tandem.daemon.client import build_exchange

    with pytest.raises(VenueError, match="'kraken' is not supported"):
        build_exchange("kraken", "http://127.0.0.1:9", "ws://127.0.0.1:9")
    ex = build_exchange("binance", "http://127.0.0.1:9", "ws://127.0.0.1:9")
    assert ex.venue is ADAPTERS["binance"]
    assert ex.conn_plan.cap == 200 and ex.subscribe_msgs_per_s == 3
    assert ex.rest_budget.rate > 0


def test_binance_rest_rows_are_oldest_first_and_tolerate_bad_fields():
    # GET /api/v3/klines as documented: 12 fields, strings for prices
    doc = [[1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100",
            "148976.11427815", 1499644799999, "2434.19055334", 308, "1756.87402397",
            "28.46694368", "0"]]
    assert BinanceAdapter().rest_rows(doc) == [
        [1499040000000, 0.0163479, 0.8, 0.015758, 0.015771, 148976.11427815]]
    assert BinanceAdapter().rest_rows([[1, "x", "1", "1", "1", "1"]]) == [[1, None, 1.0, 1.0, 1.0, 1.0]]


# ------------------------------------------------ Bybit against Bybit's docs

# Bybit v5 docs, "Kline" (public websocket) example frame
BYBIT_FRAME = {
    "topic": "kline.5.BTCUSDT",
    "data": [{"start": 1672324800000, "end": 1672325099999, "interval": "5",
              "open": "16649.5", "close": "16677", "high": "16677", "low": "16608",
              "volume": "2.081", "turnover": "34666.4005", "confirm": False,
              "timestamp": 1672324988882}],
    "ts": 1672324988882, "type": "snapshot",
}


def test_bybit_frames_decode_with_confirm_as_the_closed_flag():
    a = BybitAdapter()
    assert a.is_kline_frame(BYBIT_FRAME) and not a.is_kline_frame(DOC_FRAME)
    (k,) = a.parse_klines(BYBIT_FRAME)
    assert (k.market_id, k.interval, k.bar_ts, k.closed, k.row) == (
        "BTCUSDT", "5", 1672324800000, False, None)
    closed = {**BYBIT_FRAME, "data": [{**BYBIT_FRAME["data"][0], "confirm": True}]}
    (k,) = a.parse_klines(closed)
    assert k.closed and k.row == [1672324800000, 16649.5, 16677.0, 16608.0, 16677.0, 2.081]
    missing = {**BYBIT_FRAME, "data": [{kk: v for kk, v in BYBIT_FRAME["data"][0].items()
                                        if kk != "confirm"}]}
    assert a.parse_klines(missing)[0].closed is False
    assert a.parse_klines({"topic": "kline.5", "data": []}) is None


def test_bybit_rest_rows_come_newest_first_and_page_forward_with_end():
    a = BybitAdapter()
    # Bybit v5 docs, "Get Kline" example response (newest first)
    doc = {"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSD", "category": "inverse",
           "list": [["1670608800000", "17071", "17073", "17027", "17055.5", "268611", "15.74462667"],
                    ["1670605200000", "17071.5", "17071.5", "17061", "17071", "4177", "0.24469757"],
                    ["1670601600000", "17086.5", "17088", "16978", "17071.5", "6356", "0.37288112"]]},
           "retExtInfo": {}, "time": 1672025956592}
    rows = a.rest_rows(doc)
    assert [r[0] for r in rows] == [1670601600000, 1670605200000, 1670608800000]
    assert rows[-1] == [1670608800000, 17071.0, 17073.0, 17027.0, 17055.5, 268611.0]
    req = a.klines_request({"id": "BTCUSDT"}, "60", 1670601600000, 5000)
    assert req == {"category": "spot", "symbol": "BTCUSDT", "interval": "60", "limit": 1000,
                   "start": 1670601600000, "end": 1670601600000 + 1000 * 3_600_000 - 1}
    assert a.subscribe_message(["kline.60.BTCUSDT"], 3) == {
        "op": "subscribe", "args": ["kline.60.BTCUSDT"], "req_id": "3"}


def test_bybit_does_not_stream_8h():
    assert "8h" not in BybitAdapter.ws_timeframes and "1h" in BybitAdapter.ws_timeframes
    with pytest.raises(VenueError, match="'bybit' does not stream '8h' klines"):
        check_venue("bybit", "8h", ["BTC/USDT"])


def test_bybit_profile_with_8h_base_is_refused_at_start(tmp_path, monkeypatch, capsys):
    m = _manifest(tmp_path, exchange="bybit", base_timeframe="8h", timeframes=["8h", "1d"],
                  mtf={"mode": "wide", "weights": {"8h": 1.0, "1d": 1.0}},
                  portfolio={"rebalance_every": "1d", "max_weight": 0.4})
    proc = _cli(tmp_path, monkeypatch, capsys, "replay", "--manifest", str(m), "--profile", "tst")
    _one_error_line(proc, 2, "exchange 'bybit' does not stream '8h' klines")


# ------------------------------------------------ venues in one process share no state

async def _subscribed(exchange_id: str, names: list[str], **build) -> tuple[list[int], list[int]]:
    """(streams in each subscribe message, streams on each connection) when the daemon's
    exchange for ``exchange_id`` watches the 1m klines of ``names`` on that venue's emulator."""
    import asyncio
    import contextlib

    from tandem.daemon.client import build_exchange
    from tandem.daemon.emulator.market import MarketData
    from tandem.daemon.replay import emulator_class, wait_subscribed

    market = MarketData.generate(names, "1m", n_bars=20)
    async with emulator_class(exchange_id)(market, start=market.first_ts) as emu:
        ex = build_exchange(exchange_id, emu.rest_url, emu.ws_url, **build)
        watches = [asyncio.ensure_future(ex.watch_ohlcv(s, "1m")) for s in names]
        try:
            await wait_subscribed(emu, len(names), timeout_s=20)
            per_connection = sorted(len(c.subs) for c in emu.connections if c.subs)
        finally:
            for w in watches:
                w.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*watches, return_exceptions=True)
            await ex.close()
    return sorted(len(streams) for _, streams in emu.subscribe_log), per_connection


async def test_a_venue_on_ccxts_own_subscribe_leaves_the_others_batched():
    """ccxt.pro bybit and binance write ``params["callerMethodName"]`` into the dict their
    ``watch_ohlcv`` gets. The daemon's override once handed ccxt its shared default dict,
    so after one call through ccxt's own path every later exchange of every venue in the
    process saw params and subscribed one stream per message on one connection: Binance's
    500 streams (tests/test_scale.py after tests/test_venue_bybit.py) were closed 1008."""

    class Unbatched(BybitAdapter):
        batched_subscribe = False

    names = [f"Q{chr(65 + i // 26)}{chr(65 + i % 26)}/USDT" for i in range(25)]
    # ccxt.pro bybit's own path: one topic per subscribe, one connection
    assert await _subscribed("bybit", names[:2], venue=Unbatched()) == ([1, 1], [2])
    for venue in ("binance", "bybit", "okx"):
        # 25 streams, 10 a connection: 3 connections, each subscribed in one message
        assert await _subscribed(venue, names, streams_per_connection=10) == (
            [5, 10, 10], [5, 10, 10]), venue
