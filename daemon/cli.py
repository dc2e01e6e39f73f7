"""``tandem-daemon``: live paper trading, replay of history through the live path, status,
journal export.

    tandem-daemon run --profile crypto_rating_all            # live (endpoints from settings)
    tandem-daemon replay --profile crypto_rating_all --data ../shared/data --from 2021-06-01
    tandem-daemon replay --sample                            # seeded generated candles
    tandem-daemon status [--db state/tandem.sqlite]
    tandem-daemon export-fills --out out/                    # fills.csv + fills.parquet

Exit codes: 0 ok (also after SIGTERM/SIGINT: the slice in hand is finished and persisted),
2 bad settings/manifest/arguments or a profile whose hash changed (``--fresh`` discards the
old state), 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tandem.core.cliparser import OneLineParser
from tandem.core.exiting import exit_fast

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
#: Upper bound of every duration option (s): larger values overflow the event loop's timers
#: and are never what a user meant (11.6 days).
MAX_SECONDS = 1e6
#: Shortest period of a scheduled job (export, heartbeat), s: at --export-every 1e-6 the
#: jobs ran back to back on the event loop and a 20-bar replay never finished.
MIN_PERIOD_S = 1.0
#: --sample generates (warm-up + --bars) bars for every asset in memory.
MAX_SAMPLE_BARS = 1_000_000
#: Thread counts the BLAS libraries (numpy's and scipy's OpenBLAS, MKL, OpenMP builds) read
#: once, when they load.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def one_blas_thread() -> None:
    """One BLAS thread for the daemon, unless the user chose otherwise. tandem.core.weighting's
    kernels multiply small matrices (a lookback × 126 assets) through numba → scipy's
    OpenBLAS, whose thread pool costs more than it saves there and, on a busy machine,
    spins against the event loop and the other processes (bench/weighting.py: README).
    Called before anything loads numpy or scipy: the libraries read these variables once."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")


