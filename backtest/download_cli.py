"""``tandem-backtest download``: its help, its options and their checks, then the call.

Apart from :mod:`tandem.backtest.download` (the downloader itself) so that building the
command line, e.g. for ``tandem-backtest --help``, loads neither ccxt nor structlog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DOWNLOAD_HELP = "download closed candles from the exchange into the Parquet candle store"

DOWNLOAD_DESCRIPTION = """\
Download closed OHLCV candles with ccxt's REST fetch_ohlcv into the candle store
(<store>/<exchange>/<BASE-QUOTE>/<timeframe>.parquet).

Paginated (--limit bars per request), rate-limited (ccxt enableRateLimit), incremental:
a symbol that already has bars resumes after its last stored bar, so re-running after an
interruption neither refetches nor duplicates anything. The still-forming candle is never
stored. Transient errors (network, timeouts, HTTP 5xx) are retried with back-off.

examples:
  tandem-backtest download --profile crypto_rating_all --since 2024-01-01
  tandem-backtest download --symbols BTC/USDT,ETH/USDT --timeframe 1h --since 2024-01-01
  tandem-backtest download --symbols BTC/USDT --since 2024-01-01 --until 2024-07-01 --store data/
  tandem-backtest download --symbols BTC/USDT --since 2021-01-01 \\
      --rest-url http://127.0.0.1:8080/api/v3      # any server speaking Binance's REST
  tandem-backtest download --exchange okx --symbols BTC/USDT --since 2024-01-01 \\
      --rest-url http://127.0.0.1:8081             # a server speaking OKX's (or Bybit's)
