"""Where chunks of trials run: in this process, or on a Dask cluster (local or remote).

Both executors call the same :func:`tandem.backtest.sweep.evaluate.evaluate_chunk`. The Dask one
scatters the shared data to every worker once (``broadcast=True``); each task then carries
only its trials. A worker that dies mid-task has its tasks rerun elsewhere by the
scheduler (the driver keys results by trial, so nothing is counted twice).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pandas as pd
from tandem.backtest.runner import DataError
from tandem.backtest.sweep.evaluate import evaluate_chunk

#: Seconds to reach a remote scheduler before giving up (the CLI promises < 10 s).
CONNECT_TIMEOUT_S = 5


class ClusterError(DataError):
    """The Dask scheduler cannot be reached or the cluster failed (exit 1)."""


class LocalExecutor:
    """Chunks in this process: on ``threads`` threads at once (the default, one per core),
    or one after another (``--workers 0``; tests, debugging).

    The trial kernel releases the GIL, so threads share the cores as Dask's processes do,
    without a cluster to start and the ratings to copy into each process: a 9-trial sweep of
    10 assets took 10.2 s on a local cluster of 2 processes and 3.0 s in this process.
    """

    def __init__(self, data: Any, base: Any, threads: int = 1) -> None:
        self.data, self.base = data, base
        self.n_workers = max(1, threads)

    def run(self, chunks: list[list[tuple[int, dict]]]) -> Iterator[tuple[int, pd.DataFrame]]:
        if self.n_workers == 1 or len(chunks) <= 1:
            for k, trials in enumerate(chunks):
                yield k, evaluate_chunk(self.data, self.base, trials)
            return
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(self.n_workers, thread_name_prefix="sweep") as pool:
            futs = {pool.submit(evaluate_chunk, self.data, self.base, trials): k
                    for k, trials in enumerate(chunks)}
            try:
                for f in as_completed(futs):
                    yield futs[f], f.result()
            finally:  # an error (or Ctrl-C) in the caller: start no more chunks
                for f in futs:
                    f.cancel()

    def close(self) -> None:
        pass


class DaskExecutor:
    """Chunks as Dask tasks on a ``LocalCluster`` (``workers``) or at ``scheduler``."""

    def __init__(self, data: Any, base: Any, *, workers: int | None = None,
                 scheduler: str | None = None) -> None:
        from distributed import Client, LocalCluster

        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            # distributed logs every connection at INFO on its own handler; the CLI's
            # --log-level debug lets it through.
            logging.getLogger("distributed").setLevel(logging.ERROR)
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        else:
            n = workers or os.cpu_count() or 1
            env = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
            for k in ("NUMBA_CACHE_DIR",):
                if k in os.environ:
                    env[k] = os.environ[k]
            # The scheduler's HTTP server (health/metrics) always listens: on 127.0.0.1 and a
            # free port, not 8787, with the dashboard off. silence_logs: worker start/stop
            # chatter and the nanny's "still alive after 4 s, killing" on a busy machine.
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None, host="127.0.0.1", env=env,
                                        silence_logs=logging.ERROR,
                                        scheduler_kwargs={"dashboard": False,
                                                          "dashboard_address": "127.0.0.1:0"})
            self.client = Client(self.cluster)
        info = self.client.scheduler_info()
        self.n_workers = max(1, len(info.get("workers", {})))
        # The ratings travel once to each worker, not once per task.
        self.data_f = self.client.scatter(data, broadcast=True)
        self.base_f = self.client.scatter(base, broadcast=True)

    def run(self, chunks: list[list[tuple[int, dict]]]) -> Iterator[tuple[int, pd.DataFrame]]:
        from distributed import as_completed

        futs = {}
        for k, trials in enumerate(chunks):
            f = self.client.submit(evaluate_chunk, self.data_f, self.base_f, trials,
                                   pure=False, retries=3)
            futs[f] = k
        for f in as_completed(list(futs)):
            yield futs[f], f.result()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def make_executor(data: Any, base: Any, workers: int | None, scheduler: str | None) -> Any:
    """``scheduler``: that Dask cluster; else ``workers`` N >= 1: a local Dask cluster of N
    processes; 0: this process, one chunk at a time; None: this process, a thread per core."""
    if scheduler is None and workers is None:
        return LocalExecutor(data, base, threads=os.cpu_count() or 1)
    if scheduler is None and workers == 0:
        return LocalExecutor(data, base)
    return DaskExecutor(data, base, workers=workers, scheduler=scheduler)


def connect_check(scheduler: str) -> None:
    """Fail fast (before loading data) when a remote scheduler is unreachable."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    if u.scheme not in ("tcp", "tls") or not u.hostname:
        raise ClusterError(f"--scheduler must look like tcp://HOST:8786, got {scheduler!r}")
    try:
        with socket.create_connection((u.hostname, u.port or 8786), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} "
                           f"({exc.strerror or exc})") from None
