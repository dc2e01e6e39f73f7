"""Hostile inputs to ``reconcile``, ``fingerprints`` and ``export-fills``: damaged or edited
journals, outputs aimed at inputs. None may end in exit 0 with a wrong verdict, or in a
traceback instead of one ``error:`` line naming the file."""

from __future__ import annotations

import pandas as pd
import pytest
from tandem.backtest.reconcile.cli import main
from tandem.core import journal

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


def _one_error(capsys, rc: int, code: int, needle: str) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and needle in lines[0], err
    return lines[0]


def test_inf_on_one_side_is_never_within_tolerance(bt, fills, tmp_path, capsys):
    """An inf price made the relative bound inf: the fill was 'within tolerance', exit 0,
    and an inf was classed 'rounding' (inf <= 1e-9 * inf)."""
    bad = fills.copy()
    bad.loc[5, "price"] = float("inf")
    paper = _write(bad, tmp_path / "paper.csv")
    assert main(["reconcile", "--paper", paper, "--backtest", str(bt), "--tolerance", "1e-9"]) == 1
    out = capsys.readouterr().out
    assert "mismatched 1" in out and "logic 1" in out and "rounding 0" in out