def _number(kind: type, lo: float, hi: float, *, lo_open: bool = False):
    """argparse type: a finite ``kind`` in [lo, hi] (``(lo, hi]`` with ``lo_open``).

    Unchecked, ``--speed 0`` or ``-5`` and ``--warmup-bars -100`` made ``replay`` wait
    forever for bars that never come."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: "
                                             f"{text[:40]!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text[:40]!r}")
        if (v <= lo if lo_open else v < lo) or v > hi:
            low = f"> {lo:g}" if lo_open else f">= {lo:g}"
            high = f" and <= {hi:g}" if math.isfinite(hi) else ""
            raise argparse.ArgumentTypeError(f"must be {low}{high}, got {v:g}")
        return v

    return parse


def _off_or_period(secs):
    """argparse type: 0 (off) or a period of at least :data:`MIN_PERIOD_S` seconds."""

    def parse(text: str) -> float:
        v = secs(text)
        if 0 < v < MIN_PERIOD_S:
            raise argparse.ArgumentTypeError(f"must be 0 (off) or >= {MIN_PERIOD_S:g} s, got {v:g}")
        return v

    return parse


def _date(text: str) -> int:
    """argparse type: a UTC date/time or epoch ms -> epoch ms (as ``tandem-backtest``)."""
    from tandem.core.store import to_ms

    try:
        ms = to_ms(text)
    except OverflowError:
        ms = -1  # a date, but past what pandas can hold: the range message below
    except (ValueError, TypeError) as exc:
        # pandas' OutOfBoundsDatetime is a ValueError too (named, not imported: pandas is
        # loaded only for the forms ISO 8601 lacks)
        ms = -1 if type(exc).__name__ == "OutOfBoundsDatetime" else None
    if ms is None:
        raise argparse.ArgumentTypeError(
            f"not a date: {text[:40]!r} (use e.g. 2021-02-01 or 2021-02-01T12:00, UTC, or epoch ms)")
    if not 0 <= ms <= _MAX_MS:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is outside 1970-01-01 .. 2262-04-11")
    if text.strip().isdigit():  # the backtest's rule: seconds are not read as ms (1970)
        from tandem.core.candles import ms_option_problem

        if (problem := ms_option_problem(ms)) is not None:
            raise argparse.ArgumentTypeError(f"{text[:40]} {problem}")
    return ms


_MAX_MS = 9_223_372_036_854  # pandas' last representable time (2262-04-11), in ms


def _url(schemes: tuple[str, ...], what: str):
    """argparse type: an endpoint URL, checked as its TANDEM_EXCHANGE_* variable is."""

    def parse(text: str) -> str:
        from tandem.core.settings import check_url

        try:
            return check_url(text, schemes, what) or ""
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(text: str) -> str:
    """argparse type: a log level (any case). Unchecked, ``--log-level LOUD`` or ``warn``
    ran silently at INFO (TANDEM_LOG_LEVEL refuses the same values)."""
    if text.upper() not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"not a log level: {text[:40]!r} "
                                         f"(use {', '.join(_LOG_LEVELS)})")
    return text.upper()


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="tandem-daemon", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--manifest", type=Path, help="manifest.json (default: settings)")
        sp.add_argument("--profile", help="profile name (default: settings / default_profile)")
        sp.add_argument("--db", type=Path, help="SQLite state file (default: TANDEM_STATE_DB)")
        sp.add_argument("--fresh", action="store_true",
                        help="discard existing state (required when the profile changed)")
        secs = _number(float, 0, MAX_SECONDS)
        sp.add_argument("--grace", type=secs, help="seconds to wait for late assets")
        sp.add_argument("--watchdog", type=secs, default=60.0,
                        help="reconnect a connection silent this many seconds (0 = off)")
        sp.add_argument("--warmup-bars", type=_number(int, 0, float("inf")),
                        help="override the profile's warm-up (>= 0 base bars)")
        sp.add_argument("--export-dir", type=Path, help="periodic fills.csv/.parquet export, and at the stop")
        sp.add_argument("--export-every", type=_off_or_period(secs), default=300.0,
                        help=f"export period, s (0 = only at the stop, else >= {MIN_PERIOD_S:g})")
        sp.add_argument("--heartbeat-every", type=_number(float, MIN_PERIOD_S, MAX_SECONDS),
                        default=30.0, help=f"heartbeat, s (>= {MIN_PERIOD_S:g})")
        sp.add_argument("--log-format", choices=["auto", "json", "pretty"],
                        help="default: JSON when not on a terminal, pretty on one")
        sp.add_argument("--log-level", type=_log_level, help="DEBUG/INFO/WARNING/ERROR")

    run = sub.add_parser("run", help="paper-trade live candles (endpoints from settings)")
    common(run)
    run.add_argument("--rest-url", type=_url(("http", "https"), "REST URL"),
                     help="override TANDEM_EXCHANGE_REST_URL")
    run.add_argument("--ws-url", type=_url(("ws", "wss"), "websocket URL"),
                     help="override TANDEM_EXCHANGE_WS_URL")
    run.add_argument("--http", action="store_true",
                     help="serve /health, /metrics, /positions, /fills and the dashboard "
                          "(tandem.daemon.ops) even when TANDEM_HTTP_ENABLED=false; on by "
                          "default")

    rep = sub.add_parser("replay", help="play stored history through the emulator and the "
                                        "live path (real ccxt.pro over 127.0.0.1)")
    common(rep)
    src = rep.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="candle store, CSV folder or universe parquet")
    src.add_argument("--sample", action="store_true",
                     help="seeded generated candles (default when --data is absent)")
    rep.add_argument("--from", dest="from_", type=_date,
                     help="first tradable bar (date or ms); default: first bar + warm-up")
    rep.add_argument("--to", type=_date, help="end (exclusive; date or ms); default: last bar")
    rep.add_argument("--bars", type=_number(int, 1, MAX_SAMPLE_BARS),
                     help="--sample: tradable bars to generate (plus the warm-up; default 500)")
    rep.add_argument("--seed", type=_number(int, 0, 2**63 - 1),
                     help="--sample: generator seed (>= 0; default 7)")
    rep.add_argument("--speed", type=_number(float, 0, 1e9, lo_open=True),
                     help="play in wall time x speed (> 0; default: as fast as the live path "
                          "goes)")
    rep.add_argument("--out", type=Path, help="write fills.csv/.parquet here at the end")
    rep.add_argument("--http", metavar="PORT", type=_number(int, 0, 65535),
                     help="serve the dashboard (and /health, /metrics, ...) on this port while "
                          "the replay runs, to watch it (0 = any free port; host and token "
                          "from TANDEM_HTTP_HOST/TANDEM_HTTP_TOKEN; no notifications)")

    st = sub.add_parser("status", help="print the state database's summary as JSON")
    st.add_argument("--db", type=Path)

    ex = sub.add_parser("export-fills", aliases=["export"], help="export the fills journal")
    ex.add_argument("--db", type=Path)
    ex.add_argument("--out", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tandem-daemon``."""
    from tandem.core.stdout import tolerate_closed_stdout

    with tolerate_closed_stdout():  # `status | head`: the rest of the output is dropped
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    one_blas_thread()
    args = _parser().parse_args(argv)
    from tandem.daemon.state import StateDbError

    try:
        if args.cmd == "status":
            return _status(args)
        if args.cmd in ("export-fills", "export"):
            return _export(args)
        return _serve(args)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except StateDbError as exc:
        # Policy: a path that cannot hold a database (a folder, an uncreatable or
        # unwritable place) is configuration -> 2, not retried by systemd; a file that is
        # there but is not a usable SQLite database (corrupt, another format) -> 1.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.usage else EXIT_FAIL


