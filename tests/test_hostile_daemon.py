"""Hostile-user regressions for ``tandem-daemon`` (issue 16, items 9, 11, 12, 13): every bad
option, data error, state database or exchange problem ends in ONE ``error:`` line on stderr
(exit 2 for configuration/usage, 1 for data/runtime), never a traceback or a hang."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tandem.backtest.demo_data import generate_candles, write_csv_folder
from tandem.daemon.state import StateStore

from tests.emulator_fixtures import emulator_in_thread
from tests.test_daemon_support import sample_market, small_profile

REPO = Path(__file__).resolve().parents[1]
HOUR = 3_600_000


def _daemon(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m tandem.daemon.cli ARGS`` from ``cwd`` with the repository importable; the state
    database defaults into ``cwd`` so a test never touches the user's files."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TANDEM_STATE_DB": str(cwd / "state.sqlite"),
           "TANDEM_HTTP_ENABLED": "false"}
    return subprocess.run([sys.executable, "-m", "tandem.daemon.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess, code: int, needle: str) -> str:
    err = proc.stderr
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err  # JSON log lines aside
    assert needle in lines[0], err
    return lines[0]


def _manifest(tmp_path: Path, **over) -> Path:
    """A manifest with the small 1m test profile ``tst`` (its fields overridden by ``over``)."""
    prof = json.loads(small_profile().model_dump_json())
    prof.update(over)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "profiles": {"tst": prof}}))
    return path


# ------------------------------------------------------------- item 9: options that hung


@pytest.mark.parametrize(("args", "needle"), [
    (["--speed", "0"], "--speed: must be > 0"),
    (["--speed", "-5"], "--speed: must be > 0"),
    (["--speed", "nan"], "--speed: must be a finite number"),
    (["--warmup-bars", "-100", "--to", "2024-01-01"], "--warmup-bars: must be >= 0"),
    (["--bars", "0"], "--bars: must be >= 1"),
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--grace", "-1"], "--grace: must be >= 0"),
    (["--watchdog", "inf"], "--watchdog: must be a finite number"),
    (["--heartbeat-every", "0"], "--heartbeat-every: must be >= 1"),
    # periods so short the jobs starved the event loop: a 20-bar replay never finished
    (["--heartbeat-every", "1e-6"], "--heartbeat-every: must be >= 1"),
    (["--export-every", "1e-6"], "--export-every: must be 0 (off) or >= 1 s"),
    (["--from", "notadate"], "--from: not a date"),
    (["--to", "2021-13-45"], "--to: not a date"),
    (["--from", "3000-01-01"], "--from: '3000-01-01' is outside 1970-01-01 .. 2262-04-11"),
    (["--to", "99999999999999999999"], "is outside 1970-01-01"),
    # epoch seconds read as ms were 1970: the replay ran from the data's start, exit 0
    (["--from", "1612137600"], "--from: 1612137600 is an epoch in s (2021-02-01T00:00:00Z), not ms"),
    (["--log-level", "loud"], "--log-level: not a log level: 'loud'"),
])
@pytest.mark.timeout(60)  # before the fix several of these never returned
def test_bad_replay_option_is_one_line_exit_2(tmp_path, monkeypatch, capsys, args, needle):
    """In-process (fast): the parser refuses them; before, each of these hung or crashed."""
    import tandem.daemon.cli as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_STATE_DB", str(tmp_path / "state.sqlite"))
    try:
        code = cli.main(["replay", *args])
    except SystemExit as exc:
        code = exc.code
    proc = subprocess.CompletedProcess([], code, "", capsys.readouterr().err)
    _one_error_line(proc, 2, needle)


@pytest.mark.parametrize(("args", "needle"), [
    (["--rest-url", "notaurl"], "--rest-url: REST URL must be a http:// or https:// URL"),
    (["--rest-url", "http://127.0.0.1:99999"], "--rest-url: REST URL has no valid port"),
    (["--ws-url", "http://127.0.0.1:9/ws"], "--ws-url: websocket URL must be a ws://"),
])
def test_bad_endpoint_override_is_one_line_exit_2(tmp_path, monkeypatch, capsys, args, needle):
    """``run --rest-url/--ws-url`` skipped the checks of their TANDEM_EXCHANGE_* variables:
    ``--rest-url notaurl`` retried load_markets forever, a bad port ended as exit 1."""
    import tandem.daemon.cli as cli

    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(["run", "--db", str(tmp_path / "s.sqlite"), *args])
    except SystemExit as exc:
        code = exc.code
    _one_error_line(subprocess.CompletedProcess([], code, "", capsys.readouterr().err), 2,
                    needle)
    assert not (tmp_path / "s.sqlite").exists()


def test_bad_option_through_the_real_entry_point(tmp_path):
    """The same through ``python -m tandem.daemon.cli``: one line on stderr, exit 2, promptly."""
    _one_error_line(_daemon("replay", "--speed", "0", cwd=tmp_path, timeout=30), 2,
                    "--speed: must be > 0")


# ------------------------------------------------------------- item 11: warm-up bound


@pytest.mark.parametrize("where", ["manifest", "option"])
def test_absurd_warmup_is_a_config_error(tmp_path, where):
    """warmup_bars = 10**15 (1.9 billion years of 1m bars): the daemon ran it silently."""
    if where == "manifest":
        args = ["--manifest", str(_manifest(tmp_path, warmup_bars=10**15))]
    else:
        args = ["--manifest", str(_manifest(tmp_path)), "--warmup-bars", str(10**15)]
    proc = _daemon("replay", *args, "--profile", "tst", cwd=tmp_path, timeout=30)
    _one_error_line(proc, 2, "warmup_bars")
    assert "more than 20 years" in proc.stderr


# ------------------------------------------------------------- item 11: replay data errors


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    """1m CSVs for BTC and ETH only (the profile also trades SOL/USDT)."""
    folder = tmp_path_factory.mktemp("csv")
    write_csv_folder(generate_candles(["BTC/USDT", "ETH/USDT"], start="2024-01-01",
                                      n_bars=600, timeframe="1m", seed=5), folder,
                     timeframe="1m")
    return folder


def test_replay_data_errors_are_one_line_exit_1(tmp_path, csv_dir):
    m = str(_manifest(tmp_path))
    # SymbolNotFoundError: the folder has no SOL/USDT
    _one_error_line(_daemon("replay", "--manifest", m, "--profile", "tst", "--data",
                            str(csv_dir), cwd=tmp_path), 1, "SOL/USDT")
    # CandleStoreError: a path that does not exist, a corrupt store file
    _one_error_line(_daemon("replay", "--manifest", m, "--profile", "tst", "--data",
                            str(tmp_path / "nowhere"), cwd=tmp_path), 1, "does not exist")
    store = tmp_path / "store" / "binance" / "BTC-USDT"
    store.mkdir(parents=True)
    (store / "1m.parquet").write_bytes(b"PAR1 this is not parquet")
    _one_error_line(_daemon("replay", "--manifest", m, "--profile", "tst", "--data",
                            str(tmp_path / "store"), cwd=tmp_path), 1, "BTC")


def test_replay_range_messages_say_what_is_wrong(tmp_path, csv_dir):
    """``--to`` before ``--from`` used to say '--from is at or after the end of the data'."""
    m = _manifest(tmp_path, universe=["BTC/USDT", "ETH/USDT"])
    base = ["replay", "--manifest", str(m), "--profile", "tst", "--data", str(csv_dir)]
    _one_error_line(_daemon(*base, "--from", "2024-01-01T05:00", "--to", "2024-01-01T03:00",
                            cwd=tmp_path), 2, "--to (2024-01-01T03:00:00+00:00) must be after --from")
    line = _one_error_line(_daemon(*base, "--from", "2024-02-01", cwd=tmp_path), 1,
                           "--from 2024-02-01T00:00:00+00:00 is at or after the end of the data")
    assert "2024-01-01T10:00:00+00:00" in line  # where the data ends (600 1m bars)
    # --from inside the warm-up: trades with cold indicators; the summary now says so
    proc = _daemon(*base, "--from", "2024-01-01T00:30", "--to", "2024-01-01T01:00",
                   "--db", "w.sqlite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("warm-up short: 30 of the profile's 100 bars before the first tradable bar "
            "2024-01-01T00:30:00+00:00 (the data starts at 2024-01-01T00:00:00+00:00)"
            in proc.stdout), proc.stdout
    proc = _daemon(*base, "--from", "2024-01-01T02:00", "--to", "2024-01-01T02:30",
                   "--db", "f.sqlite", cwd=tmp_path)
    assert proc.returncode == 0 and "warm-up short" not in proc.stdout, proc.stdout
    # no --from: the first tradable bar is the first bar + 100 warm-up bars (01:40)
    _one_error_line(_daemon(*base, "--to", "2024-01-01T01:00", cwd=tmp_path), 1,
                    "--to 2024-01-01T01:00:00+00:00 is at or before the first tradable bar "
                    "2024-01-01T01:40:00+00:00")


# ------------------------------------------------------------- item 11: state databases


@pytest.mark.parametrize("cmd", [["status"], ["export-fills", "--out", "exp"],
                                 ["replay", "--sample"]])
def test_state_db_problems_are_one_line(tmp_path, cmd):
    """Policy: a path that cannot hold the database is configuration (exit 2); a file that
    is there but is not SQLite is a corrupt database (exit 1)."""
    (tmp_path / "folder.sqlite").mkdir()
    (tmp_path / "text.sqlite").write_text("not a database, just some text " * 20)
    (tmp_path / "plainfile").write_text("x")
    _one_error_line(_daemon(*cmd, "--db", "folder.sqlite", cwd=tmp_path), 2, "is a folder")
    _one_error_line(_daemon(*cmd, "--db", "text.sqlite", cwd=tmp_path), 1,
                    "not a usable Tandem/SQLite database")
    if cmd[0] == "replay":  # status/export need an existing database: "no state database"
        _one_error_line(_daemon(*cmd, "--db", "plainfile/sub/x.sqlite", cwd=tmp_path), 2,
                        "plainfile is a file")


@pytest.mark.parametrize("cmd", [["status"], ["export-fills", "--out", "exp"],
                                 ["replay", "--sample", "--bars", "5"]])
def test_another_programs_sqlite_file_is_refused_untouched(tmp_path, cmd):
    """A --db that is some other program's SQLite database: ``status`` printed an empty
    summary (exit 0) after adding our seven tables to it and switching it to WAL for good;
    ``replay`` wrote its journal into it. Refused now, the file left as it was."""
    import sqlite3

    db = tmp_path / "places.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE bookmarks (url TEXT)")
        conn.execute("INSERT INTO bookmarks VALUES ('https://example.org')")
    conn.close()
    before = db.read_bytes()
    _one_error_line(_daemon(*cmd, "--db", "places.sqlite", cwd=tmp_path), 1,
                    "holds another program's tables: 'bookmarks'")
    assert db.read_bytes() == before and not (tmp_path / "places.sqlite-wal").exists()
    assert not (tmp_path / "exp").exists()


def test_out_that_is_a_file_fails_before_any_work(tmp_path):
    db = tmp_path / "s.sqlite"
    StateStore(db).close()
    (tmp_path / "taken").write_text("x")
    _one_error_line(_daemon("export-fills", "--db", str(db), "--out", "taken", cwd=tmp_path),
                    2, "--out taken is a file")
    # replay: refused before the market is generated or anything is compiled
    proc = _daemon("replay", "--sample", "--out", "taken/sub", cwd=tmp_path, timeout=30)
    _one_error_line(proc, 2, "is a file, so no folder can be created under it")
    assert not (tmp_path / "state.sqlite").exists() and not list(tmp_path.glob("replay-*"))


def test_export_write_failure_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    """The --out folder passes its check but a write in it fails (here: the Parquet write
    finds the disk full): a traceback before; now one line, exit 1, and no half-written
    temp file left behind. (In-process: each export's temporary names are its own, so no
    file put in the way can stand for the failure any more.)"""
    import tandem.daemon.export as export
    from tandem.daemon.cli import main

    def disk_full(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(28, "No space left on device")

    db = tmp_path / "s.sqlite"
    StateStore(db).close()
    out = tmp_path / "exp"
    monkeypatch.setattr(export, "write_parquet", disk_full)
    assert main(["export-fills", "--db", str(db), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: cannot write the export: No space left"), err
    assert err.count("\n") == 1
    assert list(out.iterdir()) == []  # neither temp file stays


# ------------------------------------------------------------- item 12: exchange


async def test_bare_rest_url_reaches_the_api_base(emulator):
    """``--rest-url http://host:port`` (no ``/api/v3``): the daemon's client must request
    ``/api/v3/exchangeInfo`` like the downloader does; it used to ask ``/exchangeInfo``."""
    from tandem.daemon.client import build_exchange

    bare = emulator.base_url
    assert not bare.endswith("/api/v3")
    for url in (bare, bare + "/", emulator.rest_url, emulator.rest_url + "/"):
        ex = build_exchange("binance", url, emulator.ws_url, timeout_ms=3000)
        try:
            assert ex.urls["api"]["public"] == emulator.rest_url
            markets = await ex.load_markets()
        finally:
            await ex.close()
        assert "BTC/USDT" in markets


class _NoStepper:
    """The strategy is not under test here: the daemon must stop before it steps anything."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def step(self, sl, *, trade):  # pragma: no cover - must never be reached
        raise AssertionError("stepped a slice although a symbol is unknown")

    def blobs(self):
        return {}

    def restore(self, blobs):
        pass

    def positions(self):
        return {}


