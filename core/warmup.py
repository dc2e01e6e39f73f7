"""First start on an empty numba cache: compile independent kernels in parallel processes.

Why: a backtest needs three kernel families that do not depend on each other's machine
code — the MTF ratings, the signal combiner and the engine. On an empty cache one process
compiles them one after another, single-threaded (numba's compiler holds a global lock).
:func:`start_warmup` instead starts worker processes that call given families once on
tiny inputs *of the same types as the real run*, so that numba writes their cache entries.
The backtest (:data:`BACKTEST_GROUPS`) runs its pipeline inside one :func:`jit_warmup`
block: a worker compiles the MTF loop, the combiner and the engine while the backtest's
own process loads the candles and compiles the rating kernel (the biggest compile; the MTF
loop calls it through a function pointer, so the loop compiles without it). Each core
stage calls :func:`ready` right before its kernels run — :func:`tandem.core.mtf.compute_mtf_ratings`
after it got the rating kernel, :func:`tandem.core.signals.compute_signals`,
:func:`tandem.core.engine.run_batch` — which, inside such a block, waits for the worker compiling
that stage and then finds the stage's kernels in the cache (a load takes milliseconds, a
compile seconds); outside a block it returns at once. So the driver reads as its pipeline,
and the waits sit exactly where the kernels are needed.

Safety of concurrent compiles: numba writes a cache entry as an index file plus a data
file, each first to a unique temporary name and then ``os.replace``-d (atomic on POSIX), so
a reader sees either no file or a complete one. Two processes compiling the *same* kernel
with the *same* signature (say a worker and a main process that stopped waiting) write the
same index key and data file name: the last rename wins with equivalent contents. A
reader that finds an index entry whose data file is not there yet gets no hit and compiles
itself. What numba does not guard against is two processes saving two *different*
signatures of one kernel at once (both may pick the same data file name for different
keys); the jobs below therefore compile exactly the one signature per kernel that the run
uses — the engine's kernel is typed by the profile's execution mode.

Markers: after a job succeeded, the worker leaves a small ``warm-<job>.ok`` file in the
cache folder (which :mod:`tandem.core.numba_cache` keys by a hash of the core's sources, so any
change to the core means a new, empty folder without markers). A warm start therefore costs
a few ``stat`` calls and spawns nothing. Missing markers with a full cache (e.g. a run made
with the warm-up switched off) only cost one quick worker round that loads, not compiles.

Workers are fresh interpreters (``python -m tandem.core.warmup``), as with multiprocessing's
``spawn`` — forking a process that has initialised LLVM is not safe — but without
``spawn``'s re-import of the caller's ``__main__`` (a user script without a main guard
would run its whole backtest again in each worker). Workers that fail, or a platform that
cannot start processes, are reported and ignored: the main process then compiles what it
needs itself, exactly as without this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from tandem.core.jit_ready import _BLOCK, ready  # noqa: F401 - ready is part of this API

# subprocess and tempfile are imported where a worker is started: every core stage imports
# this module (for :func:`ready`), and most processes never start a worker.
if TYPE_CHECKING:
    import subprocess

    from tandem.core.manifest import Profile

log = structlog.get_logger(__name__)

#: Every job: one kernel family each, compiled with the types of a real run.
JOBS: tuple[str, ...] = ("ratings", "kernel", "mtf", "signals", "engine")
#: The worker groups of a backtest (one process per group). The main process compiles the
#: rating kernel itself (~8 s, the biggest compile) while one worker compiles the MTF
#: loop, the combiner and the engine (~10 s with its start-up) — about even on two cores.
BACKTEST_GROUPS: tuple[tuple[str, ...], ...] = (("mtf", "signals", "engine"),)
#: The daemon's (:meth:`daemon.strategy.ProfileStepper.prewarm`): the other way round — a
#: worker compiles the rating kernel (~8 s) while the daemon compiles the MTF loop (its
#: slices and its warm-up both run the batch loop), the combiner and the engine (~8 s).
DAEMON_GROUPS: tuple[tuple[str, ...], ...] = (("kernel",),)
#: ``TANDEM_WARMUP``: ``0`` = never start workers (the run compiles in-process), ``1`` =
#: always, unset or ``auto`` = when this process may run on two or more CPUs
#: (:func:`wants_worker`).
ENV_SWITCH = "TANDEM_WARMUP"
_BARS = 3  # bars of the dummy inputs: enough for every code path to be typed


def mode() -> str:
    """``never``, ``always`` or ``auto``, from ``TANDEM_WARMUP`` (the commands refuse any
    other word with their settings, :func:`tandem.core.settings.load_settings`; here it
    reads as ``auto``)."""
    from tandem.core.settings import warmup_mode

    try:
        return warmup_mode(os.environ.get(ENV_SWITCH))
    except ValueError:
        return "auto"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on this platform
        return os.cpu_count() or 1


def wants_worker() -> bool:
    """Whether a cold start compiles in two processes: always with ``TANDEM_WARMUP=1``,
    never with ``0``, otherwise when two or more CPUs are usable — a rule a user can
    predict. Measured on 2 cores, 100-pair backtest, pairs of cold runs: with a core to
    spare the two compile side by side (median 10.6 s instead of 11.4 s, 6.6 s at best);
    with one core kept busy the worker's own start-up (~1.5 CPU s) is not won back
    (14.7 s instead of 12.5 s median) — both well under the 20 s a first run may take. An
    earlier guess from how idle the cores looked was not predictable, and wrong as often.
    """
    how = mode()
    return how == "always" or (how == "auto" and usable_cpus() >= 2)


def cache_dir() -> Path:
    """The folder numba caches the core's kernels in (set by :mod:`tandem.core.numba_cache`)."""
    from tandem.core.numba_cache import numba_cache_folder

    return numba_cache_folder()