def entry_point() -> None:
    """The ``tandem-daemon`` console script: :func:`main`, then exit."""
    exit_fast(main())


class _UsageError(Exception):
    """Bad arguments or configuration -> exit 2."""


class _DataError(Exception):
    """The data cannot serve the request, or the exchange failed -> exit 1."""


def _out(text: str) -> None:
    """A result line on stdout (a reader that left is :func:`main`'s business)."""
    print(text, flush=True)


def _check_out(path: Path | None, option: str = "--out", db: Path | None = None) -> None:
    """An output folder must be usable BEFORE the run, not after it (exit 2); the export
    into it must not replace the database ``db`` it reads (a db named fills.parquet there
    was replaced by its own export)."""
    if path is None:
        return
    from tandem.core.outpaths import OutPathError, check_out_dir

    try:
        check_out_dir(path, option)
    except OutPathError as exc:
        raise _UsageError(str(exc)) from None
    if db is not None and db.resolve() in {(path / n).resolve() for n in ("fills.csv", "fills.parquet")}:
        raise _UsageError(f"{option} {path}: the export would overwrite the state database {db}; "
                          "pick another folder")


def _check_endpoints(args, settings, exchange: str) -> None:
    """REST and websocket overrides come together or not at all (exit 2): with only one,
    the other reached the real venue — a daemon pointed at an emulator or testnet by
    ``--rest-url`` alone backfilled from there and streamed the live exchange's candles
    (here: reconnect loops on stream.bybit.com while REST polling quietly traded on)."""
    rest = getattr(args, "rest_url", None) or settings.exchange_rest_url
    ws = getattr(args, "ws_url", None) or settings.exchange_ws_url
    if bool(rest) == bool(ws):
        return
    have, lack = (("--rest-url/TANDEM_EXCHANGE_REST_URL", "--ws-url/TANDEM_EXCHANGE_WS_URL")
                  if rest else ("--ws-url/TANDEM_EXCHANGE_WS_URL",
                                "--rest-url/TANDEM_EXCHANGE_REST_URL"))
    raise _UsageError(f"{have} is set but {lack} is not: the daemon would mix {exchange}'s "
                      f"real endpoint with {_clip(str(rest or ws), 80)}; set both (or neither)")


def _backtest_journal_in(folder: Path) -> Path | None:
    """``folder/fills.csv`` when a backtest wrote it (its first row's ``source``), else None."""
    import csv

    f = folder / "fills.csv"
    try:
        with f.open(newline="", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error):  # absent or unreadable: not a journal
        return None
    return f if row is not None and row.get("source") == "backtest" else None


def _check_export_to(path: Path | None, option: str, db: Path) -> None:
    """A folder the fills of ``db`` are exported to (export-fills ``--out``, run/replay
    ``--export-dir``/``--out``): usable, not the database itself, and not a backtest's run
    folder (replacing its fills.csv made reconcile compare the paper fills with themselves)."""
    if path is None:
        return
    _check_out(path, option, db=db)
    theirs = _backtest_journal_in(path)
    if theirs is not None:
        raise _UsageError(f"{option} {path}: {theirs} holds a backtest's fills, which the "
                          "export would replace; pick another folder")


def _iso(ms: int) -> str:
    from tandem.core.utc import iso_from_ms

    return iso_from_ms(ms)


def _settings(**overrides: Any):
    from tandem.core.settings import SettingsError, load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise _UsageError(str(exc)) from None


