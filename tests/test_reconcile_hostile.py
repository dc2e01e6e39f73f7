"""Hostile inputs to ``reconcile``, ``fingerprints`` and ``export-fills``: damaged or edited
journals, outputs aimed at inputs. None may end in exit 0 with a wrong verdict, or in a
traceback instead of one ``error:`` line naming the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tandem.backtest.reconcile.cli import main
from tandem.core import journal

from tests.test_hostile_backtest import _one_error
from tests.test_reconcile import make_candles, write_backtest


@pytest.fixture(scope="module")
def bt(tmp_path_factory):
    """A backtest's fills.csv (+ run.json) over the random-walk candles of test_reconcile."""
    return write_backtest(tmp_path_factory.mktemp("hostile"), make_candles())


@pytest.fixture
def fills(bt) -> pd.DataFrame:
    return journal.read_csv(bt)


def _write(df: pd.DataFrame, path):
    journal.write_csv(df, path)
    return str(path)


def test_inf_on_one_side_is_never_within_tolerance(bt, fills, tmp_path, capsys):
    """An inf price made the relative bound inf: the fill was 'within tolerance', exit 0,
    and an inf was classed 'rounding' (inf <= 1e-9 * inf)."""
    bad = fills.copy()
    bad.loc[5, "price"] = float("inf")
    paper = _write(bad, tmp_path / "paper.csv")
    assert main(["reconcile", "--paper", paper, "--backtest", str(bt), "--tolerance", "1e-9"]) == 1
    out = capsys.readouterr().out
    assert "mismatched 1" in out and "logic 1" in out and "rounding 0" in out


@pytest.mark.parametrize("order", ["reversed", "shuffled", "row_appended"])
def test_fills_out_of_time_order_are_refused(bt, fills, tmp_path, capsys, order):
    """Reversed, the identical fills drifted (max |equity| in the thousands: exit 1 under
    --equity-tolerance); shuffled or a row appended, 'index must be monotonic' without a file."""
    bad = {"reversed": fills.iloc[::-1], "shuffled": fills.sample(frac=1.0, random_state=3),
           "row_appended": pd.concat([fills, fills.iloc[[10]]])}[order]
    paper = _write(bad, tmp_path / "paper.csv")
    rc = main(["reconcile", "--paper", paper, "--backtest", str(bt), "--equity-tolerance", "1"])
    line = _one_error(capsys, rc, 2, paper)
    assert "earlier than the row before it" in line


def test_several_files_of_one_profile_are_taken_oldest_first(bt, fills, tmp_path, capsys):
    half = len(fills) // 2
    a = _write(fills.iloc[:half], tmp_path / "a.csv")
    b = _write(fills.iloc[half:], tmp_path / "b.csv")
    assert main(["reconcile", "--paper", a, "--paper", b, "--backtest", str(bt)]) == 0
    capsys.readouterr()
    rc = main(["reconcile", "--paper", b, "--paper", a, "--backtest", str(bt)])
    _one_error(capsys, rc, 2, "give each journal once, oldest first")
    rc = main(["reconcile", "--paper", a, "--paper", a, "--backtest", str(bt)])
    _one_error(capsys, rc, 2, "the same fills twice?")


@pytest.mark.parametrize(("scale", "unit"), [(0.001, "s"), (1000, "µs"), (1_000_000, "ns")])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ts_in_another_unit_is_refused(bt, fills, tmp_path, capsys, scale, unit, fmt):
    """In seconds every fill was 'missing' on both sides and blamed on logic (exit 1 with
    a wrong explanation); in µs or ns reconcile ended in a pandas traceback."""
    bad = fills.assign(ts=(fills["ts"] * scale).astype("int64"))
    path = tmp_path / f"paper.{fmt}"
    (journal.write_csv if fmt == "csv" else journal.write_parquet)(bad, path)
    rc = main(["reconcile", "--paper", str(path), "--backtest", str(bt)])
    _one_error(capsys, rc, 2, f"{path}: fill row 1: ts {bad['ts'].iat[0]} is an epoch in {unit}")
    _one_error(capsys, main(["fingerprints", str(path)]), 2, f"is an epoch in {unit}")


