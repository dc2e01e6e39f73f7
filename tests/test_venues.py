"""Venues (issue 20): a venue the daemon does not support, a timeframe it does not stream
or a symbol it cannot stream is refused at start (one line, exit 2), before any database,
socket or emulator exists; the Binance adapter decodes Binance's documented frames."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from daemon.venues import ADAPTERS, BinanceAdapter, VenueError, adapter_for, check_venue
from tests.test_daemon_support import small_profile
from tests.test_hostile_daemon import _daemon, _one_error_line


def _manifest(tmp_path: Path, **over) -> Path:
    prof = json.loads(small_profile().model_dump_json())
    prof.update(over)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "profiles": {"tst": prof}}))
    return path


def _cli(tmp_path: Path, monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    import daemon.cli as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_STATE_DB", str(tmp_path / "state.sqlite"))
    monkeypatch.setenv("TANDEM_HTTP_ENABLED", "false")
    try:
        code = cli.main(list(args))
    except SystemExit as exc:
        code = exc.code
    return subprocess.CompletedProcess([], code, "", capsys.readouterr().err)


@pytest.mark.parametrize("cmd", ["run", "replay"])
@pytest.mark.parametrize("venue", ["kraken", "bybit", "okx"])
def test_unsupported_venue_is_refused_at_start(tmp_path, monkeypatch, capsys, cmd, venue):
    """Before: a profile on a ccxt venue other than Binance started, subscribed, skipped
    every frame and never traded. Now: exit 2 naming it and the supported venues, and
    nothing was started (no state database was created)."""
    m = _manifest(tmp_path, exchange=venue)
    proc = _cli(tmp_path, monkeypatch, capsys, cmd, "--manifest", str(m), "--profile", "tst")
    line = _one_error_line(proc, 2, f"exchange '{venue}' is not supported by the daemon")
    assert "(supported: binance)" in line
    assert not (tmp_path / "state.sqlite").exists()
    assert not list(tmp_path.glob("*.sqlite*"))


def test_unsupported_venue_through_the_real_entry_point(tmp_path):
    proc = _daemon("replay", "--manifest", str(_manifest(tmp_path, exchange="kraken")),
                   "--profile", "tst", cwd=tmp_path, timeout=60)
    _one_error_line(proc, 2, "exchange 'kraken' is not supported by the daemon (supported: binance)")


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


def test_only_binance_is_registered_until_another_passes_parity():
    assert sorted(ADAPTERS) == ["binance"]
    with pytest.raises(VenueError, match=r"\(supported: binance\)"):
        adapter_for("bybit")


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
    k = BinanceAdapter().parse_kline(DOC_FRAME)
    assert BinanceAdapter().is_kline_frame(DOC_FRAME)
    assert (k.market_id, k.interval, k.bar_ts, k.closed, k.row) == (
        "BNBBTC", "1m", 1672515780000, False, None)


def test_binance_closed_frame_gives_the_row():
    frame = {**DOC_FRAME, "k": {**DOC_FRAME["k"], "x": True}}
    k = BinanceAdapter().parse_kline(frame)
    assert k.closed and k.row == [1672515780000, 0.001, 0.0025, 0.0015, 0.002, 1000.0]


@pytest.mark.parametrize("x", ["missing", "true", 1, None])
def test_binance_closed_flag_missing_or_not_a_bool_is_not_closed(x):
    """Never guessed closed: the bar is proven closed by a newer bar and fetched over REST."""
    k = dict(DOC_FRAME["k"])
    if x == "missing":
        del k["x"]
    else:
        k["x"] = x
    parsed = BinanceAdapter().parse_kline({**DOC_FRAME, "k": k})
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
    from daemon.client import build_exchange

    with pytest.raises(VenueError, match="'kraken' is not supported"):
        build_exchange("kraken", "http://127.0.0.1:9", "ws://127.0.0.1:9")
    ex = build_exchange("binance", "http://127.0.0.1:9", "ws://127.0.0.1:9")
    assert ex.venue is ADAPTERS["binance"]
    assert ex.conn_plan.cap == 200 and ex.subscribe_msgs_per_s == 3
    assert ex.rest_budget.rate > 0
