"""A hostile user's inputs to ``tandem-backtest run``/``download``: each case here once ended
in exit 0 with numbers that meant something else than the user asked for, or in an unclear
error. Outputs are checked against pandas/numpy computed here, never against the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from tandem.backtest.cli import main

REPO = Path(__file__).resolve().parents[1]


def _rc(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects malformed values itself (exit 2)
        return int(exc.code)


def _one_error(capsys, rc: int, code: int, needle: str) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and needle in lines[0], err
    return lines[0]


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--from", "20210201", "for the date 2021-02-01 write 2021-02-01"),
    ("--to", "20210301", "before 1980"),
    ("--from", "0", "is 1970-01-01T00:00:00Z as epoch ms, before 1980"),
])
def test_small_integers_are_not_read_as_1970_epoch_ms(tmp_path, capsys, option, value, needle):
    """``--from 20210201`` (a compact date) was epoch ms 20,210,201 = 1970-01-01T05:36Z:
    before the data, so the run traded from the first bar with no warm-up and exited 0."""
    rc = _rc(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "o"), option, value])
    _one_error(capsys, rc, 2, needle)
    assert not (tmp_path / "o").exists()


def test_download_since_a_compact_date_is_refused_before_the_exchange(tmp_path, capsys):
    """It downloaded from 1970 (the whole history) into the store."""
    argv = ["download", "--no-progress", "--symbols", "BTC/USDT", "--since", "20240101",
            "--data", str(tmp_path / "d"), "--rest-url", "http://127.0.0.1:9/api/v3",
            "--retries", "0"]
    _one_error(capsys, _rc(argv), 2, "for the date 2024-01-01 write 2024-01-01")
    assert not (tmp_path / "d").exists()
