"""tandem.core.warmup: worker processes fill the numba cache that a later process then loads.

Each test uses its own empty cache folder. Only the engine and MTF-loop jobs are compiled
here (a few seconds each); the ratings job runs the same machinery with a bigger kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tandem.core import warmup
from tandem.core.manifest import load_manifest, parse_manifest
from tandem.core.numba_cache import core_source_hash

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def profile():  # noqa: ANN201
    return load_manifest(REPO / "manifest.json").profile("crypto_rating_all")


@pytest.fixture
def cache(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """An empty numba cache folder for this process (and the workers it starts)."""
    from numba.core import config
    from tandem.core import numba_cache

    folder = tmp_path / f"core-{core_source_hash()}"
    monkeypatch.setattr(config, "CACHE_DIR", str(folder))
    monkeypatch.setattr(numba_cache, "_folder", folder)
    return folder


def load_in_fresh_process(folder: Path, profile_name: str = "crypto_rating_all",
                          job: str = "engine", kernel: str = "tandem.core.engine.kernels.run_batch_nb") -> dict:
    """Run ``job`` in a new interpreter on ``folder``; report ``kernel``'s cache use."""
    module, name = kernel.rsplit(".", 1)
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tandem.core.numba_cache import use_numba_cache_folder\n"
        # The exact folder (not one derived from a hash of the sources, which another
        # session editing the core may change in the meantime), before any kernel module
        # is imported.
        f"use_numba_cache_folder({str(folder)!r})\n"
        "from core import warmup\n"
        "from tandem.core.manifest import load_manifest\n"
        f"p = load_manifest({str(REPO / 'manifest.json')!r}).profile({profile_name!r})\n"
        f"warmup.run_jobs(p, [{job!r}])\n"
        f"from {module} import {name} as k\n"
        "print(json.dumps({'hits': sum(k.stats.cache_hits.values()),\n"
        "                  'misses': sum(k.stats.cache_misses.values())}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_markers_and_switch(profile, cache, monkeypatch) -> None:  # noqa: ANN001
    assert not warmup.is_warm(profile, "engine")
    warmup.mark_warm(profile, ["engine"], seconds={"engine": 1.5})
    assert warmup.is_warm(profile, "engine") and not warmup.is_warm(profile, "ratings")
    assert warmup.job_seconds(profile, "engine") == 1.5
    # The engine kernel is typed by the execution mode: another mode is another job.
    data = profile.model_dump(mode="json")
    data["execution"]["mode"] = "portfolio"
    data["execution"]["long_short"] = False
    port = parse_manifest({"profiles": {"p": data}}, source="t").profile("p")
    assert warmup.job_key(port, "engine") != warmup.job_key(profile, "engine")
    assert not warmup.is_warm(port, "engine")
    # Warm jobs spawn nothing; TANDEM_WARMUP=0 spawns nothing either.
    monkeypatch.setenv(warmup.ENV_SWITCH, "1")  # the suite's conftest sets 0
    assert warmup.start_warmup(profile, (("engine",),)).groups == []
    monkeypatch.setenv(warmup.ENV_SWITCH, "0")
    assert warmup.start_warmup(port, (("engine",),)).groups == []
    # auto (the default): a worker when two or more CPUs are usable, however busy.
    monkeypatch.delenv(warmup.ENV_SWITCH)
    assert warmup.mode() == "auto"
    monkeypatch.setattr(warmup, "usable_cpus", lambda: 1)
    assert not warmup.wants_worker()
    assert warmup.start_warmup(port, (("engine",),)).groups == []
    monkeypatch.setattr(warmup, "usable_cpus", lambda: 2)
    assert warmup.wants_worker()
    monkeypatch.setenv(warmup.ENV_SWITCH, "0")
    assert not warmup.wants_worker()


def test_usable_cpus_follows_the_affinity_mask() -> None:
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert warmup.usable_cpus() == len(os.sched_getaffinity(0)) >= 1


def test_worker_fills_the_cache_for_a_fresh_process(profile, cache) -> None:  # noqa: ANN001
    w = warmup.start_warmup(profile, (("engine",),), force=True)
    assert w.groups == [["engine"]]
    info = w.wait(timeout=300)
    assert info["failed"] == [], info
    assert warmup.is_warm(profile, "engine")
    assert warmup.job_seconds(profile, "engine") > 0.0
    # A new process finds the kernel in the cache: loaded, not compiled.
    assert load_in_fresh_process(cache) == {"hits": 1, "misses": 0}


