"""Every emulator fault, observed from the real ccxt.pro client over a real socket.

The client's view is recorded by wrapping ``exchange.handle_message`` (the parsed frames
ccxt dispatches), so message-level faults are checked on what the client actually got.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ccxt
import pytest
from tandem.daemon.emulator import Emulator, MarketData

M = 60_000


def market(n_bars: int = 60) -> MarketData:
    return MarketData.generate(["BTC/USDT", "ETH/USDT"], "1m", n_bars=n_bars, seed=3)


def record(ex: Any) -> list[tuple[str, int, bool]]:
    """(market id, bar ts, closed flag) of every kline frame the client dispatches, in order."""
    seen: list[tuple[str, int, bool]] = []
    original = ex.handle_message

    def wrapper(client: Any, message: Any) -> Any:
        if isinstance(message, dict) and message.get("e") == "kline":
            seen.append((message["s"], message["k"]["t"], message["k"]["x"]))
        return original(client, message)

    ex.handle_message = wrapper
    return seen


async def wait_for(cond: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def watching(emu: Emulator, ex: Any, symbol: str = "BTC/USDT") -> asyncio.Task:
    """Start a watch task and wait until the emulator has the subscription."""
    task = asyncio.create_task(ex.watch_ohlcv(symbol, "1m"))
    stream = symbol.replace("/", "").lower() + "@kline_1m"
    await wait_for(lambda: stream in emu.subscriptions() or task.done())
    return task


async def outcome(task: asyncio.Task, timeout: float = 2.0) -> Any:
    try:
        return await asyncio.wait_for(task, timeout)
    except Exception as exc:  # the test inspects the exception itself
        return exc


# ----------------------------------------------------------------------- connection faults


@pytest.mark.parametrize("how", ["close_frame", "tcp_abort"])
async def test_close_frame_and_tcp_abort_reach_the_awaiting_watch(
    how: str, emulator_factory, pro_exchange_factory
) -> None:
    emu = await emulator_factory(market(), updates_per_bar=0)
    ex = pro_exchange_factory(emu)
    await ex.load_markets()
    task = await watching(emu, ex)
    if how == "close_frame":
        assert await emu.close_connections(code=1000) == 1
    else:
        assert emu.abort_connections() == 1
    err = await outcome(task)
    assert isinstance(err, ccxt.NetworkError)
    assert ("code 1000" if how == "close_frame" else "code 1006") in str(err)
    # the next watch call reconnects and resubscribes by itself
    task = await watching(emu, ex)
    assert emu.handshakes == 2
    await emu.advance(1)
    rows = await outcome(task)
    assert isinstance(rows, list) and rows[0][0] == emu.market.ts["BTC/USDT"][0]


async def test_refused_handshake_then_backoff_reconnect(emulator_factory, pro_exchange_factory) -> None:
    emu = await emulator_factory(market(), updates_per_bar=0)
    ex = pro_exchange_factory(emu)
    await ex.load_markets()
    emu.refuse_handshakes(count=1, status=503)
    err = await outcome(asyncio.ensure_future(ex.watch_ohlcv("BTC/USDT", "1m")))
    assert isinstance(err, ccxt.NetworkError) and "503" in str(err)
    assert emu.handshakes == 0 and emu.faults.pending() == 0
    task = await watching(emu, ex)  # ccxt backs off (~0.2 s) and dials again
    assert emu.handshakes == 1
    await emu.advance(1)
    assert isinstance(await outcome(task), list)


async def test_silent_socket_is_not_detected_by_ccxt(emulator_factory, pro_exchange_factory) -> None:
    """No data, pongs still answered: ccxt keeps the socket, only REST shows the closes."""
    # 10 client pings a second (keepAlive 100 ms) break Binance's 5-messages-a-second rule,
    # which the emulator enforces (close 1008): off here, this test is about silence.
    emu = await emulator_factory(market(), updates_per_bar=0, max_msgs_per_s=None)
    ex = pro_exchange_factory(emu, extra={"streaming": {"keepAlive": 100}})
    await ex.load_markets()
    task = await watching(emu, ex)
    await emu.advance(1)
    assert isinstance(await outcome(task), list)
    assert emu.silence_connections() == 1
    task = asyncio.ensure_future(ex.watch_ohlcv("BTC/USDT", "1m"))
    await emu.advance(3)
    await asyncio.sleep(0.6)  # six client keep-alive periods
    assert not task.done()
    client = next(iter(ex.clients.values()))
    assert not client.closed() and ex.milliseconds() - client.lastPong < 400  # pongs flow
    rows = await ex.fetch_ohlcv("BTC/USDT", "1m", since=emu.market.first_ts)
    assert [r[0] for r in rows[:-1]] == emu.market.ts["BTC/USDT"][:4].tolist()
    emu.silence_connections(False)
    await emu.advance(1)
    assert isinstance(await outcome(task), list)


async def test_rest_5xx_and_timeouts(emulator, pro_exchange_factory) -> None:
    ex = pro_exchange_factory(emulator, timeout_ms=300)
    await ex.load_markets()
    emulator.fail_rest(count=1, status=500)
    with pytest.raises(ccxt.OperationFailed):  # Binance's -1001 body
        await ex.fetch_ohlcv("BTC/USDT", "1m")
    emulator.fail_rest(count=1, status=502, path_prefix="/api/v3/time")
    with pytest.raises(ccxt.OperationFailed):
        await ex.fetch_time()
    emulator.stall_rest(count=1, seconds=1.0)
    with pytest.raises(ccxt.RequestTimeout):
        await ex.fetch_ohlcv("BTC/USDT", "1m")
    assert emulator.faults.pending() == 0
    assert len(await ex.fetch_ohlcv("BTC/USDT", "1m")) == 1  # healthy again


# ----------------------------------------------------------------------- message faults


def expected_frames(emu: Emulator, n: int) -> list[tuple[str, int, bool]]:
    """Undisturbed frames for ``advance(n)`` from the first bar with updates_per_bar=0."""
    ts = emu.market.ts["BTC/USDT"].tolist()
    out: list[tuple[str, int, bool]] = []
    for i in range(n):
        out += [("BTCUSDT", ts[i], True), ("BTCUSDT", ts[i + 1], False)]  # close of bar i, open tick of bar i+1
    return out


@pytest.mark.parametrize(
    ("kind", "kwargs", "reorder"),
    [
        ("duplicate", {}, lambda f: [f[0], f[0], *f[1:]]),
        ("drop", {}, lambda f: f[1:]),
        ("out_of_order", {}, lambda f: [f[1], f[0], *f[2:]]),
        # held 2 bars: released after the advance that passes E + 2 min, after its own frames
        ("late", {"delay_ms": 2 * M}, lambda f: [*f[1:], f[0]]),
    ],
)
async def test_message_faults_as_the_client_sees_them(
    kind: str, kwargs: dict, reorder: Any, emulator_factory, pro_exchange_factory
) -> None:
    emu = await emulator_factory(market(), updates_per_bar=0)
    ex = pro_exchange_factory(emu)
    await ex.load_markets()
    seen = record(ex)
    task = await watching(emu, ex)
    emu.inject_message_fault(kind, count=1, symbol="BTC/USDT", **kwargs)
    await emu.advance(3)
    want = reorder(expected_frames(emu, 3))
    await wait_for(lambda: len(seen) >= len(want))
    await asyncio.sleep(0.05)
    assert seen == want
    assert emu.faults.pending() == 0
    task.cancel()


async def test_fault_only_hits_the_chosen_symbol(emulator_factory, pro_exchange_factory) -> None:
    emu = await emulator_factory(market(), updates_per_bar=0)
    ex = pro_exchange_factory(emu)
    await ex.load_markets()
    seen = record(ex)
    tasks = [await watching(emu, ex, s) for s in ("BTC/USDT", "ETH/USDT")]
    emu.inject_message_fault("drop", symbol="ETH/USDT")
    await emu.advance(1)
    await wait_for(lambda: len(seen) >= 3)
    await asyncio.sleep(0.05)
    t0 = emu.market.ts["BTC/USDT"][0]
    assert seen.count(("BTCUSDT", t0, True)) == 1
    assert seen.count(("ETHUSDT", t0, True)) == 0  # only ETH's close was dropped
    assert ("ETHUSDT", t0 + M, False) in seen
    for t in tasks:
        t.cancel()


async def test_malformed_json_kills_ccxt_receive_loop_until_keepalive(
    emulator_factory, pro_exchange_factory
) -> None:
    """ccxt cannot parse the frame; its receive loop stops, and only the ping-pong
    keep-alive notices (RequestTimeout after keepAlive × misses): a watchdog's job."""
    emu = await emulator_factory(market(), updates_per_bar=0)
    ex = pro_exchange_factory(emu, extra={"streaming": {"keepAlive": 150}})
    await ex.load_markets()
    loop = asyncio.get_running_loop()
    handler_errors: list[Any] = []
    loop.set_exception_handler(lambda _loop, ctx: handler_errors.append(ctx.get("exception")))
    try:
        task = await watching(emu, ex)
        emu.inject_message_fault("malformed")
        await emu.advance(1)
        err = await outcome(task, timeout=3.0)
    finally:
        loop.set_exception_handler(None)
    assert isinstance(err, ccxt.RequestTimeout) and "keepalive" in str(err)
    assert any(e is not None and "JSON" in type(e).__name__ + str(e) for e in handler_errors)
    # The dead socket's subscription is gone before a new watch counts as subscribed (on
    # Python 3.12+ the emulator could still list it when the new watch started, and the
    # next bar went to the dead socket).
    await wait_for(lambda: not emu.subscriptions())
    task = await watching(emu, ex)  # a new watch reconnects
    await emu.advance(1)
    assert isinstance(await outcome(task), list)


async def test_a_client_that_stops_reading_is_dropped_not_waited_for(emulator_factory) -> None:
    """A stuck consumer must not stall the emulator (Binance drops slow clients too)."""
    import aiohttp

    emu = await emulator_factory(market(), send_timeout=0.3)
    async with aiohttp.ClientSession() as s, s.ws_connect(emu.ws_url, max_msg_size=0) as ws:
        await wait_for(lambda: len(emu.connections) == 1)
        transport = ws._response.connection.transport
        transport.pause_reading()  # the client stops reading
        t0 = time.monotonic()
        big = '{"pad":"' + "x" * 1_000_000 + '"}'
        for _ in range(64):  # far more than the socket buffers hold
            await emu.send_raw(big)
            if not emu.connections:
                break
        await wait_for(lambda: not emu.connections)  # dropped
        assert time.monotonic() - t0 < 5
        transport.resume_reading()  # let the client see the abort (else its close() waits 10 s)