@pytest.mark.parametrize("qty", [-1.5, 0.0])
def test_qty_not_positive_is_refused(bt, fills, tmp_path, capsys, qty):
    """Was a ZeroDivisionError traceback from the trade split."""
    bad = fills.copy()
    bad.loc[5, "qty"] = qty
    paper = _write(bad, tmp_path / "paper.csv")
    rc = main(["reconcile", "--paper", paper, "--backtest", str(bt)])
    _one_error(capsys, rc, 2, f"{paper}: fill row 6: qty {qty} is not > 0")


def test_corrupt_sqlite_is_one_line(bt, tmp_path, capsys):
    """A truncated daemon db (SQLite header, broken body) was a sqlite3 traceback."""
    import sqlite3

    db = tmp_path / "state.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE fills (x)")
        conn.executemany("INSERT INTO fills VALUES (?)", [("x" * 500,)] * 200)
    conn.close()
    db.write_bytes(db.read_bytes()[:3000])
    for argv in (["reconcile", "--paper", str(db), "--backtest", str(bt)], ["fingerprints", str(db)]):
        _one_error(capsys, main(argv), 2, f"{db}: not a readable SQLite database")


@pytest.mark.parametrize("column", ["fee", "intrabar"])
def test_parquet_without_a_column_is_refused(bt, fills, tmp_path, capsys, column):
    """Read with the schema, the missing column came back as nulls: NaN fees made every fill
    a 'logic' mismatch (exit 1, wrong cause); the fingerprint hashed the NaNs."""
    path = tmp_path / "paper.parquet"
    fills.drop(columns=[column]).to_parquet(path, index=False)
    rc = main(["reconcile", "--paper", str(path), "--backtest", str(bt)])
    _one_error(capsys, rc, 2, f"{path}: not a fills journal (fills lack columns ['{column}'])")
    _one_error(capsys, main(["fingerprints", str(path)]), 2, f"lack columns ['{column}']")


@pytest.mark.parametrize("option", ["--markdown", "--html", "--out"])
def test_report_onto_an_input_is_refused(fills, tmp_path, capsys, option):
    """``--markdown run/fills.csv`` replaced the backtest's journal with the report (exit 0);
    ``--out DIR`` likewise an input named DIR/reconcile.md."""
    run = tmp_path / "run"
    run.mkdir()
    bt = _write(fills, run / "fills.csv")
    paper = _write(fills, tmp_path / ("reconcile.md" if option == "--out" else "p.csv"))
    target = str(tmp_path) if option == "--out" else bt
    before = [Path(p).read_bytes() for p in (bt, paper)]
    rc = main(["reconcile", "--paper", paper, "--backtest", str(run), option, target])
    _one_error(capsys, rc, 2, f"{option} would overwrite")
    assert [Path(p).read_bytes() for p in (bt, paper)] == before


def test_export_fills_onto_its_own_database_is_refused(tmp_path, capsys):
    """A state db named fills.parquet in the --out folder was replaced by its own export."""
    from tandem.daemon.cli import main as daemon_main
    from tandem.daemon.state import StateStore

    db = tmp_path / "fills.parquet"
    StateStore(db).close()
    before = db.read_bytes()
    rc = daemon_main(["export-fills", "--db", str(db), "--out", str(tmp_path)])
    _one_error(capsys, rc, 2, f"the export would overwrite the state database {db}")
    assert db.read_bytes() == before and not (tmp_path / "fills.csv").exists()


@pytest.mark.parametrize("history", ["nowhere", "fills.csv"])
def test_history_that_is_no_candle_source_is_one_line(bt, tmp_path, capsys, history):
    """A --history that does not exist or is a fills file was a CandleStoreError traceback."""
    path = bt.parent / history
    rc = main(["reconcile", "--paper", str(bt), "--backtest", str(bt), "--history", str(path)])
    _one_error(capsys, rc, 2, str(path))


def test_run_folder_whose_fills_twins_differ_is_refused(bt, fills, tmp_path, capsys):
    """A run folder was read through its fills.parquet alone: an edited fills.csv next to it
    was ignored and the verdict 'identical' (exit 0) was about the other file."""
    run = tmp_path / "run"
    run.mkdir()
    journal.write_parquet(fills, run / "fills.parquet")
    edited = fills.copy()
    edited.loc[7, "price"] *= 1.1
    _write(edited, run / "fills.csv")
    rc = main(["reconcile", "--paper", str(bt), "--backtest", str(run)])
    _one_error(capsys, rc, 2, f"{run}: its fills.parquet and fills.csv differ")
    _write(fills, run / "fills.csv")  # twins that agree: the folder reads as before
    assert main(["reconcile", "--paper", str(bt), "--backtest", str(run)]) == 0