def _db_path(args) -> Path:
    return args.db if args.db is not None else _settings().state_db


def _check_not_empty(db: Path) -> None:
    """A 0-byte file holds no journal: opening it made it a Tandem database in WAL mode
    (``status`` printed an empty summary, exit 0; ``export-fills`` replaced an export with a
    header-only one). A read command leaves it as it is (exit 1, data)."""
    if db.is_file() and db.stat().st_size == 0:
        raise _DataError(f"state database {db} is empty (0 bytes): no journal to read; "
                         "check --db / TANDEM_STATE_DB")


def _status(args) -> int:
    from tandem.daemon.state import StateStore

    db = _db_path(args)
    if not db.exists():
        raise _UsageError(f"no state database at {db}")
    _check_not_empty(db)
    with StateStore(db) as store:
        _out(json.dumps(store.status(), indent=2, default=str))
    return EXIT_OK


def _export(args) -> int:
    from tandem.daemon.export import export_fills
    from tandem.daemon.state import StateStore

    db = _db_path(args)
    if not db.exists():
        raise _UsageError(f"no state database at {db}")
    _check_export_to(args.out, "--out", db)
    _check_not_empty(db)
    with StateStore(db) as store:
        try:
            paths = export_fills(store, args.out)
        except OSError as exc:  # the folder passed its check, the write failed (disk full...)
            raise _DataError(f"--out {args.out}: cannot write the export: "
                             f"{exc.strerror or exc}"
                             + (f" ({exc.filename})" if exc.filename else "")) from None
        _out(f"{store.fill_count()} fills -> {', '.join(str(p) for p in paths)}")
    return EXIT_OK


def _serve(args) -> int:
    settings = _settings()
    settings.apply_numba_cache_dir()
    from tandem.core.manifest import ManifestError, load_manifest, resolve_manifest_path
    from tandem.daemon.logconfig import configure_logging

    # --log-format, else TANDEM_LOG_FORMAT (its "console" is this option's "pretty")
    fmt = args.log_format or {"console": "pretty"}.get(settings.log_format, settings.log_format)
    configure_logging(fmt, args.log_level or settings.log_level)
    manifest_path = resolve_manifest_path(args.manifest, settings.manifest_path)
    try:
        profile = load_manifest(manifest_path).profile(args.profile or settings.profile)
    except ManifestError as exc:
        raise _UsageError(str(exc)) from None
    if args.warmup_bars is not None:
        profile = _with_warmup(profile, args.warmup_bars)
    from tandem.daemon.venues import VenueError, check_venue

    try:
        # Before anything starts (issue 20): a venue the daemon cannot trade is refused
        # here, never a daemon that runs and gets no candles.
        check_venue(profile.exchange, profile.base_timeframe, profile.assets)
    except VenueError as exc:
        raise _UsageError(f"profile {profile.name!r}: {exc}") from None
    if (args.cmd == "run" or args.http is not None) and args.grace is not None \
            and args.grace >= settings.health_slice_lag_s:
        # The settings refuse TANDEM_GRACE_PERIOD_S >= TANDEM_HEALTH_SLICE_LAG_S; --grace went
        # around that: every slice waiting for a late asset turned /health degraded
        # ("lagging slice") and sent a degraded notification while it was only waiting.
        raise _UsageError(f"--grace {args.grace:g} must be below TANDEM_HEALTH_SLICE_LAG_S "
                          f"({settings.health_slice_lag_s:g} s), or a slice waiting for late "
                          "assets reads as lagging on /health; raise that setting too")
    if args.cmd == "run":
        _check_endpoints(args, settings, profile.exchange)
    elif args.data is not None and (args.bars is not None or args.seed is not None):
        # With --data they were ignored: `replay --data … --bars 100` replayed the whole file.
        raise _UsageError("--bars/--seed apply to --sample only; with --data choose the bars "
                          "with --from/--to")
    db = Path(args.db or settings.state_db) if args.cmd == "run" else _replay_db(args, settings, profile)
    for option in ("export_dir", "out"):
        _check_export_to(getattr(args, option, None), "--" + option.replace("_", "-"), db)
    import ccxt
    from tandem.daemon.app import SliceFailedError, UnknownSymbolError
    from tandem.daemon.state import ProfileChangedError, StateDbError

    try:
        if args.cmd == "run":
            _check_db(args.db or settings.state_db)
            if args.http:  # the explicit flag wins over TANDEM_HTTP_ENABLED=false
                settings = settings.model_copy(update={"http_enabled": True})
            ops = _build_ops(settings, args.db or settings.state_db)  # ops (issue 8)
            return asyncio.run(_run_live(args, settings, profile, ops))
        _check_db(_replay_db(args, settings, profile))
        ops = None
        if args.http is not None:  # watch a replay on the dashboard (issue 18)
            ops = _build_ops(settings.model_copy(update={
                "http_enabled": True, "http_port": args.http, "notify_urls": None}),
                _replay_db(args, settings, profile), notify=False)
        return asyncio.run(_run_replay(args, settings, profile, ops))
    except ProfileChangedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SliceFailedError as exc:
        # Exit 1 (not 0), so systemd's Restart=on-failure restarts it; the committed state
        # is intact and a restart resumes after the last committed slice. Replay prints no
        # summary of a run cut short.
        print(f"error: {exc}; stopped (a restart resumes after the last committed slice)",
              file=sys.stderr)
        return EXIT_FAIL
    except _candle_store_error() as exc:  # bad candle data (--data): exit 1 (issue 16)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except UnknownSymbolError as exc:
        # Configuration, not an outage: exit 2 so systemd does not restart it in a loop.
        raise _UsageError(f"profile {profile.name!r}: {exc}") from None
    except ccxt.BaseError as exc:
        # The exchange refused or failed (after the retries where they apply): one line,
        # the URL in ccxt's message says which endpoint; exit 1 (systemd may retry).
        raise _DataError(f"exchange {profile.exchange}: {type(exc).__name__}: "
                         f"{_clip(str(exc))}") from None
    except (_UsageError, _DataError, StateDbError):
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. ccxt choking on a server's odd answer
        # Still one line for the user; the traceback is in the log at DEBUG level.
        from tandem.daemon.logconfig import get_logger

        get_logger("cli").debug("daemon_failed", exc_info=True)
        raise _DataError(f"{args.cmd} failed: {type(exc).__name__}: {_clip(str(exc))}") from None


