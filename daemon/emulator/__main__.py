"""``python -m tandem.daemon.emulator``: serve stored (or generated) candles over Binance's wire
format, or Bybit's / OKX's with ``--protocol bybit|okx`` (``--data`` then reads that venue's
store folder).

Examples::

    # real candles from a candle store or a folder of <exchange>_<BASE-QUOTE>_<tf>.csv files
    python -m tandem.daemon.emulator --data ../shared/data --symbols BTC/USDT,ETH/USDT --timeframe 1h \\
        --from 2021-03-01 --speed 3600
    # seeded generated candles, no files
    python -m tandem.daemon.emulator --generate 2000 --symbols BTC/USDT --timeframe 1m --speed 60

It prints the REST / websocket URLs (and the ``TANDEM_EXCHANGE_*`` settings that point the
daemon at them), then plays the virtual clock at ``--speed`` × wall time from ``--start``
until the last bar closed, and keeps serving until interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys

import structlog
from tandem.core.cliparser import OneLineParser
from tandem.core.store import CandleStoreError, open_candles, to_ms
from tandem.daemon.emulator.market import MarketData
from tandem.daemon.emulator.server import Emulator


def _int_in(lo: int, hi: int):
    """argparse type: an integer in [lo, hi] (``--port 99999`` was an OverflowError
    traceback from bind(), ``--generate 0`` a numpy concatenation message)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text[:40]!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {v}")
        return v

    return parse


def _speed(text: str) -> float:
    """argparse type: a finite speed >= 0 (``--speed -5`` or ``nan`` froze the clock as 0
    does, silently)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (0 = clock frozen), "
                                         f"got {text[:40]}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m tandem.daemon.emulator",
        description="Exchange emulator (Binance spot by default; --protocol bybit|okx): REST "
        "markets, klines and time, and websocket kline streams replaying candles on a "
        "virtual clock.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="candle store folder, folder of CSVs, or universe .parquet")
    src.add_argument("--generate", type=_int_in(1, 10_000_000), metavar="N_BARS", help="play N seeded random-walk bars")
    p.add_argument("--symbols", required=True, help="comma-separated ccxt symbols, e.g. BTC/USDT,ETH/USDT")
    p.add_argument("--timeframe", default="1h", help="base timeframe of the played candles")
    p.add_argument("--exchange", default=None,
                   help="exchange folder inside --data (default: the --protocol's venue)")
    p.add_argument("--from", dest="start_data", help="first bar to load (inclusive; date or ms)")
    p.add_argument("--to", dest="end_data", help="last bar to load (exclusive; date or ms)")
    p.add_argument("--start", help="virtual clock start (default: the first loaded bar's open)")
    p.add_argument("--speed", type=_speed, default=1.0, help="virtual ms per wall ms (0 = clock frozen)")
    p.add_argument("--seed", type=int, default=0, help="seed for --generate")
    p.add_argument("--host", default="127.0.0.1", help="bind address")
    p.add_argument("--port", type=_int_in(0, 65535), default=0, help="port (0 = any free port)")
    p.add_argument("--updates-per-bar", type=_int_in(0, 1000), default=1, help="in-progress kline updates per bar")
    p.add_argument("--ping-interval", type=float, default=20.0, help="server websocket ping period, s")
    p.add_argument("--protocol", choices=["binance", "bybit", "okx"], default="binance",
                   help="wire protocol to speak (the profile's exchange)")
    p.add_argument("--exit-at-end", action="store_true", help="exit once the last bar has closed")
    return p


def load_market(args: argparse.Namespace) -> MarketData:
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    if args.generate is not None:
        start = to_ms(args.start_data) if args.start_data else 1_700_000_000_000
        return MarketData.generate(symbols, args.timeframe, start=start, n_bars=args.generate, seed=args.seed)
    # A bybit/okx store holds <data>/bybit/..., <data>/okx/...: serving --protocol bybit from
    # <data>/binance (the old default) failed on a bybit-only store and, where both folders
    # exist, played Binance's candles over Bybit's wire.
    exchange = args.exchange or getattr(args, "protocol", None) or "binance"
    source = open_candles(args.data, exchange=exchange, timeframe=args.timeframe)
    aligned = source.load_aligned(symbols, args.timeframe, args.start_data, args.end_data)
    if aligned.n_bars == 0:
        raise CandleStoreError(f"no {args.timeframe} candles for {symbols} in that range")
    return MarketData.from_aligned(aligned, args.timeframe)


async def serve(args: argparse.Namespace, market: MarketData) -> None:
    start = to_ms(args.start) if args.start else None
    protocol = getattr(args, "protocol", "binance")
    if protocol in ("bybit", "okx"):
        from tandem.daemon.replay import emulator_class

        # Bybit's and OKX's clients ping (op ping / "ping"); the server sends no ping frames
        emu: Emulator = emulator_class(protocol)(market, start=start, host=args.host,
                                                 port=args.port,
                                                 updates_per_bar=args.updates_per_bar)
    else:
        emu = Emulator(market, start=start, host=args.host, port=args.port,
                       updates_per_bar=args.updates_per_bar, ping_interval=args.ping_interval)
    await emu.start()
    print(f"REST      {emu.rest_url}", flush=True)
    print(f"WEBSOCKET {emu.ws_url}", flush=True)
    print(f"TANDEM_EXCHANGE_REST_URL={emu.rest_url}", flush=True)
    print(f"TANDEM_EXCHANGE_WS_URL={emu.ws_url}", flush=True)
    print(f"symbols {','.join(market.symbols)} {market.timeframe}; clock {emu.now} speed {args.speed}",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if args.speed > 0:
            emu.start_realtime(speed=args.speed)
            if args.exit_at_end:
                await asyncio.wait(
                    [asyncio.ensure_future(emu.wait_realtime()), asyncio.ensure_future(stop.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                return
        await stop.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # stdout carries the URLs (scripts parse it); logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        if args.start:  # checked before anything listens (was a pandas traceback)
            try:
                to_ms(args.start)
            except ValueError as exc:
                raise ValueError(f"--start {args.start[:40]!r}: {exc}") from None
        market = load_market(args)
    except CandleStoreError as exc:  # no such path, corrupt file, no candles: data (1)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad date or timeframe: usage (2)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(args, market))
    return 0


if __name__ == "__main__":
    sys.exit(main())
