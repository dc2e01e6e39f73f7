"""Tandem: a crypto paper-trading daemon and a backtester that share one numba core.

The code lives in the repository's top-level folders and installs under this one name
(``setup.py`` maps them), so it never collides with another distribution's ``core`` or
``daemon`` (python-daemon's module is ``daemon``):

* :mod:`tandem.core` — ratings, MTF, the SL/TP engine, manifest and settings (``core/``);
* :mod:`tandem.backtest` — ``tandem-backtest``: run, report, sweep, reconcile (``backtest/``);
* :mod:`tandem.daemon` — ``tandem-daemon``: the live paper-trading service (``daemon/``).
"""