class _NotRaised(Exception):
    """Stands for an exception class whose module was never imported."""


def _candle_store_error() -> type[Exception]:
    """``tandem.core.store.CandleStoreError`` once something imported ``tandem.core.store`` (only then can
    it be raised; an ``except`` clause evaluates this when an exception reaches it). Not
    imported up front: it brings pandas and pyarrow, ~60 MB of a live daemon's resident
    set that ``run`` without a candle store never uses."""
    store = sys.modules.get("tandem.core.store")
    return store.CandleStoreError if store is not None else _NotRaised


def _check_db(db: Path) -> None:
    """Open the state database once before anything starts (HTTP, emulator, compile), so
    a folder, an uncreatable path or a non-SQLite file fails first, with one line
    (:class:`tandem.daemon.state.StateDbError`, mapped to an exit code in :func:`main`)."""
    from tandem.daemon.state import StateStore

    StateStore(db).close()


def _empty_range(src, profile, data: Path, start: int | None, end: int | None) -> str:
    """Why the requested range holds no bars, with what the data does cover."""
    from tandem.core.timeframes import timeframe_to_ms

    tf = profile.base_timeframe
    try:
        whole = src.load_aligned(profile.assets, tf, None, None)
    except Exception:  # noqa: BLE001 - only for the message; the range load already worked
        whole = None
    if whole is None or whole.n_bars == 0:
        return f"no {tf} candles for {profile.name} in {data}"
    first, last = int(whole.ts[0]), int(whole.ts[-1])
    data_end = last + timeframe_to_ms(tf)
    if start is not None and start >= data_end:
        return (f"nothing to replay: --from {_iso(start)} is at or after the end of the data "
                f"({_iso(data_end)}; {data} covers {_iso(first)} → {_iso(last)})")
    if end is not None and end <= first:
        return (f"nothing to replay: --to {_iso(end)} is at or before the first bar of the data "
                f"({_iso(first)})")
    return (f"no {tf} candles for {profile.name} in the requested range; {data} covers "
            f"{_iso(first)} → {_iso(last)}")


def _replay_db(args, settings, profile) -> Path:
    """``--db``, else ``replay-<profile>.sqlite`` next to the live state database."""
    return args.db or Path(settings.state_db).with_name(f"replay-{profile.name}.sqlite")


