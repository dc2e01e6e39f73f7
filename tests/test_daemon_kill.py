"""Crash safety: SIGKILL a separate daemon process at random moments (>= 20 trials) while
the emulator keeps playing, restart it each time; the journal ends equal to an
uninterrupted run (the core's batch run on the same candles) — nothing lost, nothing
doubled — and a final SIGTERM exits 0 within 5 s.

To keep 20+ trials fast on a small machine, daemon processes are forked from a "zygote"
process that has imported everything once (``python -m tests.test_daemon_kill``); each
child runs the real CLI entry point (``tandem.daemon.cli.main(["run", ...])``) in its own process
and dies by a real SIGKILL. The final run uses a fresh ``python -m tandem.daemon.cli`` process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tandem.daemon.emulator.server import Emulator

from tests.test_daemon_support import (
    TF_MS,
    assert_candles_exactly_once,
    assert_journal_equal,
    batch_fills,
    sample_market,
    small_profile,
)

REPO = Path(__file__).resolve().parents[1]
TRIALS = 20


def _manifest(tmp: Path) -> Path:
    prof = small_profile()
    data = {"version": 1, "profiles": {"tst": json.loads(prof.model_dump_json())}}
    path = tmp / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def _args(manifest: Path, db: Path, emu: Emulator) -> list[str]:
    return ["run", "--manifest", str(manifest), "--profile", "tst", "--db", str(db),
            "--rest-url", emu.rest_url, "--ws-url", emu.ws_url, "--watchdog", "3",
            "--grace", "30", "--log-format", "json", "--log-level", "WARNING",
            "--heartbeat-every", "3600"]


def _last_ts(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None
    return None if row is None else int(row[0])


class Zygote:
    """A pre-imported Python that forks daemon children on request."""

    def __init__(self, cwd: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.test_daemon_kill", "--zygote", str(cwd)],
            cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def spawn(self, argv: list[str]) -> int:
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def reap(self, pid: int) -> None:
        self.proc.stdin.write(json.dumps({"reap": pid}) + "\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
async def test_sigkill_trials_journal_equals_uninterrupted_run(tmp_path):
    rng = random.Random(1234)
    profile = small_profile()
    market = sample_market(n_tradable=900)
    manifest = _manifest(tmp_path)
    db = tmp_path / "state.sqlite"
    emu = Emulator(market, start=market.first_ts + profile.warmup * TF_MS)
    await emu.start()
    zyg = Zygote(tmp_path)
    end_of_data = market.end_ts - TF_MS
    alive = asyncio.Event()

    async def clock():
        # Bars close while the daemon runs (live) and while it is dead (catch-up on restart).
        while emu.now < end_of_data:
            await asyncio.sleep(0.03 if alive.is_set() else 0.1)
            await emu.advance(1)

    ticker = asyncio.create_task(clock())
    kills = []
    proc = None
    try:
        for _trial in range(TRIALS):
            pid = zyg.spawn(_args(manifest, db, emu))
            # Kill at a random moment: during start-up, warm-up, catch-up or live.
            t_start = time.monotonic()
            while not emu.subscriptions() and time.monotonic() - t_start < 30:
                await asyncio.sleep(0.01)
            alive.set()
            await asyncio.sleep(rng.uniform(0.0, 1.2))
            os.kill(pid, signal.SIGKILL)
            alive.clear()
            zyg.reap(pid)
            kills.append(_last_ts(db))
            await asyncio.sleep(0.05)
        ticker.cancel()
        # Final, uninterrupted stretch in a fresh process of the real entry point: catch up
        # over REST, then the last bars live.
        await emu.advance_to(end_of_data - 5 * TF_MS)
        proc = subprocess.Popen([sys.executable, "-m", "tandem.daemon.cli", *_args(manifest, db, emu)],
                                cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": str(REPO)})
        t_start = time.monotonic()
        while not emu.subscriptions() and time.monotonic() - t_start < 300:
            await asyncio.sleep(0.05)
        while emu.now < end_of_data:
            await asyncio.sleep(0.3)
            await emu.advance(1)
        target = emu.now - TF_MS  # the last closed bar
        deadline = time.monotonic() + 300  # a cold interpreter on a loaded CI box is slow
        while _last_ts(db) != target and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert _last_ts(db) == target
        proc.send_signal(signal.SIGTERM)
        t = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0 and time.monotonic() - t < 5.0
    finally:
        ticker.cancel()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        zyg.close()
        await emu.stop()
    # Kills landed at different moments (not all before the first slice).
    assert len({k for k in kills if k is not None}) >= 5, kills
    con = sqlite3.connect(str(db))
    t0 = int(con.execute("SELECT value FROM meta WHERE key='t0'").fetchone()[0])
    con.close()
    from tandem.daemon.state import StateStore

    with StateStore(db) as st:
        paper = st.fills_frame()
        last = st.last_ts
    end = last + TF_MS
    batch = batch_fills(profile, market, t0, end)
    assert len(batch) > 0
    assert_journal_equal(paper, batch)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)


def _zygote(cwd: str) -> None:
    """Import everything once, then fork one daemon per request line (JSON argv)."""
    import numpy as np
    import tandem.daemon.cli as cli
    from tandem.daemon.slices import Slice
    from tandem.daemon.strategy import ProfileStepper

    from tests.test_daemon_support import small_profile as sp

    # Load every numba kernel the daemon steps once, here, so no child pays for it.
    prof = sp()
    n = len(prof.assets)
    one = np.ones(n)
    ProfileStepper(prof, "zygote").step(
        Slice(0, one, one * 1.01, one * 0.99, one, one, [], [], False), trade=True)
    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if isinstance(req, dict):
            os.waitpid(req["reap"], 0)
            print("ok", flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            os.chdir(cwd)
            sys.stdin.close()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            code = 1
            try:
                code = cli.main(req)
            finally:
                os._exit(code)
        print(pid, flush=True)


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "--zygote":
    _zygote(sys.argv[2])