def test_swapped_paper_and_backtest_are_refused(bt, fills, tmp_path, capsys):
    """Swapped, a daemon's candles were no evidence and every data difference read 'logic'."""
    paper = _write(fills.assign(source="paper"), tmp_path / "paper.csv")
    rc = main(["reconcile", "--paper", str(bt), "--backtest", paper])
    _one_error(capsys, rc, 2, "the two look swapped")
    # the right way round, or one journal on both sides: compared as before
    assert main(["reconcile", "--paper", paper, "--backtest", str(bt)]) == 0
    assert main(["reconcile", "--paper", str(bt), "--backtest", str(bt)]) == 0


def test_huge_tolerance_accepts_without_a_warning(bt, fills, tmp_path, capsys):
    """rel * max(|a|, |b|) overflowed: a RuntimeWarning on stderr under the verdict."""
    import warnings

    rounded = fills.assign(qty=fills["qty"].round(6))
    paper = _write(rounded, tmp_path / "paper.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["reconcile", "--paper", paper, "--backtest", str(bt), "--tolerance", "1e308"]) == 0
    assert "within tolerance" in capsys.readouterr().out


def test_a_line_of_empty_fields_names_its_row(bt, tmp_path, capsys):
    """A trailing ',,,' line: 'Cannot convert non-finite values (NA or inf) to integer'."""
    paper = tmp_path / "paper.csv"
    text = bt.read_text()
    paper.write_text(text + "," * 13 + "\n")
    rc = main(["reconcile", "--paper", str(paper), "--backtest", str(bt)])
    rows = text.count("\n")  # header + fills: the empty line is fill row <rows>
    _one_error(capsys, rc, 2, f"{paper}: not a fills journal (fill row {rows}: ts is empty)")


def test_export_fills_onto_a_backtest_run_is_refused(fills, tmp_path, capsys):
    """Exported into a backtest's run folder, the paper fills replaced the backtest's: a
    later ``reconcile --backtest <folder>`` compared the paper journal with itself (exit 0)."""
    from tandem.daemon.cli import main as daemon_main
    from tandem.daemon.state import StateStore

    db = tmp_path / "state.sqlite"
    StateStore(db).close()
    run = tmp_path / "run"
    run.mkdir()
    bt = _write(fills, run / "fills.csv")
    before = Path(bt).read_bytes()
    rc = daemon_main(["export-fills", "--db", str(db), "--out", str(run)])
    _one_error(capsys, rc, 2, f"{bt} holds a backtest's fills")
    assert Path(bt).read_bytes() == before
    # its own earlier export (source paper) is replaced as before
    (tmp_path / "exp").mkdir()
    _write(fills.assign(source="paper"), tmp_path / "exp" / "fills.csv")
    assert daemon_main(["export-fills", "--db", str(db), "--out", str(tmp_path / "exp")]) == 0


@pytest.mark.parametrize("argv", [["replay", "--sample", "--bars", "5", "--out", "{run}"],
                                  ["run", "--export-dir", "{run}"]])
def test_daemon_exports_onto_a_backtest_run_are_refused(argv, fills, tmp_path, capsys,
                                                        monkeypatch):
    """The daemon's own exports (replay ``--out``, run ``--export-dir``) follow the same
    rule as export-fills: refused before anything runs, the backtest's fills untouched."""
    from tandem.daemon.cli import main as daemon_main

    monkeypatch.chdir(tmp_path)  # the default state database goes under here, if anywhere
    run = tmp_path / "run"
    run.mkdir()
    bt = _write(fills, run / "fills.csv")
    before = Path(bt).read_bytes()
    rc = daemon_main([a.format(run=run) for a in argv] + ["--db", str(tmp_path / "s.sqlite")])
    _one_error(capsys, rc, 2, f"{bt} holds a backtest's fills")
    assert Path(bt).read_bytes() == before
    assert not (tmp_path / "s.sqlite").exists()
