"""``tandem-daemon`` as a new user drives it from the README and ``.env.example``: settings and
options that were accepted and then ignored, and a replay that hung on a closed log pipe.

Every test runs the real command (``python -m tandem.daemon.cli``) on the small 1m test
profile: the emulator on 127.0.0.1 and the real ccxt.pro client, state in ``tmp_path``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tandem.daemon.state import StateStore

from tests.emulator_fixtures import emulator_in_thread
from tests.test_daemon_support import sample_market, small_profile

REPO = Path(__file__).resolve().parents[1]


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    prof = json.loads(small_profile().model_dump_json())
    path.write_text(json.dumps({"version": 1, "profiles": {"tst": prof}}))
    return path


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without its TANDEM_* settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    return {**env, "PYTHONPATH": str(REPO), "TANDEM_STATE_DB": str(tmp_path / "state.sqlite"),
            "TANDEM_HTTP_ENABLED": "false", **settings}


def _replay(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tandem.daemon.cli", "replay", "--manifest",
            str(_manifest(tmp_path)), "--profile", "tst", "--sample", "--bars", "5", *extra]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt, json_lines", [("console", False), ("json", True), ("auto", True)])
def test_log_format_setting_is_honoured(tmp_path: Path, fmt: str, json_lines: bool) -> None:
    """``.env.example`` documents TANDEM_LOG_FORMAT (json|console), yet the daemon never read
    it: logs were JSON whenever stderr was not a terminal, whatever it said. ``auto`` (the
    default) keeps that choice (README: JSON lines when not on a terminal)."""
    proc = subprocess.run(_replay(tmp_path), capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path, TANDEM_LOG_FORMAT=fmt), timeout=100)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "daemon_stop" in ln]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("{") is json_lines, lines[0]


@pytest.mark.timeout(120)
def test_replay_finishes_when_its_log_reader_goes_away(tmp_path: Path) -> None:
    """``tandem-daemon replay ... 2>&1 | head`` hung forever: once ``head`` exited, a log line
    raised BrokenPipeError inside the daemon's tasks and the replay waited for a slice that
    never came. Log lines past a closed stderr are dropped; the replay ends and says so."""
    proc = subprocess.Popen(_replay(tmp_path, "--log-format", "json"), cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stderr.readline()  # the first log line, then the reader is gone (like head -1)
    proc.stderr.close()
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("replay hung after its stderr reader exited")
    assert proc.returncode == 0
    assert "replay of tst" in out and "fingerprint run=" in out


@pytest.mark.timeout(120)
def test_replay_summary_tells_warmup_slices_from_tradable_ones(tmp_path: Path) -> None:
    """``replay --sample --bars 200`` printed "6224 slices": the journal's slice count,
    warm-up included, read as 6,224 replayed bars. The 100 warm-up bars of the test
    profile and the 5 tradable ones are now told apart."""
    proc = subprocess.run(_replay(tmp_path), capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path), timeout=100)
    assert proc.returncode == 0, proc.stderr
    assert "replay of tst: 105 slices (100 warm-up, 5 tradable)," in proc.stdout, proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:  # 503 while warming up: the server answered
        return exc.code
    except OSError:
        return None


@pytest.mark.timeout(180)
def test_run_http_flag_serves_even_when_the_setting_is_off(tmp_path: Path) -> None:
    """``run --http`` ("serve /health, /metrics, ...") was read nowhere: with
    TANDEM_HTTP_ENABLED=false in the environment or .env the flag was accepted and nothing
    listened. The explicit flag wins over the setting, as ``replay --http`` already did."""
    port = _free_port()
    env = _env(tmp_path, TANDEM_HTTP_PORT=str(port))
    with emulator_in_thread(sample_market()) as emu:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tandem.daemon.cli", "run", "--manifest",
             str(_manifest(tmp_path)), "--profile", "tst", "--rest-url", emu.base_url,
             "--ws-url", emu.ws_url, "--http"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            status, deadline = None, time.monotonic() + 60
            while status is None and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.3)
                status = _health_status(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert status in (200, 503), f"nothing served /health on {port}: {err[-2000:]}"
    assert proc.returncode == 0, err[-2000:]


def test_grace_at_or_above_the_slice_lag_threshold_is_refused(tmp_path: Path) -> None:
    """TANDEM_GRACE_PERIOD_S >= TANDEM_HEALTH_SLICE_LAG_S is refused by the settings (a slice
    legitimately waits the grace); ``run --grace 100`` went around it and the daemon reported
    every slice held for a late asset as "lagging" on /health. Exit 2 before anything starts."""
    cmd = [sys.executable, "-m", "tandem.daemon.cli", "run", "--manifest", str(_manifest(tmp_path)),
           "--profile", "tst", "--grace", "100"]
    dead = {"TANDEM_EXCHANGE_REST_URL": "http://127.0.0.1:9/api/v3",  # loopback, nothing there
            "TANDEM_EXCHANGE_WS_URL": "ws://127.0.0.1:9/ws"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path, **dead), timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --grace 100 ") \
        and "TANDEM_HEALTH_SLICE_LAG_S (60 s)" in lines[0], proc.stderr
    assert not (tmp_path / "state.sqlite").exists()
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60,
                        env=_env(tmp_path, TANDEM_HEALTH_SLICE_LAG_S="120",
                                 TANDEM_EXCHANGE_REST_URL="http://127.0.0.1:9/api/v3"))
    # the threshold raised: past the check, to the next one (a REST URL without its websocket)
    assert ok.returncode == 2 and "--grace" not in ok.stderr, ok.stderr
    assert "TANDEM_EXCHANGE_WS_URL" in ok.stderr, ok.stderr


@pytest.mark.timeout(240)
def test_replay_reads_an_unaligned_range_as_the_backtest_does(tmp_path: Path) -> None:
    """``--from``/``--to`` between two bar opens: the backtest trades from the first bar at or
    after --from and up to the last bar opening before --to; the replay rounded both DOWN,
    traded one bar more at the start and one less at the end, and its fingerprint differed
    from the backtest's (README: replay == backtest bit for bit)."""
    from tandem.backtest.demo_data import generate_candles, write_csv_folder

    profile = small_profile()
    write_csv_folder(generate_candles(profile.assets, start="2024-01-01", n_bars=400,
                                      timeframe="1m", seed=5), tmp_path / "csv",
                     exchange="binance", timeframe="1m")
    rng = ["--from", "2024-01-01T02:00:30", "--to", "2024-01-01T04:30:30"]
    common = ["--manifest", str(_manifest(tmp_path)), "--profile", "tst",
              "--data", str(tmp_path / "csv"), *rng]

    def fingerprint(module: str, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", module, *args, *common], capture_output=True,
                              text=True, cwd=tmp_path, env=_env(tmp_path), timeout=200)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return next(ln.split()[1] for ln in proc.stdout.splitlines()
                    if ln.strip().startswith("fingerprint run="))

    backtest = fingerprint("tandem.backtest.cli", "run", "--out", str(tmp_path / "bt"),
                           "--no-report")
    assert fingerprint("tandem.daemon.cli", "replay", "--db", str(tmp_path / "r.sqlite")) == backtest
    stats = json.loads((tmp_path / "bt" / "stats.json").read_text())
    with StateStore(tmp_path / "r.sqlite") as store:  # the same bars, not only the same fills
        status = store.status()
        assert status["t0"] == stats["first_tradable_bar"].replace("+00:00", "Z") \
            == "2024-01-01T02:01:00Z"
        assert store.slice_count(warmup=False) == stats["n_bars"] == 150  # 02:01 .. 04:30


