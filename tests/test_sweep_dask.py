"""The sweep on a real Dask LocalCluster (worker processes on 127.0.0.1): same results as
in-process, a killed worker's chunks rerun, an unreachable scheduler is a quick exit 1."""

from __future__ import annotations

import os
import signal
import time

import pandas as pd
import pytest
from tandem.backtest.cli import main

from tests.sweep_fixtures import make_inputs, sweep_args

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.backtest.sweep.space import load_space
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource

    inp = make_inputs(tmp_path_factory.mktemp("dask"))
    base = load_manifest(inp["manifest"]).profile("t")
    data = load_sweep_data(base, CsvFolderSource(inp["data"], timeframe="1h"))
    return inp, base, data, load_space(inp["space"], base)


def _sweep(setup, executor, out):
    from tandem.backtest.sweep.driver import SweepConfig, run_sweep

    _, base, data, dims = setup
    return run_sweep(base, data, dims, SweepConfig(progress=False), out, executor).results


def test_local_cluster_equals_in_process_and_survives_a_killed_worker(setup, tmp_path,
                                                                      monkeypatch):
    import tandem.backtest.sweep.driver as drv
    from tandem.backtest.sweep import executor as ex

    _, base, data, _ = setup
    local = _sweep(setup, ex.LocalExecutor(data, base), tmp_path / "local")
    monkeypatch.setattr(drv, "MAX_CHUNK", 1)  # 18 tasks
    dask_ex = ex.DaskExecutor(data, base, workers=2)
    try:
        assert dask_ex.n_workers == 2
        same = _sweep(setup, dask_ex, tmp_path / "dask")
        pd.testing.assert_frame_equal(same, local)  # exactly the in-process results

        # Kill one worker process while its tasks run: the scheduler reruns them elsewhere.
        pids = dask_ex.client.run(os.getpid)
        monkeypatch.setattr(ex, "evaluate_chunk", __import__(
            "tests.sweep_fixtures", fromlist=["x"]).slow_evaluate_chunk)
        real_run = dask_ex.run

        def run_and_kill(chunks):
            for k, (i, df) in enumerate(real_run(chunks)):
                if k == 0:
                    os.kill(next(iter(pids.values())), signal.SIGKILL)
                yield i, df

        dask_ex.run = run_and_kill
        survived = _sweep(setup, dask_ex, tmp_path / "killed")
    finally:
        dask_ex.close()
    assert list(survived["trial"]) == list(range(18))  # every trial, once
    pd.testing.assert_frame_equal(survived, local)


def test_unreachable_scheduler_exits_1_quickly(setup, tmp_path, capsys):
    inp = setup[0]
    t0 = time.monotonic()
    code = main(sweep_args(inp, tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9"))
    assert code == 1 and time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach the Dask scheduler")


def test_help_imports_no_dask_or_optuna():
    # (numba: the reconcile parser already imports it through backtest.reconcile.classify)
    import subprocess
    import sys

    code = ("import sys; from tandem.backtest.cli import build_parser; build_parser().format_help(); "
            "bad = [m for m in ('dask', 'distributed', 'optuna') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())


def test_threads_in_process_equal_one_at_a_time(setup, tmp_path, monkeypatch):
    """The default executor (no --workers): a thread per core in this process. The trial
    kernel releases the GIL, so chunks run side by side; the results are those of one chunk
    after another, whatever order the chunks finish in."""
    import tandem.backtest.sweep.driver as drv
    from tandem.backtest.sweep import executor as ex
    from tandem.core.trials import run_trials_nb

    _, base, data, _ = setup
    assert run_trials_nb.targetoptions.get("nogil") is True
    one = _sweep(setup, ex.make_executor(data, base, 0, None), tmp_path / "one")
    monkeypatch.setattr(drv, "MAX_CHUNK", 1)  # 18 chunks over the threads
    threaded = ex.make_executor(data, base, None, None)
    assert isinstance(threaded, ex.LocalExecutor) and threaded.n_workers == (os.cpu_count() or 1)
    threaded.n_workers = 3  # more threads than chunks finish in order, on any machine
    pd.testing.assert_frame_equal(_sweep(setup, threaded, tmp_path / "threads"), one)


def test_weighted_portfolio_trials_on_threads_equal_one_at_a_time(tmp_path, monkeypatch):
    """Weighted portfolio trials (the optimizers' kernel releases the GIL too) on threads:
    the results of one chunk after another, also with the weighting settings swept."""
    import json

    import tandem.backtest.sweep.driver as drv
    from tandem.backtest.sweep import executor as ex
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.backtest.sweep.space import load_space
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource
    from tandem.core.weighting import weights_rows_nb

    assert weights_rows_nb.targetoptions.get("nogil") is True
    inp = make_inputs(tmp_path / "in", days=40)
    doc = json.loads(inp["manifest"].read_text())
    doc["profiles"]["t"].update(execution={"mode": "portfolio"},
                                portfolio={"weighting": "min_variance", "lookback": 48})
    inp["manifest"].write_text(json.dumps(doc))
    inp["space"].write_text("entry_threshold: [0.05, 0.1]\nportfolio.max_weight: [0.3, 0.5, 0.8]\n"
                            "portfolio.weighting: [min_variance, hrp]\n"
                            "portfolio.turnover_cap: [null, 0.5]\n")
    base = load_manifest(inp["manifest"]).profile("t")
    data = load_sweep_data(base, CsvFolderSource(inp["data"], timeframe="1h"))
    setup = (inp, base, data, load_space(inp["space"], base))
    one = _sweep(setup, ex.LocalExecutor(data, base), tmp_path / "one")
    assert one["valid"].all() and len(one) == 24
    monkeypatch.setattr(drv, "MAX_CHUNK", 1)
    threads = _sweep(setup, ex.LocalExecutor(data, base, threads=3), tmp_path / "threads")
    pd.testing.assert_frame_equal(threads, one)

