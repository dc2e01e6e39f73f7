"""``reconcile(paper, backtest, ...)``: compare a paper journal with a backtest journal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tandem.backtest.reconcile.classify import category_counts, classify
from tandem.backtest.reconcile.drift import drift_frame
from tandem.backtest.reconcile.evidence import (
    CandleReader,
    ConfigDiff,
    config_diff,
    data_events,
    empty_events,
)
from tandem.backtest.reconcile.match import (
    IDENTICAL,
    MISMATCHED,
    MISSING_BACKTEST,
    MISSING_PAPER,
    WITHIN,
    Tolerance,
    match_fills,
)
from tandem.backtest.reconcile.report import ProfileSummary, ReconcileReport
from tandem.backtest.reconcile.sources import (
    ProfileInfo,
    ReconcileInputError,
    Side,
    check_time_order,
    conform,
    db_profile,
    infer_timeframe,
    is_sqlite,
    load_side,
    manifest_profiles,
    read_db_candles,
    read_db_meta,
    read_db_slices,
    sidecar_data_path,
    warmup_gap_text,
    warmup_journal_gap,
)
from tandem.core.fingerprint import run_fingerprint, trade_fingerprints
from tandem.core.timeframes import timeframe_to_ms

PathLike = str | Path
#: data-event kind of a warm-up bar an incomplete warm-up journal lacks (see _unjournaled)
UNJOURNALED = "unjournaled"
Journal = PathLike | Sequence[PathLike] | pd.DataFrame


def _side(label: str, src: Journal, profiles: dict[str, ProfileInfo] | None) -> Side:
    if isinstance(src, pd.DataFrame):
        fills = conform(src)
        check_time_order(fills, f"{label} frame")
        return Side(label, fills, dict(profiles or {}))
    paths = [src] if isinstance(src, str | Path) else list(src)
    return load_side(label, paths, profiles)


def _paths(x: PathLike | Sequence[PathLike] | None) -> list[Path]:
    if x is None:
        return []
    return [Path(x)] if isinstance(x, str | Path) else [Path(p) for p in x]


def _history(history: PathLike | CandleReader | None, timeframe: str | None,
             exchange: str | None = None) -> CandleReader | None:
    if history is None or hasattr(history, "read"):
        return history  # type: ignore[return-value]
    from tandem.core.store import open_candles

    # The store keeps one folder per venue (<root>/<exchange>/...): without the profile's
    # exchange a bybit/okx journey read <root>/binance — absent (every bar listed as a data
    # event) or, worse, another venue's prices compared and used for the drift marks.
    return open_candles(history, exchange=exchange, timeframe=timeframe)


def reconcile(
    paper: Journal,
    backtest: Journal,
    candles: PathLike | Sequence[PathLike] | None = None,
    tolerance: Tolerance | float | None = None,
    *,
    history: PathLike | CandleReader | None = None,
    paper_profiles: dict[str, ProfileInfo] | None = None,
    backtest_profiles: dict[str, ProfileInfo] | None = None,
    backtest_manifest: PathLike | dict[str, Any] | None = None,
) -> ReconcileReport:
    """Match, classify and measure the drift between a paper and a backtest journal.

    ``paper``/``backtest``: a fills CSV/Parquet, a daemon SQLite database, a folder holding
    ``fills.parquet``/``fills.csv``, a list of those (concatenated), or a journal frame.
    ``candles``: daemon database(s) whose journaled candles explain *data* differences
    (default: the paper inputs that are databases). ``history``: the stored candles the
    backtest read (a path for :func:`tandem.core.store.open_candles`, or a source object; default:
    the ``data`` named in the backtest's ``stats.json``); the journaled candles are compared
    with it bar by bar. ``tolerance``: a :class:`Tolerance`
    or a relative tolerance; default exact. Profile hashes come from the daemon database
    (paper), a JSON sidecar next to the backtest fills, ``backtest_manifest``, or the
    explicit ``*_profiles`` (which win).
    """
    tol = tolerance if isinstance(tolerance, Tolerance) else Tolerance(rel=float(tolerance or 0.0))
    if backtest_manifest is not None:
        backtest_profiles = {**manifest_profiles(backtest_manifest), **(backtest_profiles or {})}
    p_side = _side("paper", paper, paper_profiles)
    b_side = _side("backtest", backtest, backtest_profiles)
    _check_not_swapped(p_side, b_side)
    _check_a_common_profile(p_side, b_side)
    dbs = _paths(candles) if candles is not None else list(p_side.dbs)
    for db in dbs:
        if not is_sqlite(db):
            raise ValueError(f"--candles {db} is not a daemon database (SQLite)")

    timeframe = _timeframe(p_side, b_side, dbs)
    tf_ms = timeframe_to_ms(timeframe) if timeframe else 0
    if history is None and dbs:
        # Default: the candles the backtest itself read (its stats.json names them).
        found = [d for d in map(sidecar_data_path, b_side.paths) if d is not None]
        history = found[0] if found else None
    hist = _history(history, timeframe, _exchange(b_side, p_side))
    gaps = {db: gap for db in dbs if (gap := warmup_journal_gap(db)) is not None}
    listed = _events(dbs, tf_ms, hist, timeframe, gaps)
    # An unjournaled warm-up bar is listed in the report but explains no difference: the
    # daemon may well have warmed up on it, so it is no evidence either way.
    events = _EventsByProfile({k: e[e["kind"] != UNJOURNALED] for k, e in listed.items()})

    matches = match_fills(p_side.fills, b_side.fills, tol)
    profiles = sorted(set(p_side.fills["profile"]) | set(b_side.fills["profile"]))
    configs = {
        p: config_diff(p, p_side.profiles.get(p), b_side.profiles.get(p)) for p in profiles
    }
    diffs = classify(matches, events, configs, _coverage(dbs, tf_ms))

    marks = _marks(hist, dbs, p_side, b_side, timeframe, tf_ms)
    cash = {}
    for p in profiles:
        for info in (b_side.profiles.get(p), p_side.profiles.get(p)):
            if info is not None and info.json and "initial_cash" in info.json:
                cash[p] = float(info.json["initial_cash"])
                break
    drift = drift_frame(p_side.fills, b_side.fills, marks, cash)

    all_events = (
        pd.concat([e.assign(profile=k or "") for k, e in listed.items()], ignore_index=True)
        if listed else empty_events().assign(profile="")
    )
    summaries = [
        _summary(p, matches, diffs, drift, p_side, b_side, configs[p], events)
        for p in profiles
    ]
    return ReconcileReport(
        matches=matches,
        differences=diffs,
        drift=drift,
        events=all_events,
        profiles=summaries,
        tolerance=tol,
        inputs={
            "paper": [str(x) for x in p_side.paths] or ["<frame>"],
            "backtest": [str(x) for x in b_side.paths] or ["<frame>"],
            "candles": [str(x) for x in dbs],
            "history": [str(history)] if history is not None else [],
        },
        # Not a refusal: the fills comparison does not need the warm-up's candles, only
        # the data evidence does (its unjournaled bars are no evidence, see above).
        caveats=[f"{warmup_gap_text(db, gap)}; the warm-up bars it lacks are listed as data "
                 f"events of kind '{UNJOURNALED}' and explain no difference (the daemon may "
                 "well have had them)" for db, gap in gaps.items()],
    )


def _check_not_swapped(p_side: Side, b_side: Side) -> None:
    """Swapped, the daemon db's candles were no evidence (they come from the --paper side)
    and every data difference was blamed on logic, each side's gaps on the other."""
    if (len(p_side.fills) and len(b_side.fills) and set(p_side.fills["source"]) == {"backtest"}
            and set(b_side.fills["source"]) == {"paper"}):
        where = lambda s: ", ".join(map(str, s.paths)) or "<frame>"  # noqa: E731
        raise ReconcileInputError(
            f"--paper {where(p_side)} holds backtest fills and --backtest {where(b_side)} paper "
            "fills (their source column): the two look swapped")


def _check_a_common_profile(p_side: Side, b_side: Side) -> None:
    """Fills are matched per profile: a paper journal of profile ``t`` against a backtest of
    ``u`` matched nothing and blamed every fill on *logic* (a bug), though the inputs were
    just two different strategies."""
    if not (len(p_side.fills) and len(b_side.fills)):
        return
    paper, backtest = set(p_side.fills["profile"]), set(b_side.fills["profile"])
    if paper.isdisjoint(backtest):
        where = lambda s: ", ".join(map(str, s.paths)) or "<frame>"  # noqa: E731
        raise ReconcileInputError(
            f"--paper {where(p_side)} holds fills of profile {', '.join(sorted(paper))} and "
            f"--backtest {where(b_side)} of {', '.join(sorted(backtest))}: no profile in "
            "common, nothing to compare (backtest the paper's profile)")


def _timeframe(p_side: Side, b_side: Side, dbs: list[Path]) -> str | None:
    for side in (p_side, b_side):
        for info in side.profiles.values():
            if info.json and info.json.get("base_timeframe"):
                return str(info.json["base_timeframe"])
    frames = [read_db_candles(db) for db in dbs]
    return infer_timeframe(frames)


def _exchange(*sides: Side) -> str | None:
    """The profile's exchange, the backtest side first: ``history`` is the candles the
    backtest read, so its venue folder is the one to open."""
    for side in sides:
        for info in side.profiles.values():
            if info.json and info.json.get("exchange"):
                return str(info.json["exchange"])
    return None


def _events(
    dbs: list[Path], tf_ms: int, hist: CandleReader | None, timeframe: str | None,
    gaps: dict[Path, Any] | None = None,
) -> dict[str | None, pd.DataFrame]:
    """Data events per profile (key None: a database without a profile, applies to all)."""
    out: dict[str | None, pd.DataFrame] = _EventsByProfile()
    for db in dbs:
        info = db_profile(db)
        slices = read_db_slices(db)
        ev = data_events(
            read_db_candles(db), read_db_candles(db, "late"), slices, tf_ms, hist, timeframe
        )
        if gaps and db in gaps:
            ev = _unjournaled(ev, slices, read_db_meta(db).get("warmup_to"))
        key = info.name if info else None
        out[key] = pd.concat([out[key], ev], ignore_index=True) if key in out else ev
    if None in out:  # unattributed events apply to every profile
        shared = out[None]
        for k in [k for k in out if k is not None]:
            out[k] = pd.concat([out[k], shared], ignore_index=True)
    return out


def _unjournaled(events: pd.DataFrame, slices: pd.DataFrame, t0: str | None) -> pd.DataFrame:
    """A database whose warm-up journal is incomplete: a warm-up bar history has but the
    journal lacks, on a warm-up slice it has no row of, is not evidence that the daemon
    never had it (it warmed up on it, then stopped before journaling it)."""
    if t0 is None or events.empty:
        return events
    hit = ((events["kind"] == "missing") & (events["ts"] < int(t0))
           & ~events["ts"].isin(set(slices["ts"].tolist())))
    events = events.copy()
    events.loc[hit, "kind"] = UNJOURNALED
    events.loc[hit, "detail"] = ("in history, not in the daemon's journal: its warm-up journal "
                                 "is incomplete (the daemon may well have had this bar)")
    return events


def _coverage(dbs: list[Path], tf_ms: int) -> dict[str, tuple[int, int]]:
    """Per profile: close times of the first and last slice its daemon stepped."""
    out: dict[str, tuple[int, int]] = {}
    for db in dbs:
        info = db_profile(db)
        sl = read_db_slices(db)
        if info is None or sl.empty:
            continue
        lo, hi = int(sl["ts"].min()) + tf_ms, int(sl["ts"].max()) + tf_ms
        if info.name in out:  # several dbs of one profile: the union of their windows
            lo, hi = min(lo, out[info.name][0]), max(hi, out[info.name][1])
        out[info.name] = (lo, hi)
    return out


class _EventsByProfile(dict):
    """dict lookup with a fallback to the unattributed (None) events."""

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        return super().get(key, super().get(None, default))


def _marks(
    hist: CandleReader | None, dbs: list[Path], p_side: Side, b_side: Side, timeframe: str | None, tf_ms: int
) -> pd.DataFrame | None:
    """``symbol, close_ts, close`` marks: history first, else the daemon's consumed candles."""
    fills = pd.concat([p_side.fills, b_side.fills], ignore_index=True)
    if not len(fills) or not tf_ms:
        return None
    lo, hi = int(fills["ts"].min()) - 2 * tf_ms, int(fills["ts"].max())
    frames = []
    if hist is not None:
        for sym in sorted(set(fills["symbol"])):
            try:
                c = hist.read(sym, lo, hi, timeframe=timeframe)
            except KeyError:
                continue
            frames.append(pd.DataFrame({"symbol": sym, "close_ts": c["ts"].to_numpy(np.int64) + tf_ms,
                                        "close": c["close"].to_numpy(np.float64)}))
    elif dbs:
        for db in dbs:
            c = read_db_candles(db)
            c = c[(c["ts"] >= lo) & (c["ts"] < hi)]
            frames.append(pd.DataFrame({"symbol": c["symbol"].to_numpy(), "close_ts": c["ts"].to_numpy(np.int64) + tf_ms,
                                        "close": c["close"].to_numpy(np.float64)}))
    if not frames:
        return None
    out = pd.concat(frames, ignore_index=True).drop_duplicates(["symbol", "close_ts"], keep="first")
    return out.sort_values(["symbol", "close_ts"]).reset_index(drop=True)


def _summary(
    profile: str,
    matches: pd.DataFrame,
    diffs: pd.DataFrame,
    drift: pd.DataFrame,
    p_side: Side,
    b_side: Side,
    config: ConfigDiff,
    events: dict[str | None, pd.DataFrame],
) -> ProfileSummary:
    m = matches[matches["profile"] == profile]
    counts = m["status"].value_counts()
    pf = p_side.fills[p_side.fills["profile"] == profile]
    bf = b_side.fills[b_side.fills["profile"] == profile]
    tp, tb = trade_fingerprints(pf), trade_fingerprints(bf)
    pairs_p = set(zip(tp["trade_id"], tp["fingerprint"], strict=True))
    pairs_b = set(zip(tb["trade_id"], tb["fingerprint"], strict=True))
    differing = {t for t, _ in pairs_p ^ pairs_b}
    d = drift[drift["profile"] == profile]
    ev = events.get(profile, events.get(None))
    return ProfileSummary(
        profile=profile,
        paper_fills=len(pf),
        backtest_fills=len(bf),
        identical=int(counts.get(IDENTICAL, 0)),
        within_tolerance=int(counts.get(WITHIN, 0)),
        mismatched=int(counts.get(MISMATCHED, 0)),
        missing_in_paper=int(counts.get(MISSING_PAPER, 0)),
        missing_in_backtest=int(counts.get(MISSING_BACKTEST, 0)),
        categories=category_counts(diffs[diffs["profile"] == profile]),
        paper_fingerprint=run_fingerprint(pf),
        backtest_fingerprint=run_fingerprint(bf),
        paper_trades=len(tp),
        backtest_trades=len(tb),
        trades_differing=len(differing),
        config=config,
        data_events=0 if ev is None else len(ev),
        max_abs_equity_drift=float(d["equity_drift"].abs().max()) if len(d) else 0.0,
        final_equity_drift=float(d["equity_drift"].iloc[-1]) if len(d) else 0.0,
        final_pnl_drift=float(d["pnl_drift"].iloc[-1]) if len(d) else 0.0,
        differing_trades=sorted(differing, key=_trade_sort_key),
    )


def _trade_sort_key(trade_id: str) -> tuple[int, str]:
    """Trade ids are ``profile:symbol:entry_ts``: order by entry time, then id."""
    parts = trade_id.split(":")
    try:
        return int(parts[-1]), trade_id
    except (IndexError, ValueError):
        return 0, trade_id