"""


def _symbol_list(text: str) -> list[str]:
    out = [part.strip() for part in text.split(",") if part.strip()]
    if not out:
        raise ValueError("empty symbol list")
    return out


def add_download_arguments(parser: Any) -> None:
    """Add the ``download`` options to an ``argparse`` (sub)parser (see :func:`cli_main`)."""
    parser.add_argument("--profile", help="download what this manifest profile trades: its "
                        "assets, on its exchange, in its base timeframe (the higher timeframes "
                        "are built from it); --symbols/--timeframe narrow or change that")
    parser.add_argument("--manifest", type=Path, help="strategy manifest JSON for --profile "
                        "(default: TANDEM_MANIFEST_PATH, else ./manifest.json)")
    parser.add_argument("--exchange", default=None,
                        help="ccxt exchange id (default: the profile's, else binance)")
    parser.add_argument("--symbols", type=_symbol_list, default=None,
                        help="comma-separated ccxt unified symbols, e.g. BTC/USDT,ETH/USDT "
                        "(default: the profile's assets; one of the two is needed)")
    parser.add_argument("--timeframe", default=None,
                        help="candle timeframe (default: the profile's base timeframe, else 1h)")
    parser.add_argument("--since", default=None,
                        help="first bar open time to fetch, inclusive: a UTC date or epoch ms; "
                        "needed for symbols with nothing stored yet")
    parser.add_argument("--until", default=None,
                        help="stop before this bar open time (exclusive); default: now")
    parser.add_argument("--data", "--store", dest="data", default=None,
                        help="candle store root folder (default: $TANDEM_DATA_DIR or ./data)")
    parser.add_argument("--rest-url", default=None,
                        help="override the exchange REST base URL (binance, bybit, okx; e.g. "
                        "an emulator's or a testnet's); default: $TANDEM_EXCHANGE_REST_URL or "
                        "the exchange's own")
    parser.add_argument("--limit", type=int, default=1000,
                        help="bars per request, at most the venue's page (binance and bybit "
                        "1000, okx 300; default: 1000)")
    parser.add_argument("--retries", type=int, default=5,
                        help="retries per request on transient errors (default: 5)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def cli_main(args: Any, settings: Any = None, profile: Any = None) -> int:
    """Run ``tandem-backtest download`` from parsed ``args``; returns the exit code.

    Reads (all optional except what the situation needs): ``exchange``, ``symbols`` (list
    or comma string; default ``profile.assets``), ``timeframe`` (default
    ``profile.base_timeframe``), ``since``, ``until``, ``data`` (default
    ``settings.data_dir`` / ``$TANDEM_DATA_DIR`` / ``./data``), ``rest_url`` (default
    ``settings.exchange_rest_url`` / ``$TANDEM_EXCHANGE_REST_URL``), ``limit``, ``retries``,
    ``no_progress``. Exit 0 on success, 1 on a download error, 130 on Ctrl-C.
    """
    import os
    import sys

    def pick(name: str, default: Any = None) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    symbols = pick("symbols", getattr(profile, "assets", None))
    if isinstance(symbols, str):
        symbols = _symbol_list(symbols)
    timeframe = pick("timeframe", getattr(profile, "base_timeframe", None) or "1h")
    exchange = pick("exchange", getattr(profile, "exchange", None) or "binance")
    data = pick("data", getattr(settings, "data_dir", None) or os.environ.get("TANDEM_DATA_DIR") or "data")
    rest_url = pick("rest_url", getattr(settings, "exchange_rest_url", None)
                    or os.environ.get("TANDEM_EXCHANGE_REST_URL") or None)
    if not symbols:  # usage: nothing said what to download
        print("error: no symbols given (use --symbols or --profile)", file=sys.stderr)
        return 2
    problem = _usage_problem(symbols, timeframe, pick("since"), pick("until"),
                             pick("limit", 1000), pick("retries", 5))
    if problem:  # before the exchange is contacted: a typo costs no request (exit 2)
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from tandem.core.datapaths import reads_as_csv_folder

    if reads_as_csv_folder(data, exchange):
        # The store folder created here made every later `--data` of this folder read the
        # downloaded bars only, not the CSVs beside them (exit 2, nothing written).
        print(f"error: {data} is a folder of CSV candles, not a candle store: downloading "
              f"into it would make it read as a store holding only the new bars; pass a "
              "store folder with --data (e.g. data/store)", file=sys.stderr)
        return 2
    import ccxt
    from tandem.backtest.download import DownloadError, download
    from tandem.core.store import CandleStore, CandleStoreError

    try:
        store = CandleStore(data, exchange=exchange, timeframe=timeframe)
        skipped = _history_before_store(store, symbols, timeframe, pick("since"))
        added = download(
            exchange, list(symbols), timeframe, pick("since"), store,
            until=pick("until"), progress=not pick("no_progress", False), rest_url=rest_url,
            limit=int(pick("limit", 1000)), max_retries=int(pick("retries", 5)),
        )
    except (DownloadError, CandleStoreError, ccxt.BaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the bars stored so far are kept; re-run to resume", file=sys.stderr)
        return 130
    for symbol, n in added.items():
        print(f"{symbol}: {n} new bars -> {Path(data) / exchange}")
    from tandem.core.candles import iso

    for symbol, (since, first) in skipped.items():
        print(f"note: {symbol}: --since {iso(since)} is before its first stored bar "
              f"{iso(first)}; download extends a store forward only, so those bars were not "
              "fetched (download them into an empty --data folder)", file=sys.stderr)
    return 0


def _history_before_store(store: Any, symbols: Any, timeframe: str, since: Any) -> dict:
    """``{symbol: (since, first stored ts)}`` where ``--since`` asks for bars before what is
    stored. The download resumes after the last stored bar, so they are never fetched: it
    printed "0 new bars" and exit 0, and the user believed the history was there."""
    from tandem.core.store import SymbolNotFoundError, timeframe_ms, to_ms

    since_ms = to_ms(since)
    out = {}
    if since_ms is None:
        return out
    tf = timeframe_ms(timeframe)
    since_ms = -(-since_ms // tf) * tf  # the first bar it asks for opens on the grid
    for symbol in symbols:
        try:
            ts, _ = store.read_arrays(symbol, timeframe=timeframe)
        except SymbolNotFoundError:
            continue
        if len(ts) and since_ms < int(ts[0]):
            out[symbol] = (since_ms, int(ts[0]))
    return out


def _usage_problem(symbols: Any, timeframe: str, since: Any, until: Any, limit: Any,
                   retries: Any) -> str | None:
    """What is wrong with the options, or None. They were checked only after the exchange
    answered (exit 1, or a traceback for ``--retries -1``), some never (``--until`` before
    ``--since`` downloaded nothing and exited 0)."""
    from tandem.core.candles import ms_option_problem
    from tandem.core.store import CandleStoreError, symbol_to_filename, to_ms
    from tandem.core.timeframes import TimeframeError, is_fixed_length, timeframe_to_ms

    try:
        timeframe_to_ms(timeframe)
    except TimeframeError as exc:
        return f"--timeframe: {exc}"
    if not is_fixed_length(timeframe):
        # Pages advance by a fixed bar length (a "1M" of 30 days skipped months) and the
        # store checks bars are one timeframe apart: months and years have no such length.
        return (f"--timeframe {timeframe}: months and years have no fixed length; download "
                "1d (or 1w) bars, the store and the backtest aggregate from fixed bars")
    bounds = {}
    for name, value in (("--since", since), ("--until", until)):
        try:
            bounds[name] = to_ms(value)
        except (ValueError, TypeError, OverflowError):
            return f"{name}: not a date: {str(value)[:40]!r} (use e.g. 2024-01-01 or epoch ms)"
        digits = isinstance(value, int) or str(value).strip().lstrip("-").isdigit()
        if digits and (problem := ms_option_problem(bounds[name])) is not None:
            return f"{name} {value} {problem}"  # seconds read as ms fetched from 1970
    if None not in bounds.values() and bounds["--until"] <= bounds["--since"]:
        return f"--until ({until}) must be after --since ({since})"
    for name, value, least in (("--limit", limit, 1), ("--retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            return f"{name} must be an integer >= {least}, got {value!r}"
    for sym in symbols:
        try:
            symbol_to_filename(sym)
        except CandleStoreError as exc:
            return f"--symbols: {exc}"
    return None

