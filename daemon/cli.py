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
import json
import signal
import sys
from pathlib import Path
from typing import Any

from core.exiting import exit_fast

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tandem-daemon", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--manifest", type=Path, help="manifest.json (default: settings)")
        sp.add_argument("--profile", help="profile name (default: settings / default_profile)")
        sp.add_argument("--db", type=Path, help="SQLite state file (default: TANDEM_STATE_DB)")
        sp.add_argument("--fresh", action="store_true",
                        help="discard existing state (required when the profile changed)")
        sp.add_argument("--grace", type=float, help="seconds to wait for late assets")
        sp.add_argument("--watchdog", type=float, default=60.0,
                        help="reconnect a connection silent this many seconds (0 = off)")
        sp.add_argument("--warmup-bars", type=int, help="override the profile's warm-up")
        sp.add_argument("--export-dir", type=Path, help="periodic fills.csv/.parquet export")
        sp.add_argument("--export-every", type=float, default=300.0, help="export period, s")
        sp.add_argument("--heartbeat-every", type=float, default=30.0, help="heartbeat, s")
        sp.add_argument("--log-format", choices=["auto", "json", "pretty"],
                        help="default: JSON when not on a terminal, pretty on one")
        sp.add_argument("--log-level", help="DEBUG/INFO/WARNING/ERROR")

    run = sub.add_parser("run", help="paper-trade live candles (endpoints from settings)")
    common(run)
    run.add_argument("--rest-url", help="override TANDEM_EXCHANGE_REST_URL")
    run.add_argument("--ws-url", help="override TANDEM_EXCHANGE_WS_URL")
    run.add_argument("--http", action="store_true",
                     help="serve /health, /metrics, /positions, /fills (daemon.ops; on by "
                          "default, TANDEM_HTTP_ENABLED=false turns it off)")

    rep = sub.add_parser("replay", help="play stored history through the emulator and the "
                                        "live path (real ccxt.pro over 127.0.0.1)")
    common(rep)
    src = rep.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="candle store, CSV folder or universe parquet")
    src.add_argument("--sample", action="store_true",
                     help="seeded generated candles (default when --data is absent)")
    rep.add_argument("--from", dest="from_", help="first tradable bar (date or ms); "
                                                  "default: first bar + warm-up")
    rep.add_argument("--to", help="end (exclusive; date or ms); default: last bar")
    rep.add_argument("--bars", type=int, default=500,
                     help="--sample: tradable bars to generate (plus the warm-up)")
    rep.add_argument("--seed", type=int, default=7, help="--sample: generator seed")
    rep.add_argument("--speed", type=float,
                     help="play in wall time x speed (default: as fast as the live path goes)")
    rep.add_argument("--out", type=Path, help="write fills.csv/.parquet here at the end")

    st = sub.add_parser("status", help="print the state database's summary as JSON")
    st.add_argument("--db", type=Path)

    ex = sub.add_parser("export-fills", aliases=["export"], help="export the fills journal")
    ex.add_argument("--db", type=Path)
    ex.add_argument("--out", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tandem-daemon``."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "status":
            return _status(args)
        if args.cmd in ("export-fills", "export"):
            return _export(args)
        return _serve(args)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def entry_point() -> None:
    """The ``tandem-daemon`` console script: :func:`main`, then exit."""
    exit_fast(main())


class _UsageError(Exception):
    pass


def _settings(**overrides: Any):
    from core.settings import SettingsError, load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise _UsageError(str(exc)) from None


def _db_path(args) -> Path:
    return args.db if args.db is not None else _settings().state_db


def _status(args) -> int:
    from daemon.state import StateStore

    db = _db_path(args)
    if not db.exists():
        raise _UsageError(f"no state database at {db}")
    with StateStore(db) as store:
        print(json.dumps(store.status(), indent=2, default=str))
    return EXIT_OK


def _export(args) -> int:
    from daemon.export import export_fills
    from daemon.state import StateStore

    db = _db_path(args)
    if not db.exists():
        raise _UsageError(f"no state database at {db}")
    with StateStore(db) as store:
        paths = export_fills(store, args.out)
        print(f"{store.fill_count()} fills -> {', '.join(str(p) for p in paths)}")
    return EXIT_OK


def _serve(args) -> int:
    settings = _settings()
    settings.apply_numba_cache_dir()
    from core.manifest import ManifestError, load_manifest, resolve_manifest_path
    from daemon.logconfig import configure_logging

    fmt = args.log_format or "auto"
    configure_logging(fmt, args.log_level or settings.log_level)
    manifest_path = resolve_manifest_path(args.manifest, settings.manifest_path)
    try:
        profile = load_manifest(manifest_path).profile(args.profile or settings.profile)
    except ManifestError as exc:
        raise _UsageError(str(exc)) from None
    if args.warmup_bars is not None:
        name = profile.name
        profile = profile.model_copy(update={"warmup_bars": args.warmup_bars})
        profile._name = name
    from core.store import CandleStoreError
    from daemon.app import SliceFailedError
    from daemon.state import ProfileChangedError

    try:
        if args.cmd == "run":
            ops = _build_ops(settings, args.db or settings.state_db)  # ops (issue 8)
            return asyncio.run(_run_live(args, settings, profile, ops))
        return asyncio.run(_run_replay(args, settings, profile))
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
    except CandleStoreError as exc:  # bad candle data (--data): one line, exit 1 (issue 16)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL


def _daemon_config(args, settings, profile, db: Path):
    from core.timeframes import timeframe_to_ms
    from daemon.app import DaemonConfig

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
def _build_ops(settings, db: Path):
    """Ops for ``run``, built before the event loop so that a non-loopback bind without a
    token (or any ops setting problem) exits 2 naming the field, before READY."""
    from daemon.logconfig import get_logger
    from daemon.ops import InsecureBindError, Ops
    from daemon.ops.alerts import NotifyConfigError
    from daemon.ops.provider import SqliteStateProvider

    try:
        return Ops.from_settings(settings, provider=SqliteStateProvider(db),
                                 logger=get_logger("ops"))
    except (InsecureBindError, NotifyConfigError) as exc:
        raise _UsageError(str(exc)) from None


async def _run_live(args, settings, profile, ops=None) -> int:
    from daemon.app import Daemon
    from daemon.strategy import stepper_factory

    cfg = _daemon_config(args, settings, profile, args.db or settings.state_db)
    # Warm up from the local candle store when there is one (issue 18): REST fetches only
    # the tail it lacks, and that tail is stored for the next start. Not in replay: its
    # history is the emulator's, not the store's.
    data_dir = Path(settings.data_dir)
    if data_dir.is_dir():
        cfg.candle_store, cfg.candle_store_exchange = data_dir, profile.exchange
    if ops is not None:  # ops (issue 8): HTTP up during warm-up (/health says "starting")
        await ops.start()
    daemon = Daemon(cfg, stepper_factory(profile), ops=ops)
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


async def _run_replay(args, settings, profile) -> int:
    from core.store import open_candles, to_ms
    from core.timeframes import timeframe_to_ms
    from daemon.app import Daemon
    from daemon.emulator.market import MarketData
    from daemon.export import export_fills
    from daemon.replay import run_replay
    from daemon.state import StateStore
    from daemon.strategy import stepper_factory

    tf = timeframe_to_ms(profile.base_timeframe)
    warm = profile.warmup
    if args.data is not None:
        src = open_candles(args.data, exchange=profile.exchange, timeframe=profile.base_timeframe)
        start = to_ms(args.from_)
        lo = None if start is None else start - warm * tf
        aligned = src.load_aligned(profile.assets, profile.base_timeframe, lo, to_ms(args.to))
        if aligned.n_bars == 0:
            raise _UsageError(f"no candles for {profile.name} in {args.data} in that range")
        market = MarketData.from_aligned(aligned, profile.base_timeframe)
    else:
        day = 86_400_000
        start0 = (1_700_000_000_000 // day) * day
        market = MarketData.generate(profile.assets, profile.base_timeframe,
                                     start=start0, n_bars=warm + args.bars, seed=args.seed)
    first = market.first_ts
    start_ts = to_ms(args.from_) if args.from_ else first + warm * tf
    start_ts = (start_ts // tf) * tf
    end_ts = market.end_ts if args.to is None else (to_ms(args.to) // tf) * tf
    end_ts = min(end_ts, market.end_ts)
    if start_ts >= end_ts:
        raise _UsageError("nothing to replay: --from is at or after the end of the data")
    db = args.db or Path(settings.state_db).with_name(f"replay-{profile.name}.sqlite")
    cfg = _daemon_config(args, settings, profile, db)
    cfg.fresh = True if args.db is None else args.fresh
    daemon = Daemon(cfg, stepper_factory(profile))
    _install_signals(daemon)
    await run_replay(daemon, market, start_ts, end_ts, speed=args.speed)
    with StateStore(db) as store:
        fills = store.fills_frame()
        out = args.out
        paths = export_fills(store, out) if out is not None else []
        _print_summary(profile.name, fills, store.status(), db, paths)
    return EXIT_OK


def _print_summary(name: str, fills, status: dict, db: Path, paths: list[Path]) -> None:
    n = len(fills)
    lines = [f"replay of {name}: {status.get('slices', 0)} slices, {n} fills"]
    if n:
        by = fills.groupby("reason").size().to_dict()
        lines.append("  fills by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
        lines.append(f"  fees paid: {fills['fee'].sum():.2f}; cash after last fill: "
                     f"{fills['cash_after'].iloc[-1]:.2f}")
    open_pos = status.get("positions") or {}
    lines.append(f"  open positions: {open_pos or 'none'}")
    from core.fingerprint import fingerprint_line

    lines.append("  " + fingerprint_line(fills))  # same line as tandem-backtest run prints
    lines.append(f"  journal: {db} (tandem-daemon export-fills --db {db} --out DIR)")
    for p in paths:
        lines.append(f"  exported: {p}")
    print("\n".join(lines))


if __name__ == "__main__":
    entry_point()