@pytest.mark.parametrize("args, code, needle", [
    (["--generate", "10", "--start", "xx"], 2, "--start 'xx'"),  # was a pandas traceback
    (["--generate", "10", "--port", "99999"], 2, "--port"),  # was bind()'s OverflowError
    (["--generate", "0"], 2, "--generate"),  # was a numpy concatenation message
    (["--data", "does-not-exist"], 1, "does-not-exist"),  # data, not usage (was 2)
    (["--generate", "10", "--speed", "-5"], 2, "--speed"),  # froze the clock, silently
    (["--generate", "10", "--speed", "nan"], 2, "--speed"),
    (["--generate", "10", "--updates-per-bar", "-1"], 2, "--updates-per-bar"),  # taken as 0
])
def test_emulator_bad_input_is_one_line(tmp_path: Path, args, code: int, needle: str) -> None:
    """``python -m tandem.daemon.emulator`` (README: serve stored or generated candles):
    one ``error:`` line, exit 2 for usage and 1 for data, before anything listens."""
    proc = subprocess.run([sys.executable, "-m", "tandem.daemon.emulator", "--symbols",
                           "BTC/USDT", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path), timeout=30)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and proc.stdout == "", proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("every", ["300", "0"])
def test_export_dir_holds_every_fill_once_the_daemon_stops(tmp_path: Path, every: str) -> None:
    """``--export-dir out/ --export-every 300`` exported on the timer only: a daemon stopped
    (SIGTERM, or a replay that ended) left an export up to 300 s behind its journal — here
    none at all — and with ``--export-every 0`` --export-dir was ignored. The export is
    written once more at the stop (0: only then)."""
    proc = subprocess.run(_replay(tmp_path, "--db", str(tmp_path / "r.sqlite"), "--export-dir",
                                  str(tmp_path / "out"), "--export-every", every),
                          capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path),
                          timeout=100)
    assert proc.returncode == 0, proc.stderr
    with StateStore(tmp_path / "r.sqlite") as store:
        n = store.fill_count()
    assert n > 0
    with (tmp_path / "out" / "fills.csv").open() as fh:
        assert sum(1 for _ in fh) == n + 1  # the header and every fill of the journal


@pytest.mark.parametrize("option", [["--bars", "100"], ["--seed", "3"]])
def test_sample_options_with_data_are_refused(tmp_path: Path, option: list[str]) -> None:
    """``replay --data … --bars 100`` replayed the whole file (--bars and --seed shape the
    generated sample only): exit 2, one line, before any state is written."""
    (tmp_path / "csv").mkdir()
    proc = subprocess.run([sys.executable, "-m", "tandem.daemon.cli", "replay", "--manifest",
                           str(_manifest(tmp_path)), "--profile", "tst", "--data",
                           str(tmp_path / "csv"), "--db", str(tmp_path / "r.sqlite"), *option],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path),
                          timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--sample only" in lines[0], proc.stderr
    assert not (tmp_path / "r.sqlite").exists()
