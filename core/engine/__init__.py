"""The trading engine: SL/TP state machine, discrete and portfolio modes (DESIGN.md "Execution").

Entries are funded from free cash: with ``long_short`` a short's proceeds and as much again
are locked until it is covered (vectorbt's ``lock_cash``; ``kernels.py``, "Funding").

Public API:

* :class:`EngineConfig` — validated settings with the manifest's names;
* :class:`Engine` — per-slice stepping for the daemon, ``to_bytes``/``from_bytes``;
* :func:`run_batch` / :func:`run_batch_raw` — the backtest's numba loop over the same step;
* the kernel :func:`tandem.core.engine.kernels.run_batch_nb` (both drivers) and array layouts in
  :mod:`tandem.core.engine.layout`.
"""

from tandem.core.engine.api import BatchResult, Engine, run_batch, run_batch_raw
from tandem.core.engine.params import EngineConfig

__all__ = ["BatchResult", "Engine", "EngineConfig", "run_batch", "run_batch_raw"]
