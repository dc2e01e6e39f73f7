"""``tandem-backtest sweep``: parameter search (grid, random, TPE), walk-forward folds,
overfitting statistics and distribution over Dask (DESIGN.md "Research").

Modules: :mod:`.space` (the search space and trial profiles), :mod:`.search` (trial
generators), :mod:`.data` (one rating pass, segments, fingerprint), :mod:`.driver` (chunks of
trials in-process or on a Dask cluster, resume, results), :mod:`.profile_out`
(``--write-profile``); the kernels live in :mod:`tandem.core.trials`.
"""
