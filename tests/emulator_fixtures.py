"""Shared pytest fixtures that run the exchange emulator on 127.0.0.1 (OS-chosen port).

Imported into ``tests/conftest.py``; any test can ask for:

* ``emulator_factory`` -> ``await make(market=None, **Emulator kwargs)``; every emulator it
  starts is stopped at teardown. Default market: :func:`sample_market`.
* ``emulator`` -> one started emulator on the default market, clock at its first bar.
* ``pro_exchange_factory`` -> ``make(emu, **create_exchange kwargs)``: a ccxt.pro binance
  client pointed at ``emu`` (closed at teardown).

``emulator_in_thread(market, **kwargs)`` is a context manager running an emulator on its
own event loop in a thread, for blocking code under test (sync wrappers, CLIs in-process);
drive its clock with ``run_in(emu, emu.advance(3))``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest_asyncio
from tandem.core.exchange import create_exchange
from tandem.daemon.emulator import Emulator, MarketData

SAMPLE_SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")


def sample_market(
    symbols: tuple[str, ...] = SAMPLE_SYMBOLS, timeframe: str = "1m", n_bars: int = 400, seed: int = 7
) -> MarketData:
    """Seeded generated candles (no files needed)."""
    return MarketData.generate(symbols, timeframe, n_bars=n_bars, seed=seed)


@pytest_asyncio.fixture
async def emulator_factory() -> AsyncIterator[Callable[..., Awaitable[Emulator]]]:
    started: list[Emulator] = []

    async def make(market: MarketData | None = None, cls: type[Emulator] = Emulator,
                   **kwargs: Any) -> Emulator:
        emu = cls(market if market is not None else sample_market(), **kwargs)
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        await emu.stop()


@pytest_asyncio.fixture
async def emulator(emulator_factory: Callable[..., Awaitable[Emulator]]) -> Emulator:
    return await emulator_factory()


@pytest_asyncio.fixture
async def pro_exchange_factory() -> AsyncIterator[Callable[..., Any]]:
    clients: list[Any] = []

    def make(emu: Emulator, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout_ms", 3000)
        client = create_exchange("binance", rest_url=emu.rest_url, ws_url=emu.ws_url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@contextmanager
def emulator_in_thread(market: MarketData | None = None, *, emulator_cls: type[Emulator] = Emulator,
                       **kwargs: Any) -> Iterator[Emulator]:
    """An emulator served from a background thread's event loop (see module docstring);
    ``emulator_cls``: another venue's (``tandem.daemon.replay.emulator_class``)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="emulator", daemon=True)
    thread.start()
    emu = emulator_cls(market if market is not None else sample_market(), **kwargs)
    emu._thread_loop = loop  # type: ignore[attr-defined]
    try:
        asyncio.run_coroutine_threadsafe(emu.start(), loop).result(10)
        yield emu
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run_in(emu: Emulator, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    """Run ``coro`` on the loop of an :func:`emulator_in_thread` emulator and wait for it."""
    return asyncio.run_coroutine_threadsafe(coro, emu._thread_loop).result(timeout)  # type: ignore[attr-defined]