def test_two_workers_compiling_the_same_kernel_at_once(profile, cache) -> None:  # noqa: ANN001
    """Both write the same cache entry concurrently (atomic renames): both succeed and the
    entry loads cleanly afterwards, with a single index entry for the one signature."""
    w = warmup.start_warmup(profile, (("engine",), ("engine",)), force=True)
    assert len(w.procs) == 2
    info = w.wait(timeout=300)
    assert info["failed"] == [], info
    index = list(Path(warmup.cache_dir()).rglob("kernels.run_batch_nb-*.nbi"))
    assert len(index) == 1
    assert len(list(index[0].parent.glob("kernels.run_batch_nb-*.nbc"))) == 1
    assert not list(index[0].parent.glob("*.tmp.*"))  # no torn temporary files left
    assert load_in_fresh_process(cache) == {"hits": 1, "misses": 0}


def test_mtf_job_compiles_the_loop_the_run_loads(profile, cache) -> None:  # noqa: ANN001
    """The worker compiles the MTF loop running a stand-in kernel; another process calling
    the loop (with another function's address) loads that entry."""
    w = warmup.start_warmup(profile, (("mtf",),), force=True)
    info = w.wait(timeout=300)
    assert info["failed"] == [], info
    assert warmup.is_warm(profile, "mtf")
    assert load_in_fresh_process(cache, job="mtf", kernel="tandem.core.mtf.mtf_batch_nb") == {
        "hits": 1, "misses": 0}


class FakeWarmup:
    """Stands in for tandem.core.warmup.Warmup: records when the runner waits, reports a failure."""

    def __init__(self, events: list[str]) -> None:
        self.groups = [list(g) for g in warmup.BACKTEST_GROUPS]
        self.events = events

    def wait(self, job=None, timeout=None) -> dict:  # noqa: ANN001
        self.events.append(f"wait:{job}")
        return {"groups": self.groups, "seconds": 0.0,
                "failed": [{"jobs": ["signals", "engine"], "exit": 1, "stderr": "boom"}]}

    def cancel(self) -> None:
        self.events.append("cancel")


