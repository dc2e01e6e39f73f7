"""SQLite state: one transaction per slice, resume, profile-hash guard, journal dtypes."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from tandem.daemon.state import JOURNAL_COLUMNS, ClosedCandle, ProfileChangedError, StateStore

PROFILE = {"strategy": "rating_all", "core_assets": ["BTC/USDT"], "initial_cash": 10000.0}


def _fill(ts: int, seq: int = 0) -> dict:
    return {
        "fill_id": f"p:BTC/USDT:{ts}:entry:{seq}", "source": "paper", "run_id": "r1",
        "profile": "p", "symbol": "BTC/USDT", "ts": ts, "side": "buy", "qty": 0.5,
        "price": 100.0, "fee": 0.05, "reason": "entry", "intrabar": "",
        "position_after": 0.5, "cash_after": 49.95,
    }


def test_commit_resume_and_journal(tmp_path):
    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        assert st.bind_profile("p", PROFILE, "r1") is False
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        c = ClosedCandle("BTC/USDT", 0, 1, 2, 0.5, 1.5, 3, origin="rest")
        st.commit_slice(0, [c], [], [_fill(3_600_000)], {"BTC/USDT": 0.5}, warmup=False)
        st.write_checkpoint(0, {"engine": b"\x01\x02"})
        with pytest.raises(ValueError):
            st.commit_slice(0, [], [], [], {}, warmup=False)
    with StateStore(db) as st:
        assert st.bind_profile("p", PROFILE, "r2") is True
        assert st.last_ts == 0
        assert st.load_blobs() == {"engine": b"\x01\x02"} and st.checkpoint_ts == 0
        ((ts, warm, cs),) = st.slices_after(None)
        assert (ts, warm, cs[0].close, cs[0].origin) == (0, False, 1.5, "rest")
        assert st.slices_after(0) == []
        assert st.fills_of_slice(3_600_000)[0]["fill_id"] == "p:BTC/USDT:3600000:entry:0"
        df = st.fills_frame()
        assert list(df.columns) == list(JOURNAL_COLUMNS)
        assert df.dtypes["ts"] == "int64" and df.dtypes["qty"] == "float64"
        assert st.positions() == {"BTC/USDT": 0.5}
        assert st.consumed("BTC/USDT", 0) and not st.consumed("BTC/USDT", 1)


def test_slice_candles_go_in_as_made_over_several_inserts(tmp_path, monkeypatch):
    """commit_slice binds a ClosedCandle's fields as the candles table's columns (same
    order), several multi-row INSERTs per slice when it is larger than one."""
    import tandem.daemon.state as state

    monkeypatch.setattr(state, "CANDLES_PER_INSERT", 3)
    with StateStore(tmp_path / "s.sqlite") as st:
        cols = [r[1] for r in st.conn.execute("PRAGMA table_info(candles)")]
        assert list(ClosedCandle._fields) == cols
        st.bind_profile("p", PROFILE, "r1")
        made = [ClosedCandle(f"S{i}/USDT", 60_000, 1.0 + i / 3, 2.0, 0.5, 1.5, 0.1 * i,
                             origin="ws", received_at=1e9 + i) for i in range(7)]
        st.commit_slice(60_000, made, [], [], {}, warmup=True)
        stored = st.conn.execute("SELECT * FROM candles ORDER BY symbol").fetchall()
        assert [ClosedCandle(*r) for r in stored] == made
        ((_, _, back),) = st.slices_after(None)
        assert sorted(back) == made


def test_profile_hash_change_refuses_unless_fresh(tmp_path):
    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        st.bind_profile("p", PROFILE, "r1")
        st.commit_slice(0, [], ["BTC/USDT"], [], {}, warmup=True)
    changed = {**PROFILE, "initial_cash": 5000.0}
    with StateStore(db) as st, pytest.raises(ProfileChangedError, match="--fresh"):
        st.bind_profile("p", changed, "r2")
    with StateStore(db) as st:
        assert st.bind_profile("p", changed, "r2", fresh=True) is False
        assert st.last_ts is None and st.slice_count() == 0


def test_failed_slice_leaves_nothing(tmp_path):
    """A slice whose write fails midway (duplicate fill id) leaves no partial rows."""
    with StateStore(tmp_path / "s.sqlite") as st:
        st.bind_profile("p", PROFILE, "r1")
        st.commit_slice(0, [], [], [_fill(1)], {}, warmup=False)
        c = ClosedCandle("BTC/USDT", 3_600_000, 1, 2, 0.5, 1.5, 3)
        with pytest.raises(sqlite3.IntegrityError):
            st.commit_slice(3_600_000, [c], [], [_fill(1)], {"BTC/USDT": 1.0}, warmup=False)
        assert st.last_ts == 0
        assert st.slice_count() == 1
        assert not st.consumed("BTC/USDT", 3_600_000)
        assert st.fill_count() == 1 and st.positions() == {}


def test_export_round_trips_through_the_core_journal_readers(tmp_path):
    """The daemon's export is read back by the backtest's journal readers unchanged."""
    from tandem.core.journal import read_csv, read_parquet
    from tandem.daemon.export import export_fills

    with StateStore(tmp_path / "s.sqlite") as st:
        st.bind_profile("p", PROFILE, "r1")
        st.commit_slice(0, [], [], [_fill(3_600_000), {**_fill(3_600_000, 1), "intrabar":
                                                       "pessimistic", "reason": "stop_loss",
                                                       "fill_id": "p:BTC/USDT:3600000:stop_loss:0",
                                                       "side": "sell", "qty": 0.1 + 0.2}],
                        {}, warmup=False)
        csv_path, pq_path = export_fills(st, tmp_path / "out")
        want = st.fills_frame()
    for got in (read_csv(csv_path), read_parquet(pq_path)):
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)


def test_positions_rows_track_the_engine_and_mark_open_ones_as_of_each_slice(tmp_path):
    """Only open or changed positions are rewritten per slice (a speed rule): the table still
    equals the engine's positions after every slice, and every open position's ``ts`` is the
    last slice (what ``/positions`` reports as ``as_of_ts``). Reference: a plain dict."""
    db = tmp_path / "s.sqlite"
    syms = ["A/USDT", "B/USDT", "C/USDT"]
    script = [{"A/USDT": 0.0, "B/USDT": 0.0, "C/USDT": 0.0},
              {"A/USDT": 1.5, "B/USDT": 0.0, "C/USDT": 0.0},
              {"A/USDT": 1.5, "B/USDT": 2.0, "C/USDT": 0.0},
              {"A/USDT": 0.0, "B/USDT": 2.0, "C/USDT": 0.0},
              {"A/USDT": 0.0, "B/USDT": 0.0, "C/USDT": 0.0}]
    with StateStore(db) as st:
        st.bind_profile("p", PROFILE, "r1")
        for k, pos in enumerate(script):
            ts = k * 60_000
            st.commit_slice(ts, [], [], [], pos, warmup=False)
            rows = {s: (q, t) for s, q, t in st.conn.execute("SELECT symbol, qty, ts FROM positions")}
            assert {s: q for s, (q, _) in rows.items()} == pos
            assert all(t == ts for q, t in rows.values() if q != 0.0)
    # A restart reloads what was written: a flat asset is not rewritten, an open one is.
    with StateStore(db) as st:
        st.bind_profile("p", PROFILE, "r2")
        st.commit_slice(5 * 60_000, [], [], [], {**script[-1], "C/USDT": 3.0}, warmup=False)
        assert st.positions() == {"A/USDT": 0.0, "B/USDT": 0.0, "C/USDT": 3.0}
        assert set(syms) == set(st.positions())


def test_fill_ids_are_unique_through_an_index_in_time_order(tmp_path):
    """A duplicate fill id is refused (exactly-once), by an index led by ``ts``: a slice's
    fills land at its end, not on a page per symbol all over a long journal's index."""
    with StateStore(tmp_path / "s.sqlite") as st:
        st.bind_profile("p", PROFILE, "r1")
        (index,) = [r[1] for r in st.conn.execute("PRAGMA index_list(fills)") if r[2]]
        cols = [r[2] for r in st.conn.execute(f"PRAGMA index_info({index})")]
        assert cols == ["ts", "fill_id"]
        st.commit_slice(0, [], [], [_fill(0), _fill(0, seq=1)], {}, warmup=False)
        with pytest.raises(sqlite3.IntegrityError):
            st.commit_slice(60_000, [], [], [_fill(0)], {}, warmup=False)
        assert st.fill_count() == 2 and st.last_ts == 0


