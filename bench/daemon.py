"""Daemon benchmark: close-frame-to-commit latency and idle footprint.

Latency (definition printed with the figures): the emulator plays generated 1m candles for
N streams (10, 50, 200) on its virtual clock **in a separate process** (as the exchange is
another machine in production); the daemon consumes them with the real ccxt.pro client
over 127.0.0.1, exactly as in production. For every live slice, latency = the moment the
*last* closing kline frame (``x: true``) that completes the slice was written to its socket
by the emulator (``Emulator.on_frame``, in the child) -> the moment the slice's SQLite
transaction committed (``Daemon.commit_hook``, in the daemon). Both stamps are
``time.perf_counter()``, which on Linux is ``clock_gettime(CLOCK_MONOTONIC)``: one
system-wide clock, so stamps from the two processes are comparable (printed at start).
p50/p99/max over the live bars (warm-up excluded), and split where the daemon handled the
bar's last closing frame (``LiveExchangeMixin.frame_hook``): *queued* (the frames waiting in
the socket, ccxt.pro and our frame handler before it) and *slice work* (assemble, step,
commit), with the daemon's CPU time over the slice work (to the commit hook, which runs after
the fills' log calls: ~0.2 ms more than the commit; wall time below it, CPU above: the process
was preempted — on 2 shared cores, a third busy process makes the daemon share a core with the
emulator, which sends the next bar's open ticks right after the closings: slice work wall
~2x its CPU in such runs, ~= its CPU with the emulator at nice 10) and the fills a live
slice journals (p50). The bench profile trades a lot: at 500 assets a live slice carries ~48
fills and rewrites ~70 open positions, about a third of its CPU (engine, journal rows, their
INSERTs); a slice without fills is mostly the ratings kernel and the candles' INSERT. (The
machine's speed varies ~2x over an hour: compare runs made back to back.) Per bar the
emulator first sends every stream's in-progress update (``x: false``; on the exchange these are spread over the bar),
pauses 20 ms, then sends every closing frame followed by every stream's open tick of the next
bar (``x: false``), as Binance does — so the daemon reads 400 frames per burst at 200 streams.
``--inproc`` runs the emulator in the daemon's own process and event loop instead, a whole
bar's frames in one burst (the old figure: it adds the emulator's sending of every frame to
the daemon's time).
Also printed: the daemon process's CPU time from the burst's start to the slice's commit
(p50; the process also runs this driver, a pipe read per bar) — a figure the machine's load
hardly inflates, unlike the wall-clock latency (the load average is printed too: on a
shared 2-core machine, other jobs preempt the daemon and the emulator). And: the cyclic
collections that started inside bursts (wall ms per burst, p50/max, and how many of each
generation; daemon.memory keeps them out once live) and the daemon process's RSS after the
first live bar and after the last (``--bars 2000``: memory over thousands of slices).

Idle: a separate ``tandem-daemon run`` process with 200 streams, live and caught up, then no
market data for ``--idle-s`` seconds: resident memory (VmRSS, split into anonymous and
file-backed pages, and PSS) and CPU use of that process. ``--idle-store 6024``: the profile
warms up 6,024 bars per asset, all of them in a candle store (``TANDEM_DATA_DIR``), as a
user who ran ``download`` starts it; measured once the warm-up's journal rows are written.
``--idle-markets 3000``: the venue lists 3,000 markets (as Binance spot does), not only the
played ones: ccxt keeps every listed market in memory.

Start -> live (``--start 500``): a daemon with N streams and 6,024 warm-up bars per asset
starts against the emulator (child process, Binance's limits enforced): once with the
candle store holding the warm-up, once REST only (inside the request-weight budget).

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python bench/daemon.py [--bars 60] [--idle-s 10]
        [--streams 10,50,200] [--inproc] [--profile 200:prof.out]
        [--idle-streams 500] [--idle-store 6024] [--idle-markets 3000]
    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python bench/daemon.py --start 500 [--warmup 6024]
    ... [--venue bybit|okx]   (the emulator speaks that venue; the daemon uses its adapter)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tandem.core.manifest import parse_manifest  # noqa: E402
from tandem.daemon.app import Daemon, DaemonConfig  # noqa: E402
from tandem.daemon.emulator.market import MarketData  # noqa: E402
from tandem.daemon.emulator.server import Emulator  # noqa: E402
from tandem.daemon.logconfig import configure_logging  # noqa: E402
from tandem.daemon.memory import rss_mb  # noqa: E402
from tandem.daemon.replay import emulator_class, wait_delivered, wait_subscribed  # noqa: E402
from tandem.daemon.strategy import stepper_factory  # noqa: E402

TF_MS = 60_000
WARMUP = 60
SEED = 3


#: the venue of the latency and start runs (--venue)
VENUE = "binance"


def symbols(n: int) -> list[str]:
    out = []
    for i in range(n):
        a, b = divmod(i, 26)
        # "Q.." names: ccxt maps some real codes (XBT -> BTC), which would not round-trip.
        out.append(f"Q{chr(65 + a % 26)}{chr(65 + b)}/USDT")
    return out


def profile_dict(syms: list[str]) -> dict:
    return {
        "strategy": "rating_all", "exchange": "binance", "core_assets": syms[: max(1, len(syms) // 4)],
        "universe": syms, "base_timeframe": "1m", "timeframes": ["1m", "5m"],
        "entry_threshold": 0.05, "exit_threshold": -0.05,
        "exit_rules": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015},
        "execution": {"size_pct": 0.02, "min_trade_value": 1.0}, "warmup_bars": WARMUP,
    }


def make_profile(syms: list[str]):
    return parse_manifest({"version": 1, "profiles": {"bench": profile_dict(syms)}}).profile("bench")


def bench_market(n: int, bars: int, warmup: int = WARMUP) -> MarketData:
    return MarketData.generate(symbols(n), "1m", n_bars=warmup + bars + 5, seed=SEED)


# ---------------------------------------------------------------------------------------
# the exchange: an emulator driven over stdin/stdout (runs in its own process)
# ---------------------------------------------------------------------------------------
async def emulator_child(n: int, bars: int, warmup: int = WARMUP) -> None:
    """Serve the bench market; obey line commands on stdin, answer JSON lines on stdout.

    ``subs K`` -> wait until K streams are subscribed; ``pre`` -> move the clock to 1 ms
    before the next bar boundary (the bar's in-progress updates go out); ``advance`` -> close
    one bar and answer ``{bar_ts: perf_counter of that bar's last closing frame}``; ``stats``
    -> what the exchange's limits saw; ``quit``. Binance's limits are enforced (defaults).
    """
    market = bench_market(n, bars, warmup)
    t0 = market.first_ts + warmup * TF_MS
    emu = emulator_class(VENUE)(market, start=t0)
    last: dict[int, float] = {}
    first: dict[int, float] = {}

    def on_frame(symbol, bar_ts, closed, t):  # noqa: ANN001
        if closed:
            last[bar_ts] = t  # one bar's closing frames go out in order: keep the last
            first.setdefault(bar_ts, t)

    emu.on_frame = on_frame
    await emu.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    answer({"rest_url": emu.rest_url, "ws_url": emu.ws_url, "t0": t0, "clock": time.perf_counter()})
    try:
        while line := (await reader.readline()).decode().strip():
            cmd, *arg = line.split()
            if cmd == "subs":
                await wait_subscribed(emu, int(arg[0]), timeout_s=900)
                answer({"subs": len(emu.subscriptions())})
            elif cmd == "pre":
                await emu.advance_to((emu.now // TF_MS + 1) * TF_MS - 1)
                answer({"now": emu.now})
            elif cmd == "advance":
                last.clear()
                first.clear()
                await emu.advance(1)
                answer({"now": emu.now, "frames": {str(k): v for k, v in last.items()},
                        "first": {str(k): v for k, v in first.items()}})
            elif cmd == "stats":
                answer({"rate_closes": emu.rate_closes, "peak_msgs_per_s": emu.peak_msgs_per_s,
                        "refused_subscribes": emu.refused_subscribes, "rest_429": emu.rest_429,
                        "rest_418": emu.rest_418, "peak_weight": emu.peak_weight,
                        "klines": sum(p.startswith(emu.klines_path) for p, _ in emu.rest_log),
                        "connections": len({c.path for c in emu.connections}),
                        "subscribe_msgs": len(emu.subscribe_log)})
            elif cmd == "quit":
                break
    finally:
        await emu.stop()


class RemoteEmulator:
    """The parent's handle on :func:`emulator_child`."""

    def __init__(self, proc: asyncio.subprocess.Process, hello: dict):
        self.proc = proc
        self.rest_url, self.ws_url, self.t0 = hello["rest_url"], hello["ws_url"], hello["t0"]

    @classmethod
    async def start(cls, n: int, bars: int, warmup: int = WARMUP) -> RemoteEmulator:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--emulator-child", "--streams", str(n), "--bars", str(bars),
            "--warmup", str(warmup), "--venue", VENUE,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        hello = json.loads(await proc.stdout.readline())
        return cls(proc, hello)

    async def ask(self, line: str) -> dict:
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()
        return json.loads(await self.proc.stdout.readline())

    async def stop(self) -> None:
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()
        await asyncio.wait_for(self.proc.wait(), 30)


# ---------------------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------------------
def _daemon(n: int, tmp: Path, rest_url: str, ws_url: str, t0: int) -> Daemon:
    prof = make_profile(symbols(n))
    cfg = DaemonConfig(
        profile_name=prof.name, profile_json=prof.canonical_json(), symbols=prof.assets,
        exchange_id=VENUE, base_timeframe="1m", tf_ms=TF_MS, warmup_bars=prof.warmup,
        state_db=tmp / f"lat{n}.sqlite", rest_url=rest_url, ws_url=ws_url,
        grace_s=30.0, watchdog_s=0, heartbeat_every_s=3600, fresh=True, t0=t0,
        checkpoint_every=10**9, checkpoint_every_s=3600,
    )
    return Daemon(cfg, stepper_factory(prof))


def _figures(n: int, commits: dict[int, float], frames: dict[int, float], t0: int,
             cpu: list[float] | None = None, handled: dict[int, float] | None = None,
             work_cpu: dict[int, float] | None = None, fills: dict[int, int] | None = None,
             ) -> dict:
    live = [ts for ts in commits if ts >= t0 + TF_MS and ts in frames]
    lat = np.array([commits[ts] - frames[ts] for ts in live]) * 1000.0
    out = {"streams": n, "slices": int(lat.size), "p50_ms": float(np.percentile(lat, 50)),
           "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}
    if cpu:
        out["cpu_ms"] = float(np.percentile(np.array(cpu) * 1000.0, 50))
    if handled:
        # The split of each latency at the moment the daemon handled the bar's last closing
        # frame: before it, frames queued behind one another (socket, ccxt.pro, our frame
        # handler); after it, the slice's own work (assemble, step, commit).
        both = [ts for ts in live if ts in handled]
        queue = np.array([handled[ts] - frames[ts] for ts in both]) * 1000.0
        work = np.array([commits[ts] - handled[ts] for ts in both]) * 1000.0
        for name, x in (("queue", queue), ("work", work)):
            out[f"{name}_p50_ms"] = float(np.percentile(x, 50))
            out[f"{name}_p99_ms"] = float(np.percentile(x, 99))
    if work_cpu:
        # The daemon's CPU time over the slice work: wall time above it is time the process
        # was not running (preempted: on 2 shared cores, by the emulator sending the next
        # bar's open ticks or by other jobs).
        x = np.array([work_cpu[ts] for ts in live if ts in work_cpu]) * 1000.0
        if x.size:
            out["work_cpu_p50_ms"] = float(np.percentile(x, 50))
            out["work_cpu_p99_ms"] = float(np.percentile(x, 99))
    if fills:
        # What a live slice carries (fills journaled); slices without fills cost less.
        out["fills_p50"] = float(np.percentile([fills.get(ts, 0) for ts in live], 50))
    return out


class GcLog:
    """Python's cyclic collections in the daemon process (``gc.callbacks``): which ones ran
    inside a burst (from the burst's start to the slice's commit) and for how long."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float, int]] = []  # (start, end, generation)
        self._start = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.runs.append((self._start, time.perf_counter(), info["generation"]))

    def in_bursts(self, bursts: list[tuple[float, float]]) -> dict:
        """Per burst ``(start, commit)``: collection ms (p50, max) and collections per
        generation over all bursts."""
        per, gens = [], [0, 0, 0]
        for a, b in bursts:
            ms = 0.0
            for s, e, g in self.runs:
                if a <= s < b:
                    ms += (e - s) * 1000.0
                    gens[g] += 1
            per.append(ms)
        return {"gc_p50_ms": float(np.percentile(per, 50)) if per else 0.0,
                "gc_max_ms": max(per, default=0.0), "gc_gens": gens}


async def latency(n: int, bars: int, tmp: Path, prof: cProfile.Profile | None = None) -> dict:
    """Emulator in a child process (see the module docstring)."""
    emu = await RemoteEmulator.start(n, bars)
    daemon = _daemon(n, tmp, emu.rest_url, emu.ws_url, emu.t0)
    commits: dict[int, float] = {}
    cpu_at_commit: dict[int, float] = {}
    frames: dict[int, float] = {}
    committed = asyncio.Event()

    def on_commit(sl, t: float) -> None:  # noqa: ANN001
        commits[sl.ts] = t
        cpu_at_commit[sl.ts] = time.process_time()
        if sl.ts in handled_cpu:
            work_cpu[sl.ts] = cpu_at_commit[sl.ts] - handled_cpu[sl.ts]
        fills[sl.ts] = daemon.fills_written - fills_before[0]
        fills_before[0] = daemon.fills_written
        committed.set()

    daemon.commit_hook = on_commit
    handled: dict[int, float] = {}  # bar ts -> when the daemon handled its last closing frame
    handled_cpu: dict[int, float] = {}  # ... and the daemon process's CPU time then
    work_cpu: dict[int, float] = {}  # bar ts -> CPU time from there to the commit hook
    fills: dict[int, int] = {}  # bar ts -> fills journaled by that slice
    fills_before = [0]

    seen: dict[int, int] = {}  # bar ts -> closing frames handled

    def on_closing_frame(symbol: str, timeframe: str, bar_ts: int) -> None:
        handled[bar_ts] = time.perf_counter()  # the last one per bar stays
        k = seen[bar_ts] = seen.get(bar_ts, 0) + 1
        if k == n:
            # Only at the bar's last closing frame: process_time() is a system call (no
            # vDSO), several us here; once per frame it was 10 % of the daemon's samples.
            handled_cpu[bar_ts] = time.process_time()

    task = asyncio.create_task(daemon.run())
    cpu: list[float] = []  # daemon process CPU from the burst's start to the slice's commit
    bursts: list[tuple[float, float]] = []  # (burst start, commit), perf_counter
    rss: list[float] = []  # daemon process RSS after the first live bar and at the end
    gcs = GcLog()
    gcs.start()
    try:
        await emu.ask(f"subs {n}")  # first run after a core change compiles: may be slow
        daemon.ex.frame_hook = on_closing_frame  # the exchange exists once streams are live
        for k in range(bars):
            if prof is not None and k == 1:
                prof.enable()  # live bars only (the first one still seeds caches)
            # The bar's in-progress updates first, as on the exchange (where they are spread
            # over the bar), then a pause, then the closing frames (+ the next bar's open).
            await emu.ask("pre")
            await asyncio.sleep(0.02)
            committed.clear()
            cpu0 = time.process_time()
            burst0 = time.perf_counter()
            reply = await emu.ask("advance")
            closed = reply["now"] - TF_MS
            frames.update({int(ts): t for ts, t in reply["frames"].items()})
            deadline = time.monotonic() + 60
            while closed not in commits and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(committed.wait(), 1.0)
                committed.clear()
            if k > 0 and closed in cpu_at_commit:
                cpu.append(cpu_at_commit[closed] - cpu0)
                bursts.append((burst0, commits[closed]))
            if k in (1, bars - 1):
                rss.append(rss_mb() or 0.0)
            await asyncio.sleep(0.002)  # idle gap between bars, as in live trading
        if prof is not None:
            prof.disable()
    finally:
        gcs.stop()
        daemon.stop()
        await task
        await emu.stop()
    return {**_figures(n, commits, frames, emu.t0, cpu, handled, work_cpu, fills),
            **gcs.in_bursts(bursts),
            "rss": rss}


async def latency_inproc(n: int, bars: int, tmp: Path) -> dict:
    """Emulator in the daemon's own process and event loop (the figure before the split)."""
    market = bench_market(n, bars)
    t0 = market.first_ts + WARMUP * TF_MS
    emu = Emulator(market, start=t0)
    frames: dict[int, float] = {}
    emu.on_frame = lambda sym, bar_ts, closed, t: closed and frames.__setitem__(bar_ts, t)
    await emu.start()
    daemon = _daemon(n, tmp, emu.rest_url, emu.ws_url, t0)
    commits: dict[int, float] = {}
    daemon.commit_hook = lambda sl, t: commits.__setitem__(sl.ts, t)
    task = asyncio.create_task(daemon.run())
    try:
        await wait_subscribed(emu, n, timeout_s=900)
        for _ in range(bars):
            await emu.advance(1)
            await wait_delivered(daemon, emu.now - TF_MS, 60)
            await asyncio.sleep(0.002)
    finally:
        daemon.stop()
        await task
        await emu.stop()
    return _figures(n, commits, frames, t0)


# ---------------------------------------------------------------------------------------
# start -> live
# ---------------------------------------------------------------------------------------
def fill_store(root: Path, n: int, warmup: int, market: MarketData | None = None) -> None:
    """The candle store holding every asset's warm-up (as ``tandem-backtest download``):
    the bars before ``warmup`` bars after the start of ``market`` (default: the start
    run's market)."""
    from tandem.core.store import CandleStore

    market = market or bench_market(n, 0, warmup)
    t0 = market.first_ts + warmup * TF_MS
    store = CandleStore(root, exchange=VENUE, timeframe="1m")  # the folder the daemon reads
    for s in market.symbols:
        f = market.frame(s)
        store.append(s, f[f["ts"] < t0])


async def startup(n: int, warmup: int, tmp: Path, store: Path | None) -> dict:
    """Start a daemon with ``n`` streams and ``warmup`` warm-up bars per asset against an
    emulator (child process, Binance's limits enforced) whose clock closes one bar right
    after the subscriptions: seconds from ``Daemon.run()`` to ``live`` (every stream
    delivering, warm-up stepped, the first live slice committed)."""
    emu = await RemoteEmulator.start(n, 3, warmup)
    prof = parse_manifest({"version": 1, "profiles": {"bench": {
        **profile_dict(symbols(n)), "warmup_bars": warmup}}}).profile("bench")
    cfg = DaemonConfig(
        profile_name=prof.name, profile_json=prof.canonical_json(), symbols=prof.assets,
        exchange_id=VENUE, base_timeframe="1m", tf_ms=TF_MS, warmup_bars=prof.warmup,
        state_db=tmp / f"start{n}-{store is not None}.sqlite", rest_url=emu.rest_url,
        ws_url=emu.ws_url, grace_s=300.0, watchdog_s=0, heartbeat_every_s=3600, fresh=True,
        t0=emu.t0, candle_store=store, startup_wait_s=600.0,
    )
    daemon = Daemon(cfg, stepper_factory(prof))
    t = time.monotonic()
    task = asyncio.create_task(daemon.run())
    marks: dict[str, float] = {}
    try:
        await emu.ask(f"subs {n}")
        marks["subscribed"] = time.monotonic() - t
        await emu.ask("advance")
        while not daemon.live and not task.done():
            await asyncio.sleep(0.01)
        marks["live"] = time.monotonic() - t
        stats = await emu.ask("stats")
    finally:
        daemon.stop()
        await task
        await emu.stop()
    feeds = daemon.supervisor.feeds
    return {"streams": n, "warmup": warmup, "store": store is not None, **marks, **stats,
            "from_store": sum(f.from_store for f in feeds),
            "warmup_done": daemon.warmup_done_s or 0.0,
            "warm_core_s": daemon.warm.seconds if daemon.warm is not None else 0.0,
            "budget_wait_s": daemon.ex.rest_budget.waited_s if daemon.ex.rest_budget else 0.0}


# ---------------------------------------------------------------------------------------
# idle
# ---------------------------------------------------------------------------------------
def _proc_mem_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts: RssAnon (heap, Python objects, JIT code) and RssFile (mapped
    shared libraries: LLVM, Arrow, ... — shared with any other process mapping them)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) / 1024.0
    # PSS: shared pages divided among the processes mapping them.
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["Pss"] = int(line.split()[1]) / 1024.0
    return out


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _warmup_journaled(db: Path) -> bool:
    """The daemon's state DB says its warm-up journal is written (read-only look)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'warmup_journal'").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == "done"


async def idle(n: int, idle_s: float, tmp: Path, store_warmup: int = 0, markets: int = 0) -> dict:
    """``store_warmup`` > 0: the profile warms up ``store_warmup`` bars per asset, all of
    them in a candle store (``TANDEM_DATA_DIR``) as a user who ran ``download`` has them;
    idle is measured once their journal rows are written. ``markets``: the venue lists that
    many markets in all (ccxt keeps every one in memory), as Binance lists ~3,000."""
    syms = symbols(n)
    warmup = store_warmup or WARMUP
    market = MarketData.generate(syms, "1m", n_bars=warmup + 20, seed=SEED)
    man = tmp / "manifest.json"
    man.write_text(json.dumps({"version": 1, "profiles": {"bench": {
        **profile_dict(syms), "warmup_bars": warmup}}}))
    db = tmp / "idle.sqlite"
    data_env = {}
    if store_warmup:
        fill_store(tmp / "idle-data", n, warmup, market)
        data_env["TANDEM_DATA_DIR"] = str(tmp / "idle-data")
    # Listed only: "Z" + three letters (26^3 names), none of them played.
    others = [f"Z{chr(65 + i // 676)}{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}/USDT"
              for i in range(max(0, markets - n))]
    emu = Emulator(market, start=market.first_ts + warmup * TF_MS, listed=others)
    await emu.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.daemon.cli", "run", "--manifest", str(man), "--profile", "bench",
         "--db", str(db), "--rest-url", emu.rest_url, "--ws-url", emu.ws_url, "--watchdog", "0",
         "--log-level", "WARNING", "--log-format", "json"],
        # Ops HTTP on (as in production) but on a free port: 8080 may be taken.
        # An absolute NUMBA_CACHE_DIR: the child runs in ``tmp``, where a relative one would
        # be an empty cache (a compile at start, whose leftovers would count as idle RSS).
        cwd=str(tmp), env={**os.environ, "PYTHONPATH": str(REPO), "TANDEM_HTTP_PORT": "0",
                           **data_env,
                           **({"NUMBA_CACHE_DIR": os.path.abspath(os.environ["NUMBA_CACHE_DIR"])}
                              if os.environ.get("NUMBA_CACHE_DIR") else {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await wait_subscribed(emu, n, timeout_s=900)
        for _ in range(3):  # warm-up + two live bars
            await emu.advance(1)
            await asyncio.sleep(2.0)
        deadline = time.monotonic() + 600
        while store_warmup and not _warmup_journaled(db) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)  # its journal rows follow between live slices
        await asyncio.sleep(2.0)
        cpu0, t0 = _proc_cpu_s(proc.pid), time.monotonic()
        await asyncio.sleep(idle_s)
        cpu1, t1 = _proc_cpu_s(proc.pid), time.monotonic()
        mem = _proc_mem_mb(proc.pid)
    finally:
        proc.terminate()
        t = time.monotonic()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stop_s = time.monotonic() - t
        await emu.stop()
    return {"streams": n, "idle_s": idle_s, "stop_s": stop_s, "store_warmup": store_warmup,
            "markets": max(n, markets), **mem,
            "cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=60, help="live bars per latency run")
    ap.add_argument("--streams", default="10,50,200")
    ap.add_argument("--idle-s", type=float, default=10.0, help="0 = skip the idle run")
    ap.add_argument("--idle-streams", type=int, default=200, help="streams of the idle run")
    ap.add_argument("--idle-store", type=int, default=0, metavar="BARS",
                    help="idle run warmed up from a candle store holding BARS warm-up bars "
                         "per asset (TANDEM_DATA_DIR; e.g. 6024), not 60 bars over REST")
    ap.add_argument("--idle-markets", type=int, default=0, metavar="N",
                    help="the venue of the idle run lists N markets in all (played or not; "
                         "Binance spot lists ~3,000): their memory in ccxt counts too")
    ap.add_argument("--inproc", action="store_true",
                    help="emulator in the daemon's process and loop (the old set-up)")
    ap.add_argument("--profile", metavar="N:FILE",
                    help="cProfile the daemon process over the live bars of the N-stream run")
    ap.add_argument("--start", metavar="N", type=int, default=0,
                    help="only the start -> live figures with N streams (store, then REST only)")
    ap.add_argument("--warmup", type=int, default=6024, help="warm-up bars per asset (--start)")
    ap.add_argument("--rest-only", action="store_true", help="--start: skip the store run")
    ap.add_argument("--store-only", action="store_true", help="--start: skip the REST-only run")
    ap.add_argument("--venue", default="binance", choices=["binance", "bybit", "okx"],
                    help="the exchange protocol (emulator + daemon adapter) of the latency "
                         "and start runs")
    ap.add_argument("--emulator-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global VENUE
    VENUE = args.venue
    configure_logging("json", "ERROR")
    if args.emulator_child:
        await emulator_child(int(args.streams), args.bars, args.warmup)
        return
    if args.start:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            runs = ([] if args.rest_only else [True]) + ([] if args.store_only else [False])
            for use_store in runs:
                store = None
                if use_store:
                    t = time.monotonic()
                    fill_store(tmp / "data", args.start, args.warmup)
                    print(f"(store filled in {time.monotonic() - t:.1f} s)", flush=True)
                    store = tmp / "data"
                r = await startup(args.start, args.warmup, tmp, store)
                print(f"start    streams={r['streams']}  warmup={r['warmup']} bars  "
                      f"{'store' if r['store'] else 'REST only'}: subscribed {r['subscribed']:.2f} s"
                      f"  warm-up committed {r['warmup_done']:.2f} s (kernel {r['warm_core_s']:.2f} s"
                      f" in worker threads)  live {r['live']:.2f} s  | klines requests "
                      f"{r['klines']} (peak weight "
                      f"{r['peak_weight']}/window)  bars from store {r['from_store']}  "
                      f"budget wait {r['budget_wait_s']:.1f} s  | connections "
                      f"{r['connections']}, SUBSCRIBE msgs {r['subscribe_msgs']}, peak msgs/s "
                      f"{r['peak_msgs_per_s']}, 1008 closes {r['rate_closes']}, 429 "
                      f"{r['rest_429']}, 418 {r['rest_418']}", flush=True)
        return
    clock = time.get_clock_info("perf_counter").implementation
    where = "in the daemon's process" if args.inproc else "in a child process"
    print(f"latency = last closing kline frame of a bar written by the emulator ({where}) -> "
          f"that slice's SQLite commit in the daemon; clock {clock}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    prof_n, prof_file = (int(args.profile.split(":")[0]), args.profile.split(":", 1)[1]) \
        if args.profile else (None, None)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in (int(x) for x in args.streams.split(",") if x):
            prof = cProfile.Profile() if n == prof_n else None
            r = await (latency_inproc(n, args.bars, tmp) if args.inproc
                       else latency(n, args.bars, tmp, prof))
            cpu = f"  daemon CPU/bar p50={r['cpu_ms']:.2f} ms" if "cpu_ms" in r else ""
            if "gc_gens" in r:
                cpu += (f"  gc in bursts p50={r['gc_p50_ms']:.2f} max={r['gc_max_ms']:.2f} ms "
                        f"(gen0/1/2 {'/'.join(map(str, r['gc_gens']))})")
            if "work_p50_ms" in r:
                cpu += (f"  (queued p50={r['queue_p50_ms']:.2f} p99={r['queue_p99_ms']:.2f}, "
                        f"slice work p50={r['work_p50_ms']:.2f} p99={r['work_p99_ms']:.2f} ms")
                if "work_cpu_p50_ms" in r:
                    cpu += (f", its CPU p50={r['work_cpu_p50_ms']:.2f} "
                            f"p99={r['work_cpu_p99_ms']:.2f} ms")
                cpu += ")"
            if "fills_p50" in r:
                cpu += f"  fills/slice p50={r['fills_p50']:.0f}"
            if r.get("rss"):
                cpu += f"  rss {' -> '.join(f'{x:.0f}' for x in r['rss'])} MB"
            print(f"latency  streams={r['streams']:>3}  slices={r['slices']:>3}  "
                  f"p50={r['p50_ms']:.2f} ms  p99={r['p99_ms']:.2f} ms  max={r['max_ms']:.2f} ms"
                  f"{cpu}", flush=True)
            if prof is not None:
                prof.dump_stats(prof_file)
        if args.idle_s > 0:
            r = await idle(args.idle_streams, args.idle_s, tmp, args.idle_store, args.idle_markets)
            warm = (f"store warm-up {r['store_warmup']} bars" if r["store_warmup"]
                    else f"REST warm-up {WARMUP} bars")
            print(f"idle     streams={r['streams']}  markets={r['markets']}  {warm}  "
                  f"rss={r['VmRSS']:.0f} MB (anon "
                  f"{r['RssAnon']:.0f}, file {r['RssFile']:.0f}; pss {r['Pss']:.0f})  "
                  f"cpu={r['cpu_pct']:.2f} % over {r['idle_s']:.0f} s  "
                  f"SIGTERM->exit={r['stop_s']:.1f} s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