def job_key(profile: Profile, job: str) -> str:
    """Marker name of ``job`` for ``profile``: the job plus a hash of the settings that
    choose kernel *types* (timeframes, combiner, execution mode), not values."""
    typed = {
        "ratings": [profile.base_timeframe, list(profile.htfs)],
        "kernel": [],
        "mtf": [profile.base_timeframe, list(profile.htfs)],
        "signals": [],
        "engine": [profile.execution.mode],
    }[job]
    digest = hashlib.sha256(json.dumps(typed).encode()).hexdigest()[:10]
    return f"{job}-{digest}"


def _marker(profile: Profile, job: str, folder: Path | None = None) -> Path:
    return (folder or cache_dir()) / f"warm-{job_key(profile, job)}.ok"


def is_warm(profile: Profile, job: str) -> bool:
    """True when a worker (or a finished run, :func:`mark_warm`) left ``job``'s marker."""
    return _marker(profile, job).is_file()


def mark_warm(profile: Profile, jobs: Sequence[str], folder: Path | None = None,
              seconds: dict[str, float] | None = None) -> None:
    """Leave the markers of ``jobs`` (their kernels are in the cache now); best effort.
    ``seconds``: how long each job took, kept in its marker (for benchmarks)."""
    for job in jobs:
        path = _marker(profile, job, folder)
        if path.is_file() and seconds is None:
            continue  # keep the worker's timing
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"seconds": (seconds or {}).get(job)}))
        except OSError:
            pass  # an unwritable cache folder: numba does not cache there either


def job_seconds(profile: Profile, job: str) -> float | None:
    """Seconds the worker spent on ``job`` (compile or cache load plus a tiny run), if a
    worker ran it for the current cache folder; None otherwise."""
    try:
        return json.loads(_marker(profile, job).read_text()).get("seconds")
    except (OSError, ValueError, AttributeError):
        return None


# --------------------------------------------------------------------------- the jobs


def _dummy_bars(n_assets: int) -> tuple[np.ndarray, ...]:
    """``_BARS`` valid hourly bars for ``n_assets`` (open ts, o, h, l, c, v)."""
    ts = np.arange(_BARS, dtype=np.int64) * 3_600_000
    c = np.full((_BARS, n_assets), 100.0)
    return ts, c, c * 1.01, c * 0.99, c.copy(), np.ones((_BARS, n_assets))


def _job_ratings(profile: Profile) -> None:
    """MTF ratings, kernel included, through the backtest's own batch path."""
    from tandem.core.signals import ratings_from_candles

    syms = list(profile.assets)
    ts, o, h, lo, c, v = _dummy_bars(len(syms))
    ratings_from_candles(profile, ts, o, h, lo, c, v, syms)


def _job_kernel(profile: Profile) -> None:
    """The rating kernel itself (the biggest compile)."""
    from tandem.core.indicators.rating import rating_kernel

    rating_kernel()