def test_wal_is_checkpointed_by_the_daemon_not_inside_a_commit(tmp_path):
    """SQLite's automatic checkpoint is off (it would fsync inside some slice's COMMIT);
    ``checkpoint_wal`` runs it when asked, every ``every`` commits."""
    with StateStore(tmp_path / "s.sqlite") as st:
        st.bind_profile("p", PROFILE, "r1")
        assert st.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for k in range(3):
            c = ClosedCandle("BTC/USDT", k * 60_000, 1, 2, 0.5, 1.5, 3)
            st.commit_slice(k * 60_000, [c], [], [], {}, warmup=True)
            assert st.checkpoint_wal(every=3) is (k == 2)
        # The candles table is keyed (ts, symbol): a candle consumed twice is refused.
        with pytest.raises(sqlite3.IntegrityError):
            st.commit_slice(4 * 60_000, [ClosedCandle("BTC/USDT", 0, 1, 2, 0.5, 1.5, 3)], [], [],
                            {}, warmup=True)
        assert st.last_ts == 2 * 60_000 and st.consumed("BTC/USDT", 60_000)


@pytest.mark.parametrize("tamper", [
    "UPDATE fills SET qty = 'abc'",  # REAL affinity keeps text it cannot convert
    "UPDATE fills SET ts = 1.5",
    # NOT NULL only binds new writes: a table rebuilt without it (a hand-edited file)
    "CREATE TABLE f2 AS SELECT * FROM fills; UPDATE f2 SET fee = NULL; DROP TABLE fills; "
    "ALTER TABLE f2 RENAME TO fills",
])
def test_export_of_a_corrupt_journal_is_one_line_exit_1(tmp_path, capsys, tamper):
    """A journal value that is not a number is named (row, column), not a traceback, and
    nothing is exported."""
    from tandem.daemon.cli import main

    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        st.bind_profile("p", PROFILE, "r1")
        st.commit_slice(0, [], [], [_fill(3_600_000)], {}, warmup=False)
    with sqlite3.connect(db) as conn:
        conn.executescript(tamper)
    out = tmp_path / "out"
    assert main(["export-fills", "--db", str(db), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "journal row seq 1" in err and "not a number" in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(("cmd", "key", "value"), [
    ("status", "last_ts", "abc"), ("status", "t0", "1e400"), ("status", "t0", "9" * 20),
    ("status", "created_at", "abc"),
    ("export-fills", "last_ts", "abc"),  # read when any command opens the database
])
def test_hand_edited_meta_is_one_line_exit_1(tmp_path, capsys, key, value, cmd):
    """A meta time that is not one (a hand-edited or corrupt file): ``status`` and
    ``export-fills`` ended in a ValueError traceback; now one line naming the key."""
    from tandem.daemon.cli import main

    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        st.bind_profile("p", PROFILE, "r1")
        st.commit_slice(0, [], [], [_fill(3_600_000)], {}, warmup=False)
        st.set_meta("t0", 0)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()
    extra = ["--out", str(tmp_path / "out")] if cmd == "export-fills" else []
    assert main([cmd, "--db", str(db), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"meta {key} is {value[:40]!r}" in err, err


def test_a_live_run_and_a_replay_never_continue_each_others_journal(tmp_path):
    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        assert st.bind_profile("p", PROFILE, "r1", kind="replay") is False
        assert st.get_meta("journal_kind") == "replay"
        assert st.bind_profile("p", PROFILE, "r2", kind="replay") is True
        with pytest.raises(ProfileChangedError, match="is a replay journal"):
            st.bind_profile("p", PROFILE, "r3", kind="live")
        assert st.bind_profile("p", PROFILE, "r4", kind="live", fresh=True) is False
        with pytest.raises(ProfileChangedError, match="is a live journal"):
            st.bind_profile("p", PROFILE, "r5", kind="replay")
        st.conn.execute("DELETE FROM meta WHERE key = 'journal_kind'")  # made before the rule
        assert st.bind_profile("p", PROFILE, "r6", kind="replay") is True


def test_sqlites_own_tables_do_not_make_a_state_file_foreign(tmp_path):
    """ANALYZE (or PRAGMA optimize, or an operator's sqlite3 shell) adds sqlite_stat1: the
    file is still ours, and it opens and resumes."""
    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        st.bind_profile("p", PROFILE, "r1")
        st.commit_slice(0, [], [], [_fill(3_600_000)], {}, warmup=False)
    with sqlite3.connect(db) as conn:
        conn.execute("ANALYZE")
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
                            ).fetchone()[0] == 1
    with StateStore(db) as st:
        assert st.bind_profile("p", PROFILE, "r2") is True and st.fill_count() == 1


def test_two_exports_into_one_folder_at_once_both_complete(tmp_path, monkeypatch):
    """The daemon's periodic ``--export-dir`` export and a user's ``export-fills --out`` (or
    two cron exports) into the same folder shared one temporary name: the second truncated
    the first's half-written file and renamed it away, so fills.csv mixed both writes and
    the first export died on a missing file. Here the second export runs between the first
    one's CSV write and its rename (a stand-in for another process)."""
    import tandem.daemon.export as export
    from tandem.core.journal import read_csv

    out = tmp_path / "out"
    with StateStore(tmp_path / "a.sqlite") as a, StateStore(tmp_path / "b.sqlite") as b:
        a.bind_profile("p", PROFILE, "ra")
        a.commit_slice(0, [], [], [_fill(3_600_000), _fill(3_600_000, 1)], {}, warmup=False)
        b.bind_profile("p", PROFILE, "rb")
        b.commit_slice(0, [], [], [_fill(3_600_000)], {}, warmup=False)
        real = export.write_csv
        nested = []

        def write_csv(df, path):  # noqa: ANN001
            real(df, path)
            if not nested:  # the other writer, before this one renamed its file
                nested.append(path)
                export.export_fills(b, out)

        monkeypatch.setattr(export, "write_csv", write_csv)
        export.export_fills(a, out)
        want = a.fills_frame()
    pd.testing.assert_frame_equal(read_csv(out / "fills.csv"), want, check_dtype=False)
    assert sorted(p.name for p in out.iterdir()) == ["fills.csv", "fills.parquet"]
