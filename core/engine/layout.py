"""Array layouts shared by the kernels, the Python wrappers and the journal.

Engine state is two plain ``float64`` arrays so it can be stepped from numba, saved as
bytes, and restored bit for bit:

* ``astate[n_assets, N_ASTATE]``: one row per asset (manifest order);
* ``pstate[N_PSTATE]``: portfolio-wide values.

Fills leave the kernels as rows of ``fills[cap, N_FILL_COLS]`` (float64; timestamps in ms
are exact in float64 up to 2**53).
"""

from __future__ import annotations

# --- per-asset state columns ---
A_POS = 0  # position in base units (negative = short)
A_ENTRY = 1  # entry (fill) price; average price when a portfolio position was added to
A_SL = 2  # stop-loss level (price), NaN = none
A_TP = 3  # take-profit level (price), NaN = none
A_PEAK = 4  # trailing extreme since entry: highest high (long) / lowest low (short)
A_BLOCK = 5  # re-arm block: +1 = long entries blocked, -1 = short entries blocked, 0 = armed
A_LAST_CLOSE = 6  # last seen close (values the position on missing bars), NaN before any bar
N_ASTATE = 7

# --- portfolio state ---
S_CASH = 0
S_STEPS = 1  # number of slices stepped
S_LAST_TS = 2  # ts_close of the last slice stepped (-1 before any)
# Discrete entries skipped, by cause: one per (slice, asset) whose signal asked for an entry
# the engine did not make (flat, not blocked by the re-arm rule). Levels, not edges: a signal
# held for 5 bars that cannot be funded counts 5. Each skip has one cause, checked in this
# order: no positive size (equity <= 0) = unfunded; notional below min_trade_value; spend
# (notional + fee) above free cash = unfunded. Portfolio rebalances are not counted.
S_SKIP_UNFUNDED = 3
S_SKIP_MIN_TRADE = 4
N_PSTATE = 5

# Names of the skip counters (stats.json ``entries_skipped``, the /metrics ``cause`` label).
SKIP_CAUSES = (("unfunded", S_SKIP_UNFUNDED), ("below_min_trade_value", S_SKIP_MIN_TRADE))

# --- fill row columns ---
F_TS = 0  # ts_close of the bar (ms)
F_ASSET = 1  # asset index (manifest order)
F_SIDE = 2  # +1 buy, -1 sell
F_QTY = 3  # base units, > 0
F_PRICE = 4  # fill price (after slippage for signal fills)
F_FEE = 5  # quote currency
F_REASON = 6  # REASON_* code
F_INTRABAR = 7  # INTRABAR_* code of the policy that decided an ambiguous bar, else 0
F_POS_AFTER = 8
F_CASH_AFTER = 9
N_FILL_COLS = 10

REASON_ENTRY = 0
REASON_EXIT = 1
REASON_STOP_LOSS = 2
REASON_TAKE_PROFIT = 3
REASON_TRAILING_STOP = 4
REASON_REBALANCE = 5
REASON_NAMES = ("entry", "exit", "stop_loss", "take_profit", "trailing_stop", "rebalance")

# The most fills one asset can produce in one slice (stop or signal exit, then an entry in
# the opposite direction in long_short). Drivers reserve this much buffer per asset.
MAX_FILLS_PER_ASSET = 2