def _job_mtf(profile: Profile) -> None:
    """The MTF loop (the backtest's call of :func:`tandem.core.mtf.compute_mtf_ratings`) without
    compiling the rating kernel: the loop gets the kernel as an address, so its machine
    code does not depend on the kernel; a stand-in of the same C signature that compiles
    in a blink lets the dummy run call something real."""
    from tandem.core.indicators.rating import stand_in_kernel
    from tandem.core.mtf import MtfConfig, compute_mtf_ratings, use_htf_mask

    syms = list(profile.assets)
    ts, o, h, lo, c, v = _dummy_bars(len(syms))
    compute_mtf_ratings(MtfConfig.from_profile(profile), ts, o, h, lo, c, v,
                        use_htf_mask(profile, syms), kernel=stand_in_kernel().address)


def _job_signals(profile: Profile) -> None:
    """The signal combiner on ratings shaped as the MTF batch returns them."""
    from tandem.core.manifest import RATING_COLUMNS
    from tandem.core.signals import compute_signals

    n = len(profile.assets)
    ratings = np.zeros((_BARS, n, len(profile.timeframes), len(RATING_COLUMNS)))
    compute_signals(profile, ratings, np.arange(1, _BARS + 1, dtype=np.int64) * 3_600_000)


def _job_engine(profile: Profile) -> None:
    """The engine's batch kernel, typed for the profile's execution mode."""
    from tandem.core.engine import EngineConfig, run_batch_raw

    n = len(profile.assets)
    ts, o, h, lo, c, _ = _dummy_bars(n)
    sig = np.zeros((_BARS, n)) if profile.execution.mode == "discrete" else np.full((_BARS, n), np.nan)
    run_batch_raw(EngineConfig(**profile.engine_params()), ts + 3_600_000, o, h, lo, c, sig)


_JOBS = {"ratings": _job_ratings, "kernel": _job_kernel, "mtf": _job_mtf, "signals": _job_signals,
         "engine": _job_engine}


def run_jobs(profile: Profile, jobs: Sequence[str]) -> dict[str, float]:
    """Run ``jobs`` in this process (compile or load their kernels); seconds per job."""
    out = {}
    for job in jobs:
        t0 = time.perf_counter()
        _JOBS[job](profile)
        out[job] = time.perf_counter() - t0
    return out


def _worker(spec_path: str) -> None:
    """Worker process entry (``python -m tandem.core.warmup SPEC``): same cache folder as the
    parent, then the jobs, then the markers."""
    from tandem.core.numba_cache import use_numba_cache_folder

    spec = json.loads(Path(spec_path).read_text())
    # Before any kernel module is imported: numba reads CACHE_DIR when a cached dispatcher
    # is created. The parent's folder wins over whatever this process would derive.
    use_numba_cache_folder(spec["folder"])
    from tandem.core.manifest import parse_manifest

    name = spec["name"]
    profile = parse_manifest({"profiles": {name: spec["profile"]}}, source="warmup").profile(name)
    seconds = run_jobs(profile, spec["jobs"])
    mark_warm(profile, spec["jobs"], Path(spec["folder"]), seconds=seconds)


# --------------------------------------------------------------------------- the driver


