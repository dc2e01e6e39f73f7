"""Trial generators: full grid, seeded random, and Optuna's TPE through ask/tell.

Grid and random yield every trial up front. TPE is asked for a fixed-size batch
(:data:`TPE_BATCH`, independent of the worker count, so a seed gives the same trials on any
cluster), the batch is evaluated, and the results are told back before the next ask.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from tandem.backtest.sweep.space import Dim

TPE_BATCH = 16


def grid_trials(dims: list[Dim]) -> list[dict[str, Any]]:
    """The full product, last dimension fastest (file order)."""
    axes = [d.grid() for d in dims]
    return [dict(zip([d.path for d in dims], combo, strict=True))
            for combo in itertools.product(*axes)]


def grid_size(dims: list[Dim]) -> int:
    n = 1
    for d in dims:
        n *= len(d.grid())
    return n


def random_trials(dims: list[Dim], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` trials drawn with ``numpy.random.default_rng(seed)``, dimension by dimension."""
    rng = np.random.default_rng(seed)
    return [{d.path: d.sample(rng) for d in dims} for _ in range(n)]


def _distribution(d: Dim) -> Any:
    import optuna

    if d.values is not None:
        return optuna.distributions.CategoricalDistribution(list(d.values))
    if d.integer:
        return optuna.distributions.IntDistribution(int(d.low), int(d.high),
                                                    step=int(d.step or 1), log=d.log)
    high = d.high
    if d.step is not None:
        # Optuna wants high = low + k*step exactly.
        k = int(np.floor((d.high - d.low) / d.step + 1e-9))
        high = round(d.low + k * d.step, 12)
    return optuna.distributions.FloatDistribution(d.low, high, step=d.step, log=d.log)


class TpeSearch:
    """Optuna TPE, seeded, driven by ask/tell (maximising the objective)."""

    def __init__(self, dims: list[Dim], seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.dims = dims
        self.dist = {d.path: _distribution(d) for d in dims}
        self.study = optuna.create_study(direction="maximize",
                                         sampler=optuna.samplers.TPESampler(seed=seed))
        self.pending: dict[int, Any] = {}

    def ask(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            tr = self.study.ask(self.dist)
            params = {d.path: _plain(tr.params[d.path]) for d in self.dims}
            self.pending[len(self.pending)] = tr
            out.append(params)
        return out

    def tell(self, values: list[float]) -> None:
        """Values of the last asked batch, in order (NaN = failed/invalid trial)."""
        from optuna.trial import TrialState

        trials = [self.pending[k] for k in sorted(self.pending)]
        for tr, v in zip(trials, values, strict=True):
            if v is None or not np.isfinite(v):
                self.study.tell(tr, state=TrialState.FAIL)
            else:
                self.study.tell(tr, float(v))
        self.pending.clear()


def _plain(v: Any) -> Any:
    """numpy scalars → Python, and floats from a stepped range snapped like the grid."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 12)
    return v