@pytest.mark.timeout(90)
def test_unknown_symbol_is_exit_2_naming_it(tmp_path, monkeypatch, capsys):
    """A profile symbol the exchange does not list: configuration (exit 2, the symbol
    named), not a traceback with exit 1 that systemd restarts forever. Also drives the CLI
    with a bare ``--rest-url`` (no ``/api/v3``), which crashed before."""
    import tandem.daemon.cli as cli
    import tandem.daemon.strategy

    monkeypatch.setattr(tandem.daemon.strategy, "stepper_factory", lambda profile: _NoStepper)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_HTTP_ENABLED", "false")
    manifest = _manifest(tmp_path)  # trades BTC, ETH and SOL
    with emulator_in_thread(sample_market(symbols=("BTC/USDT", "ETH/USDT"))) as emu:
        code = cli.main(["run", "--manifest", str(manifest), "--profile", "tst",
                         "--db", str(tmp_path / "s.sqlite"), "--rest-url", emu.base_url,
                         "--ws-url", emu.ws_url, "--log-format", "json"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and "SOL/USDT" in lines[0] and "'tst'" in lines[0], err


@pytest.mark.timeout(120)
def test_unknown_symbol_is_refused_before_the_core_loads(tmp_path):
    """The markets check comes before the kernels: on an empty numba cache the error line
    arrives with numba not even imported and nothing compiled or cached. Before, a typo in
    the profile's assets cost the whole cold compile (20-60 s) before its one-line error."""
    cache = tmp_path / "numba-cold"
    cache.mkdir()
    manifest = _manifest(tmp_path)  # trades BTC, ETH and SOL
    probe = ("import sys\n"
             "from tandem.daemon import cli\n"
             "code = cli.main(sys.argv[1:])\n"
             "print('numba imported' if 'numba' in sys.modules else 'numba not imported')\n"
             "sys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=str(cache), TANDEM_HTTP_ENABLED="false")
    with emulator_in_thread(sample_market(symbols=("BTC/USDT", "ETH/USDT"))) as emu:
        proc = subprocess.run(
            [sys.executable, "-c", probe, "run", "--manifest", str(manifest), "--profile",
             "tst", "--db", str(tmp_path / "s.sqlite"), "--rest-url", emu.base_url,
             "--ws-url", emu.ws_url, "--log-format", "json"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=100)
    _one_error_line(proc, 2, "does not list SOL/USDT")
    assert proc.stdout.strip() == "numba not imported", proc.stdout
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no kernel compiled or cached
    events = [json.loads(ln)["event"] for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert "compiling_core" not in events and "kernels_ready" not in events, events


@pytest.mark.timeout(90)
def test_exchange_speaking_garbage_is_one_line(tmp_path, monkeypatch, capsys):
    """A server whose exchangeInfo is not what ccxt expects (here a JSON list): ccxt fails
    inside its parser with an AttributeError, which escaped as a traceback."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import tandem.daemon.cli as cli
    import tandem.daemon.strategy

    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b"[1, 2]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    monkeypatch.setattr(tandem.daemon.strategy, "stepper_factory", lambda profile: _NoStepper)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_HTTP_ENABLED", "false")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code = cli.main(["run", "--manifest", str(_manifest(tmp_path)), "--profile", "tst",
                         "--db", str(tmp_path / "s.sqlite"), "--rest-url", url,
                         "--ws-url", "ws://127.0.0.1:9/ws", "--log-format", "json"])
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 1 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: run failed:"), err


# ------------------------------------------------------------- a --db of another replay


@pytest.mark.timeout(300)
def test_replay_db_of_other_candles_is_refused_not_resumed(tmp_path):
    """``replay --db`` continues a journal of the same profile. One made from other candles
    (another --seed) or covering more bars (a shorter --bars) was taken as this replay's:
    exit 0 with the OLD journal's summary and fingerprint printed as the new run's."""
    m = str(_manifest(tmp_path))
    base = ["replay", "--manifest", m, "--profile", "tst", "--sample", "--db", "r.sqlite"]

    def fingerprint(proc: subprocess.CompletedProcess) -> str:
        assert proc.returncode == 0, proc.stderr
        assert "stopped before the end" not in proc.stdout  # complete runs
        return next(ln.strip() for ln in proc.stdout.splitlines() if "fingerprint" in ln)

    first = fingerprint(_daemon(*base, "--bars", "60", cwd=tmp_path, timeout=240))
    with StateStore(tmp_path / "r.sqlite") as s:
        before = (s.fill_count(), s.last_ts)
    line = _one_error_line(_daemon(*base, "--bars", "60", "--seed", "8", cwd=tmp_path), 2,
                           "is not this replay's journal")
    assert "differs from this data's" in line and "--fresh" in line
    _one_error_line(_daemon(*base, "--bars", "40", cwd=tmp_path), 2,
                    "past this replay's last bar")
    with StateStore(tmp_path / "r.sqlite") as s:
        assert (s.fill_count(), s.last_ts) == before  # refused before anything ran
    # the same replay again still resumes (here: already complete, same fingerprint) ...
    assert fingerprint(_daemon(*base, "--bars", "60", cwd=tmp_path)) == first
    # ... and --fresh replays the other candles
    other = fingerprint(_daemon(*base, "--bars", "60", "--seed", "8", "--fresh", cwd=tmp_path))
    assert other != first
    # a live run is not continued on a replay's journal (its played fills): refused before
    # it connects anywhere (the URLs point at a closed port)
    with StateStore(tmp_path / "r.sqlite") as s:
        before = (s.fill_count(), s.last_ts)
    line = _one_error_line(_daemon("run", "--manifest", m, "--profile", "tst", "--db", "r.sqlite",
                                   "--rest-url", "http://127.0.0.1:9/api/v3",
                                   "--ws-url", "ws://127.0.0.1:9/ws", cwd=tmp_path), 2,
                           "is a replay journal (tandem-daemon replay), not a live one")
    assert "--fresh" in line
    with StateStore(tmp_path / "r.sqlite") as s:
        assert (s.fill_count(), s.last_ts) == before


@pytest.mark.timeout(300)
def test_replay_stopped_by_a_signal_says_its_summary_is_partial(tmp_path):
    """SIGTERM ends a replay with exit 0 (documented) and its summary: that summary and its
    fingerprint line looked like a complete replay's."""
    import signal
    import sqlite3
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO), "TANDEM_HTTP_ENABLED": "false"}
    db = tmp_path / "r.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.daemon.cli", "replay", "--manifest",
         str(_manifest(tmp_path)), "--profile", "tst", "--sample", "--bars", "120",
         "--speed", "60", "--db", str(db)],  # 1m bars at 60x: one bar a second
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:  # until a tradable slice is committed
            time.sleep(0.5)
            with contextlib.suppress(sqlite3.Error), \
                    contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as c:
                row = dict(c.execute("SELECT key, value FROM meta").fetchall())
                if "last_ts" in row and int(row["last_ts"]) >= int(row.get("t0", 2**62)):
                    break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "fingerprint" in out
    assert "stopped before the end: replayed up to the slice at" in out, out


def test_status_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    """``tandem-daemon status | head``: the reader gone, Python raised BrokenPipeError with
    a traceback. Now quiet, exit 0 (as ``tandem-backtest fingerprints``)."""
    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        st.bind_profile("p", "{}", "r1")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # head -c 0 exits at once: every write of the status finds the pipe closed
    proc = subprocess.run(
        f"'{sys.executable}' -m tandem.daemon.cli status --db '{db}' | head -c 0; "
        "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
        text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize("cmd", [["status"], ["export-fills", "--out", "exp"]])
def test_an_empty_file_is_no_journal_and_stays_untouched(tmp_path, cmd):
    """A 0-byte --db (`touch`ed by a deploy script, a copy that failed): ``status`` turned
    it into a Tandem database in WAL mode and printed an empty summary, exit 0, and
    ``export-fills`` replaced the export folder's fills with a header-only file."""
    db = tmp_path / "state.sqlite"
    db.touch()
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "fills.csv").write_text("an earlier export\n")
    _one_error_line(_daemon(*cmd, "--db", "state.sqlite", cwd=tmp_path), 1,
                    "state database state.sqlite is empty (0 bytes)")
    assert db.read_bytes() == b"" and not (tmp_path / "state.sqlite-wal").exists()
    assert (tmp_path / "exp" / "fills.csv").read_text() == "an earlier export\n"