def _clip(text: str, n: int = 300) -> str:
    """One line of at most ``n`` characters of a foreign message."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


def _with_warmup(profile, warmup_bars: int):
    """The profile with ``--warmup-bars``, validated again like the manifest itself (the
    backtest's override does the same): the warm-up bound applies to the override too."""
    from tandem.core.manifest import ManifestError, parse_manifest

    data = profile.model_dump(mode="json")
    data["warmup_bars"] = int(warmup_bars)
    name = profile.name or "profile"
    try:
        return parse_manifest({"profiles": {name: data}}, source="--warmup-bars").profile(name)
    except ManifestError as exc:
        raise _UsageError(str(exc)) from None


def _daemon_config(args, settings, profile, db: Path):
    from tandem.core.timeframes import timeframe_to_ms
    from tandem.daemon.app import DaemonConfig

    return DaemonConfig(
        profile_name=profile.name,
        profile_json=profile.canonical_json(),
        symbols=profile.assets,
        exchange_id=profile.exchange,
        base_timeframe=profile.base_timeframe,
        tf_ms=timeframe_to_ms(profile.base_timeframe),
        warmup_bars=profile.warmup,
        state_db=db,
        rest_url=getattr(args, "rest_url", None) or settings.exchange_rest_url,
        ws_url=getattr(args, "ws_url", None) or settings.exchange_ws_url,
        grace_s=args.grace if args.grace is not None else settings.grace_period_s,
        watchdog_s=args.watchdog,
        export_dir=args.export_dir,
        export_every_s=args.export_every,
        heartbeat_every_s=args.heartbeat_every,
        fresh=args.fresh,
    )


def _install_signals(daemon, ops=None) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if ops is not None:  # ops (issue 8): tell systemd at once (STOPPING=1)
            ops.stopping()
        daemon.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


# --- ops (issue 8): HTTP /health /metrics /positions /fills, sd_notify, metrics sampling ---
def _build_ops(settings, db: Path, *, notify: bool = True):
    """Ops for ``run`` (and ``replay --http``), built before the event loop so that a
    non-loopback bind without a token (or any ops setting problem) exits 2 naming the
    field, before READY. ``notify=False``: no sd_notify (a replay is not the service)."""
    from tandem.daemon.logconfig import get_logger
    from tandem.daemon.ops import InsecureBindError, Ops, OpsConfig
    from tandem.daemon.ops.alerts import NotifyConfigError
    from tandem.daemon.ops.provider import SqliteStateProvider

    try:
        cfg = OpsConfig.from_settings(settings)
        if not notify:
            cfg = dataclasses.replace(cfg, notify=False)
        return Ops(cfg, SqliteStateProvider(db), logger=get_logger("ops"))
    except (InsecureBindError, NotifyConfigError) as exc:
        raise _UsageError(str(exc)) from None


def _stepper_factory(profile):  # noqa: ANN001 - core.manifest.Profile
    """``run_id -> stepper`` importing the strategy (the core's kernels, numba: seconds)
    only when the daemon makes its stepper, after the exchange's markets were checked
    (:meth:`tandem.daemon.app.Daemon.run`): a symbol the exchange does not list fails first."""

    def make(run_id: str):
        from tandem.daemon import strategy

        return strategy.stepper_factory(profile)(run_id)

    return make


async def _run_live(args, settings, profile, ops=None) -> int:
    from tandem.daemon.app import Daemon
    from tandem.daemon.memory import configure_allocators

    configure_allocators()  # before the warm-up's threads and the store's pyarrow

    cfg = _daemon_config(args, settings, profile, args.db or settings.state_db)
    # Warm up from the local candle store when there is one (issue 18): REST fetches only
    # the tail it lacks, and that tail is stored for the next start. Not in replay: its
    # history is the emulator's, not the store's.
    data_dir = Path(settings.data_dir)
    from tandem.core.datapaths import reads_as_csv_folder  # no pandas: a path test

    if reads_as_csv_folder(data_dir, profile.exchange):
        # A CSV folder (the backtest's --data) is not a store: the tail stored there made
        # it read as a store of those bars only, and backtests of the CSVs ran on them.
        from tandem.daemon.logconfig import get_logger

        get_logger("cli").warning(
            "data_dir_not_a_store", data_dir=str(data_dir),
            hint="it holds CSV files: warm-up over REST, nothing stored; point "
                 "TANDEM_DATA_DIR at a candle store (tandem-backtest download)")
    elif data_dir.is_dir():
        cfg.candle_store, cfg.candle_store_exchange = data_dir, profile.exchange
    if ops is not None:  # ops (issue 8): HTTP up during warm-up (/health says "starting")
        await ops.start()
    daemon = Daemon(cfg, _stepper_factory(profile), ops=ops)
    _install_signals(daemon, ops)
    if ops is not None:
        ops.watch_daemon(daemon)  # ops (issue 8): feeds/equity -> health + metrics
    try:
        await daemon.run()
    finally:
        if ops is not None:
            ops.stopping()
            await ops.stop()
    return EXIT_OK


async def _run_replay(args, settings, profile, ops=None) -> int:
    from tandem.core.store import CandleStoreError, open_candles
    from tandem.core.timeframes import timeframe_to_ms
    from tandem.daemon.app import Daemon
    from tandem.daemon.emulator.market import MarketData
    from tandem.daemon.export import export_fills
    from tandem.daemon.replay import run_replay
    from tandem.daemon.state import StateStore

    db = _replay_db(args, settings, profile)
    tf = timeframe_to_ms(profile.base_timeframe)
    warm = profile.warmup
    start, end = args.from_, args.to  # epoch ms, validated by the parser
    if start is not None and end is not None and end <= start:
        raise _UsageError(f"--to ({_iso(end)}) must be after --from ({_iso(start)})")
    if args.data is not None:
        lo = None if start is None else max(0, start - warm * tf)
        try:
            src = open_candles(args.data, exchange=profile.exchange,
                               timeframe=profile.base_timeframe)
            aligned = src.load_aligned(profile.assets, profile.base_timeframe, lo, end)
        except CandleStoreError as exc:  # missing symbol, corrupt file, no such path
            raise _DataError(str(exc)) from None
        if aligned.n_bars == 0:
            raise _DataError(_empty_range(src, profile, args.data, start, end))
        market = MarketData.from_aligned(aligned, profile.base_timeframe)
    else:
        day = 86_400_000
        start0 = (1_700_000_000_000 // day) * day
        bars = 500 if args.bars is None else args.bars
        seed = 7 if args.seed is None else args.seed
        if warm + bars > MAX_SAMPLE_BARS:
            raise _UsageError(f"--sample: {warm} warm-up + {bars} bars exceed "
                              f"{MAX_SAMPLE_BARS} bars; pass a smaller --warmup-bars/--bars")
        market = MarketData.generate(profile.assets, profile.base_timeframe,
                                     start=start0, n_bars=warm + bars, seed=seed)
    first, data_end = market.first_ts, market.end_ts
    start_ts = start if start is not None else first + warm * tf
    # A --from before the data plays from the first bar (as the backtest trades from the
    # first bar at or after --from): the emulator has nothing to serve earlier.
    # Between two bar opens, --from and --to round UP, as the backtest reads them (the first
    # bar at or after --from; the bars opening before --to): rounded down, a replay --from
    # 00:30 traded the 00:00 bar the backtest does not, and the fills differed.
    start_ts = max(-(-start_ts // tf) * tf, first)
    end_ts = data_end if end is None else min(-(-end // tf) * tf, data_end)
    what = (f"--from {_iso(start_ts)}" if start is not None else
            f"the first tradable bar {_iso(start_ts)} (first bar {_iso(first)} + warm-up "
            f"of {warm} bars)")
    if end is not None and end <= first:
        raise _DataError(f"nothing to replay: --to {_iso(end)} is at or before the first bar "
                         f"of the data ({_iso(first)})")
    if end is not None and -(-end // tf) * tf <= start_ts:
        raise _DataError(f"nothing to replay: --to {_iso(end)} is at or before {what}")
    if start_ts >= end_ts:
        raise _DataError(f"nothing to replay: {what} is at or after the end of the data "
                         f"({_iso(data_end)})")
    cfg = _daemon_config(args, settings, profile, db)
    cfg.journal_kind = "replay"
    cfg.fresh = True if args.db is None else args.fresh
    if not cfg.fresh:
        _check_resume(db, profile, market, start_ts, end_ts)
    if ops is not None:
        await ops.start()
        print(f"dashboard: {ops.server.url}/", file=sys.stderr, flush=True)
    daemon = Daemon(cfg, _stepper_factory(profile), ops=ops)
    _install_signals(daemon, ops)
    if ops is not None:
        ops.watch_daemon(daemon)
    try:
        await run_replay(daemon, market, start_ts, end_ts, speed=args.speed)
    finally:
        if ops is not None:
            ops.stopping()
            await ops.stop()
    with StateStore(db) as store:
        fills = store.fills_table()
        out = args.out
        paths = export_fills(store, out) if out is not None else []
        status = store.status()
        _print_summary(profile.name, fills, status, db, paths, store.slice_count(warmup=True),
                       _entries_skipped(daemon))
    warm_have = min(warm, (start_ts - first) // tf)
    if warm_have < warm:
        # --from at or near the start of the data: the first tradable bar has fewer warm-up
        # bars than the profile asks (cold indicators), which the summary did not say (the
        # backtest's report shows "warm-up N/M").
        _out(f"  warm-up short: {warm_have} of the profile's {warm} bars before the first "
             f"tradable bar {_iso(start_ts)} (the data starts at {_iso(first)})")
    last, last_bar = status.get("last_ts_ms"), end_ts - tf
    if last is None or last < last_bar:
        # Stopped by SIGTERM/SIGINT (exit 0, documented): the summary and the fingerprint
        # above cover only the slices replayed, which nothing said.
        done = "no slice" if last is None else f"up to the slice at {_iso(last)}"
        _out(f"  stopped before the end: replayed {done}, not up to {_iso(last_bar)}; "
             "the figures above cover only that part")
    return EXIT_OK


def _check_resume(db: Path, profile, market, start_ts: int, end_ts: int) -> None:
    """A ``--db`` journal of this profile is continued only with the same candles and range
    (:func:`tandem.daemon.replay.resume_conflict`); otherwise exit 2 before anything runs,
    as for a changed profile. Another profile's journal is left to ``bind_profile``."""
    from tandem.daemon.replay import resume_conflict
    from tandem.daemon.state import StateStore, profile_hash

    with StateStore(db) as store:
        if (store.get_meta("profile") != profile.name
                or store.get_meta("profile_hash") != profile_hash(profile.canonical_json())):
            return
        why = resume_conflict(store, market, start_ts, end_ts)
    if why is not None:
        raise _UsageError(f"state in {db} is not this replay's journal: {why}; refusing to "
                          "resume; start with --fresh to discard it or pass another --db")


def _entries_skipped(daemon) -> dict[str, int]:  # noqa: ANN001
    """The paper engine's skipped entry signals by cause (``Engine.entries_skipped``), or
    none (no stepper: stopped before start; portfolio mode counts none)."""
    engine = getattr(getattr(daemon, "stepper", None), "engine", None)
    if engine is None or engine.config.mode != "discrete":
        return {}
    return engine.entries_skipped()


def _print_summary(name: str, fills, status: dict, db: Path, paths: list[Path],
                   warm: int, skipped: dict[str, int] | None = None) -> None:
    from tandem.core.arrow_numpy import column_values

    n = len(fills)
    total = status.get("slices", 0)
    # The warm-up's slices are journaled too: "6224 slices" for --bars 200 read as 6224
    # traded bars.
    lines = [f"replay of {name}: {total} slices ({warm} warm-up, {total - warm} tradable), "
             f"{n} fills"]
    if n:
        by = Counter(column_values(fills, "reason").tolist())
        lines.append("  fills by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
        lines.append(f"  fees paid: {column_values(fills, 'fee').sum():.2f}; cash after last "
                     f"fill: {column_values(fills, 'cash_after')[-1]:.2f}")
    if skipped and sum(skipped.values()):
        # As `tandem-backtest run`'s summary: fewer fills than signals, with the reason.
        causes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in skipped.items() if v)
        lines.append(f"  entries skipped: {sum(skipped.values())} signal bars ({causes})")
    open_pos = status.get("positions") or {}
    lines.append(f"  open positions: {open_pos or 'none'}")
    from tandem.core.fingerprint import fingerprint_line

    lines.append("  " + fingerprint_line(fills))  # same line as tandem-backtest run prints
    lines.append(f"  journal: {db} (tandem-daemon export-fills --db {db} --out DIR)")
    for p in paths:
        lines.append(f"  exported: {p}")
    _out("\n".join(lines))


if __name__ == "__main__":
    entry_point()
