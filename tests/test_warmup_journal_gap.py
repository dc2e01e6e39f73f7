"""A daemon stopped while journaling its warm-up (``warmup_journal = pending`` for good: a
SIGTERM with a big warm-up, a kill) leaves a journal without some warm-up candles. Nothing
may then silently rely on them: ``run --candles-from`` refuses the db (its backtest would
warm up on fewer bars than the daemon did), reconcile says so and never calls those bars
"missing", and a daemon resuming that state warns once and shows it on /health.

Small: three assets, 300 warm-up bars, 40 tradable ones (as tests/test_warmstart.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from structlog.testing import capture_logs
from tandem.backtest.cli import main
from tandem.core import journal
from tandem.core.store import CandleStore
from tandem.daemon.replay import run_replay
from tandem.daemon.state import StateStore
from tandem.daemon.warmstart import WarmupSink

from tests.test_daemon_support import (
    TF,
    make_daemon,
    replay,
    replay_window,
    sample_market,
    small_profile,
)

WARM = 300
CHUNK = 50  # warm-up journal rows per transaction: one chunk goes out, the rest never does


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Two replays of one market: ``done`` (journal whole) and ``pending`` (stopped after
    the first chunk of the warm-up journal), plus the market as a candle store and the
    profile as a manifest."""
    import tandem.daemon.app as app

    root = tmp_path_factory.mktemp("gap")
    profile = small_profile(warmup=WARM)
    market = sample_market(warmup=WARM, n_tradable=40)
    asyncio.run(replay(profile, market, root / "done.sqlite"))
    with pytest.MonkeyPatch.context() as mp:
        # As tests/test_warmstart.py: nothing journaled between slices, no time at stop...
        mp.setattr(app, "JOURNAL_AT_ONCE_ROWS", 0)
        mp.setattr(app, "STOP_JOURNAL_S", 0.0)

        async def never(self):  # noqa: ANN001
            return None

        mp.setattr(app.Daemon, "_journal_between_slices", never)
        # ...and small chunks, so that the one chunk written leaves most rows out.
        chunks = WarmupSink.journal_chunks
        mp.setattr(WarmupSink, "journal_chunks",
                   lambda self, store, chunk_rows=CHUNK: chunks(self, store, CHUNK))
        asyncio.run(replay(profile, market, root / "pending.sqlite"))
    store = CandleStore(root / "store", exchange="binance", timeframe=TF)
    for s in profile.assets:
        store.append(s, market.frame(s))
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"version": 1, "profiles": {
        profile.name: json.loads(profile.canonical_json())}}))
    t0, end = replay_window(market, WARM)
    n_warm = WARM * len(profile.assets)
    with StateStore(root / "pending.sqlite") as st:
        assert st.get_meta("warmup_journal") == "pending"
        written = st.conn.execute("SELECT COUNT(*) FROM candles WHERE ts < ?", (t0,)).fetchone()[0]
    assert 0 < written < n_warm  # a real gap (test_warmstart's stop leaves none: one chunk)
    with StateStore(root / "done.sqlite") as st:
        assert st.get_meta("warmup_journal") == "done"
    return dict(root=root, profile=profile, market=market, manifest=manifest, t0=t0, end=end,
                missing=n_warm - written, n_warm=n_warm)


def _run_argv(world: dict, db: Path, out: Path) -> list[str]:
    return ["run", "--manifest", str(world["manifest"]), "--profile", world["profile"].name,
            "--candles-from", str(db), "--from", str(world["t0"]), "--to", str(world["end"]),
            "--out", str(out), "--no-report"]


def test_the_reader(world):
    from tandem.backtest.reconcile.sources import warmup_journal_gap

    root = world["root"]
    assert warmup_journal_gap(root / "done.sqlite") is None
    assert warmup_journal_gap(root / "pending.sqlite") == {
        "missing_candles": world["missing"], "warmup_candles": world["n_warm"]}
    with StateStore(root / "pending.sqlite") as st:
        assert st.warmup_journal_gap() == {
            "missing_candles": world["missing"], "warmup_candles": world["n_warm"]}
    # a state from before the rule (no such meta): complete
    old = root / "old.sqlite"
    shutil.copy(root / "pending.sqlite", old)
    with StateStore(old) as st:
        st.conn.execute("DELETE FROM meta WHERE key = 'warmup_journal'")
        assert st.warmup_journal_gap() is None
    assert warmup_journal_gap(old) is None
    # every row written, only the closing "done" lost to the stop: complete, not refused
    whole = root / "whole.sqlite"
    shutil.copy(root / "done.sqlite", whole)
    with StateStore(whole) as st:
        st.set_meta("warmup_journal", "pending")
        assert st.warmup_journal_gap() is None
    assert warmup_journal_gap(whole) is None