@dataclass
class Warmup:
    """Handle of started workers; :meth:`wait` before using their kernels."""

    groups: list[list[str]]
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)  # each worker's stderr (a temporary file)
    started: float = field(default_factory=time.perf_counter)
    error: str | None = None

    def wait(self, job: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the worker of ``job`` (default: all workers). Returns ``{"groups",
        "seconds", "failed"}``; ``failed`` lists the awaited groups whose worker did not
        exit cleanly, with the end of its stderr (the main process then compiles those
        kernels itself)."""
        import subprocess

        failed = []
        deadline = None if timeout is None else time.monotonic() + timeout
        for group, proc, log in zip(self.groups, self.procs, self.logs, strict=True):
            if job is not None and job not in group:
                continue
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                code = proc.wait(left)
            except subprocess.TimeoutExpired:
                code = None
            if code != 0:
                log.seek(0)
                failed.append({"jobs": group, "exit": code,
                               "stderr": log.read().decode(errors="replace")[-2000:]})
        info: dict[str, Any] = {"groups": self.groups,
                                "seconds": time.perf_counter() - self.started, "failed": failed}
        if self.error:
            info["error"] = self.error
        return info

    def cancel(self) -> None:
        """Stop workers still running (the run failed before it needed them)."""
        import subprocess

        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_warmup(
    profile: Profile,
    groups: Sequence[Sequence[str]] = BACKTEST_GROUPS,
    *,
    force: bool = False,
) -> Warmup:
    """Start one worker process per group of jobs that is not warm yet; returns at once.

    Does nothing (an empty :class:`Warmup`) when every job is marked warm, or (unless
    ``force``) when :func:`wants_worker` says no; or when processes cannot be started.
    """
    todo = [[j for j in g if not is_warm(profile, j)] for g in groups]
    todo = [g for g in todo if g]
    if not todo:
        return Warmup(groups=[])
    if not (force or wants_worker()):
        return Warmup(groups=[])
    import subprocess
    import tempfile

    w = Warmup(groups=todo)
    folder = cache_dir()
    name = profile.name or "profile"
    # The workers import this very core, wherever it lives (checkout or installed): they
    # start in the folder that holds the `tandem` package, first on a `-m` child's path.
    import tandem

    root = str(Path(tandem.__file__).resolve().parents[1])
    try:
        for group in todo:
            spec = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="tandem-warmup-",
                                               delete=False)
            with spec:
                json.dump({"profile": profile.model_dump(mode="json"), "name": name,
                           "jobs": list(group), "folder": str(folder)}, spec)
            err = tempfile.TemporaryFile()
            # A fresh interpreter, like multiprocessing's "spawn" (forking a process that
            # has initialised LLVM is unsafe), but without re-importing the caller's
            # __main__: a script without a main guard would run again in every worker.
            proc = subprocess.Popen(
                [sys.executable, "-m", "tandem.core.warmup", spec.name], cwd=root,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
            w.procs.append(proc)
            w.logs.append(err)
    except OSError as exc:  # e.g. a sandbox that forbids new processes
        w.groups = w.groups[: len(w.procs)]
        w.error = f"{type(exc).__name__}: {exc}"
    return w


# --------------------------------------------------------------------------- the block


class WarmupBlock:
    """What a :func:`jit_warmup` block holds: its worker (None: none started) and the jobs
    no stage has waited for yet. ``waits``: seconds each stage waited, by job."""

    def __init__(self, worker: Warmup | None) -> None:
        self.worker = worker
        self.pending = {j for g in worker.groups for j in g} if worker is not None else set()
        self.waits: dict[str, float] = {}

    def ready(self, job: str) -> None:
        """Wait (once) for the worker compiling ``job``; a failed worker only costs time:
        the stage then compiles in-process, as without a worker."""
        if job not in self.pending or self.worker is None:
            return
        self.pending.discard(job)
        t0 = time.perf_counter()
        info = self.worker.wait(job)
        self.waits[job] = time.perf_counter() - t0
        if info["failed"] or info.get("error"):
            log.warning("jit_warmup_failed", job=job, failed=info["failed"],
                        error=info.get("error"),
                        hint="the run compiles in-process instead (slower first start)")


@contextmanager
def jit_warmup(
    profile: Profile,
    groups: Sequence[Sequence[str]] = BACKTEST_GROUPS,
    *,
    enabled: bool | None = None,
    marks: Sequence[str] = JOBS,
    timings: dict[str, float] | None = None,
) -> Iterator[WarmupBlock]:
    """Run a pipeline with JIT warm-up workers: ``with jit_warmup(profile):`` around the
    whole run, nothing else in the driver.

    Starts the workers of ``groups`` (:func:`start_warmup`; ``enabled``: True = always,
    False = never, None = as ``TANDEM_WARMUP`` says) and returns at once; inside the block
    each core stage waits for its worker through :func:`ready`. An exception leaving the
    block stops the workers (no run needs those kernels now); a clean exit marks ``marks``
    warm (the block ran them, so they are in the cache and the next run spawns nothing).
    ``timings``: gets ``wait_<job>`` = seconds a stage waited for its worker.
    """
    worker = start_warmup(profile, groups, force=bool(enabled)) if enabled is not False else None
    block = WarmupBlock(worker)
    token = _BLOCK.set(block)
    try:
        yield block
    except BaseException:
        if worker is not None:
            worker.cancel()
        raise
    finally:
        _BLOCK.reset(token)
        if timings is not None:
            timings.update({f"wait_{job}": s for job, s in block.waits.items()})
    mark_warm(profile, marks)


if __name__ == "__main__":
    try:
        _worker(sys.argv[1])
    finally:
        Path(sys.argv[1]).unlink(missing_ok=True)