def test_runner_waits_for_each_worker_right_before_its_stage(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    """One ``jit_warmup`` block around the run; each core stage waits right before its
    kernels: the rating kernel compiles first, the MTF loop runs after wait:mtf, the
    combiner after wait:signals (after the first chunk's ratings), the engine after
    wait:engine. A failed worker only costs time: the run completes (compiling in-process)."""

    import tandem.core.engine.api
    import tandem.core.mtf
    import tandem.core.signals
    from tandem.backtest.demo_data import generate_candles, write_csv_folder
    from tandem.backtest.runner import run_backtest, with_overrides
    from tandem.core.store import CsvFolderSource

    events: list[str] = []
    monkeypatch.setattr(warmup, "start_warmup", lambda *a, **k: FakeWarmup(events))

    def fake_kernel() -> int:  # no rating kernel compile here
        events.append("kernel")
        return 0

    def fake_mtf_batch(kern, ts, o, h, lo, c, v, base_ms, htf_ms, htf_off, use_htf, states,  # noqa: ANN001, ANN202
                       res, first, stop):
        # A plain +0.5 rating on every timeframe makes every asset a buy.
        events.append("ratings")
        res[:, first:stop] = 0.5

    real_signals, real_batch = tandem.core.signals.signals_rows_nb, tandem.core.engine.api.run_batch_nb

    def spy_signals(*a):  # noqa: ANN002, ANN202
        events.append("signals")
        return real_signals(*a)

    def spy_batch(*a):  # noqa: ANN002, ANN202
        events.append("engine")
        return real_batch(*a)

    monkeypatch.setattr(tandem.core.mtf, "rating_kernel", fake_kernel)
    monkeypatch.setattr(tandem.core.mtf, "mtf_batch_nb", fake_mtf_batch)
    monkeypatch.setattr(tandem.core.signals, "signals_rows_nb", spy_signals)
    monkeypatch.setattr(tandem.core.engine.api, "run_batch_nb", spy_batch)
    syms = ["BTC/USDT", "DOGE/USDT"]
    write_csv_folder(generate_candles(syms, start="2024-01-01", n_bars=5000, seed=5), tmp_path)
    prof = with_overrides(load_manifest(REPO / "manifest.json").profile("crypto_rating_all"),
                          warmup_bars=24)
    res = run_backtest(prof, CsvFolderSource(tmp_path, timeframe="1h"), symbols=syms,
                       report=False)
    assert len(res.fills) > 0
    first_ratings = events.index("ratings")
    # The rating kernel compiles in this process while the worker compiles the MTF loop.
    assert events.index("kernel") < events.index("wait:mtf") < first_ratings
    assert first_ratings < events.index("wait:signals") < events.index("signals")
    assert events.count("ratings") > 1  # several chunks; one wait each
    assert events.count("wait:mtf") == 1 and events.count("wait:signals") == 1
    assert events.index("wait:engine") < events.index("engine")
    assert events.count("wait:engine") == 1 and "cancel" not in events
    assert res.timings["wait_engine"] >= 0.0


def test_block_cancels_on_error_marks_on_success(profile, cache, monkeypatch) -> None:  # noqa: ANN001
    """A run that fails inside the block stops its worker and marks nothing; a clean block
    marks its jobs warm (the next run spawns nothing); outside a block ``ready`` is a no-op."""
    events: list[str] = []
    monkeypatch.setattr(warmup, "start_warmup", lambda *a, **k: FakeWarmup(events))
    warmup.ready("engine")  # no block: returns at once
    assert events == []
    with pytest.raises(ValueError, match="bad input"), warmup.jit_warmup(profile):
        raise ValueError("bad input")
    assert events == ["cancel"]
    assert not warmup.is_warm(profile, "engine")
    timings: dict[str, float] = {}
    with warmup.jit_warmup(profile, timings=timings):
        warmup.ready("engine")
        warmup.ready("engine")  # waits once
    assert events == ["cancel", "wait:engine"]
    assert set(timings) == {"wait_engine"}
    assert all(warmup.is_warm(profile, j) for j in warmup.JOBS)
    # enabled=False starts no worker at all.
    with warmup.jit_warmup(profile, enabled=False) as block:
        warmup.ready("engine")
    assert block.worker is None and events == ["cancel", "wait:engine"]


def test_daemon_prewarm_compiles_the_kernel_in_a_worker(profile, cache, monkeypatch) -> None:  # noqa: ANN001
    """The daemon's first start on an empty cache: a worker compiles the rating kernel
    while the daemon compiles the MTF loop around a stand-in; afterwards the stepper rates
    with the real kernel, exactly as the MTF states do."""
    import numpy as np
    from tandem.core.mtf import MtfRatingStates
    from tandem.daemon.slices import Slice
    from tandem.daemon.strategy import ProfileStepper

    monkeypatch.setenv(warmup.ENV_SWITCH, "1")  # the suite's conftest sets 0
    stepper = ProfileStepper(profile, "t")
    stepper.prewarm()
    assert warmup.is_warm(profile, "kernel")
    n = len(stepper.symbols)
    ref = MtfRatingStates.from_profile(profile)
    rng = np.random.default_rng(3)
    for k in range(30):
        c = 100 + rng.normal(0, 1, n)
        sl = Slice(k * 3_600_000, c, c + 1, c - 1, c, np.ones(n), [], [], False)
        stepper.step(sl, trade=False)
        want = ref.step_slice(sl.ts, sl.open, sl.high, sl.low, sl.close, sl.volume)
    assert np.array_equal(stepper._out, want, equal_nan=True)
    assert not np.isnan(want[:, 0, 0]).all()  # real ratings, not the stand-in's NaN


def test_daemon_and_backtest_call_each_kernel_with_one_signature(profile, monkeypatch) -> None:  # noqa: ANN001
    """The daemon's slices and warm-up call the backtest's batch kernels (MTF loop,
    combiner, engine) with the backtest's argument types: one compiled entry each, so a
    first replay compiles each loop once and a backtest after it compiles nothing."""
    import numba
    import numpy as np
    from tandem.core import mtf, signals
    from tandem.core.engine import api
    from tandem.daemon.slices import Slice
    from tandem.daemon.strategy import ProfileStepper

    seen: dict[str, set] = {"mtf": set(), "signals": set(), "engine": set()}

    def spy(module, name: str, key: str) -> None:  # noqa: ANN001
        real = getattr(module, name)

        def call(*args):  # noqa: ANN002, ANN202
            seen[key].add(tuple(numba.typeof(a) for a in args))
            return real(*args)
        monkeypatch.setattr(module, name, call)

    spy(mtf, "mtf_batch_nb", "mtf")
    spy(signals, "signals_rows_nb", "signals")
    spy(api, "run_batch_nb", "engine")
    stepper = ProfileStepper(profile, "t")
    n = len(stepper.symbols)
    one = np.ones(n)
    stepper.step(Slice(0, one, one * 1.01, one * 0.99, one, one, [], [], False), trade=True)
    stepper.warm_asset(0, np.arange(3, dtype=np.int64) * 3_600_000, np.ones((3, 5)))
    warmup.run_jobs(profile, ["mtf", "signals", "engine"])  # the backtest's calls, typed alike
    assert {k: len(v) for k, v in seen.items()} == {"mtf": 1, "signals": 1, "engine": 1}