def test_run_candles_from_refuses_a_pending_warmup_journal(world, capsys):
    db = world["root"] / "pending.sqlite"
    out = world["root"] / "bt-pending"
    rc = main(_run_argv(world, db, out))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("error: ") and str(db) in line
    assert "warm-up journal is incomplete" in line
    assert f"{world['missing']:,} of {world['n_warm']:,} warm-up candles" in line
    assert "fewer bars than the daemon" in line and "--data" in line
    assert not out.exists()


def test_run_candles_from_a_whole_journal_still_runs(world, capsys):
    out = world["root"] / "bt-done"
    rc = main(_run_argv(world, world["root"] / "done.sqlite", out))
    assert rc == 0, capsys.readouterr().err
    with StateStore(world["root"] / "done.sqlite") as st:
        paper = st.fills_frame()
    bt = journal.read_parquet(out / "fills.parquet")
    assert len(bt) == len(paper) > 0


def test_reconcile_says_the_candle_evidence_is_partial(world, capsys):
    """The fills still compare (the pending and the whole run traded alike); every output
    carries the caveat, and the warm-up bars the journal lacks are listed as 'unjournaled'
    events that explain nothing — before, they were 'missing' candles ("never received by
    the daemon", which warmed up on them) and made the difference below a 'data' one."""
    root = world["root"]
    db = root / "pending.sqlite"
    with StateStore(root / "done.sqlite") as st:
        fills = st.fills_frame()
    bt = root / "bt.csv"
    # One fill left out of the backtest side: no candle explains that (a logic difference).
    plain = fills.index[fills["intrabar"] == ""]
    journal.write_csv(fills.drop(index=plain[-1]), bt)
    out = root / "rec"
    rc = main(["reconcile", "--paper", str(db), "--backtest", str(bt),
               "--history", str(root / "store"), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1  # the left-out fill
    caveats = [ln for ln in text.splitlines() if ln.startswith("caveat: ")]
    assert len(caveats) == 1 and str(db) in caveats[0]
    assert "warm-up journal is incomplete" in caveats[0]
    assert "caveat" in (out / "reconcile.md").read_text()
    assert "warm-up journal is incomplete" in (out / "reconcile.html").read_text()
    diffs = pd.read_csv(out / "reconcile_differences.csv")
    assert len(diffs) == 1
    assert diffs["category"].iloc[0] == "logic", diffs["evidence"].iloc[0]
    assert "data events: 0" in text  # the unjournaled bars are listed, not counted as evidence

    from tandem.backtest.reconcile import reconcile

    report = reconcile(db, fills, history=root / "store")
    assert report.ok and len(report.caveats) == 1
    kinds = report.events.groupby("kind").size().to_dict()
    assert kinds == {"unjournaled": world["missing"]}
    assert (report.events["ts"] < world["t0"]).all()
    # a whole journal: no caveat, no event
    whole = reconcile(root / "done.sqlite", fills, history=root / "store")
    assert whole.ok and whole.caveats == [] and whole.events.empty


async def test_a_resumed_daemon_warns_once_and_shows_it_on_health(world):
    from tandem.daemon.ops.runtime import Ops, OpsConfig

    root = world["root"]
    for name, gap in (("pending", True), ("done", False)):
        db = root / f"resume-{name}.sqlite"
        shutil.copy(root / f"{name}.sqlite", db)
        daemon = make_daemon(world["profile"], db)
        daemon.ops = Ops(OpsConfig(http_enabled=False, notify=False))
        with capture_logs() as logs:
            await run_replay(daemon, world["market"], world["t0"], world["end"],
                             bar_timeout_s=2.0)
        with StateStore(db) as st:  # resumed: a second session on the same state
            assert st.get_meta("run_id") != st.get_meta("first_run_id")
        warned = [e for e in logs if e["event"] == "warmup_journal_incomplete"]
        details = daemon.ops.health.evaluate().details
        if not gap:
            assert warned == [] and "warmup_journal" not in details
            continue
        assert len(warned) == 1 and warned[0]["log_level"] == "warning"
        assert warned[0]["db"] == str(db)
        assert warned[0]["missing_candles"] == world["missing"]
        assert "--data" in warned[0]["hint"]
        assert details["warmup_journal"] == {"status": "incomplete",
                                             "missing_candles": world["missing"],
                                             "warmup_candles": world["n_warm"]}

