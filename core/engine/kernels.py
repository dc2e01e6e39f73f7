"""Numba kernels of the trading engine: one loop over time slices, :func:`run_batch_nb`.

Pure functions over explicit arrays (see :mod:`tandem.core.engine.layout`). The backtest calls
:func:`run_batch_nb` over its whole history; the daemon calls the very same kernel with a
one-slice batch for each closed slice, so both drivers are bit-identical by construction.
No ``fastmath``: every float comparison below states which side counts.

Order of events inside one slice (DESIGN.md, "Execution"):

1. exits of open positions, asset by asset: the open first (a gap through SL or TP fills at
   the open), then SL/TP inside the bar with the intrabar policy when both are inside;
2. trailing extremes update with the bar's high (long) / low (short), *after* the check;
3. discrete mode: signal exits (and the exit leg of a reversal), then entries in asset
   order sized on the equity after exits and funded from *free cash* (below); portfolio
   mode: on rebalance slices, sells then buys towards the target weights. A discrete entry
   the engine does not make (unfundable, below ``min_trade_value``) is counted in the
   portfolio state by cause (``layout.S_SKIP_*``).

Funding (discrete mode, long_short): a short's proceeds land in cash (cash, equity and the
fills' ``cash_after`` keep their meaning) but are borrowed, not free. An entry, long or
short, is funded only from free cash = cash - 2 x each open short's notional at its fill
price (:func:`free_cash_nb`): the proceeds plus as much again of our own cash as
collateral, vectorbt's ``free_cash`` with ``lock_cash=True`` (its ``debt`` = the short's
size x its fill price). So ``size_pct`` never adds up to leverage: 100 % short then a long
signal = the long is skipped, not 2x gross. Exits are never held back. Long-only (and
portfolio, long-only) runs have no shorts: free cash is the cash, results unchanged.

A position entered at a bar's close is never checked against that bar (step 1 ran first).

Compile-time shape (a cold start compiles every kernel here; see ``bench/backtest.py``):
numba links each callee's LLVM IR into its caller and optimizes the whole again, so every
call level re-optimizes everything below it, and every distinct argument typing of a helper
is one more compile. Hence: the per-slice step *is* the body of :func:`run_batch_nb` (the
daemon calls it with a one-slice batch, so both drivers run the very same machine code);
each helper is called with one typing only (codes travel as float64, never as int
constants, which numba would type as distinct literals); and the mode is chosen by the type
of ``work`` (None = discrete), so a run compiles only its own mode's branch.
"""

from __future__ import annotations

import numpy as np
from tandem.core.engine.layout import (
    A_BLOCK,
    A_ENTRY,
    A_LAST_CLOSE,
    A_PEAK,
    A_POS,
    A_SL,
    A_TP,
    F_ASSET,
    F_CASH_AFTER,
    F_FEE,
    F_INTRABAR,
    F_POS_AFTER,
    F_PRICE,
    F_QTY,
    F_REASON,
    F_SIDE,
    F_TS,
    MAX_FILLS_PER_ASSET,
    REASON_ENTRY,
    REASON_EXIT,
    REASON_REBALANCE,
    REASON_STOP_LOSS,
    REASON_TAKE_PROFIT,
    REASON_TRAILING_STOP,
    S_CASH,
    S_LAST_TS,
    S_SKIP_MIN_TRADE,
    S_SKIP_UNFUNDED,
    S_STEPS,
)
from tandem.core.engine.params import (
    INTRABAR_ADAPTIVE,
    INTRABAR_NONE,
    INTRABAR_OHLC,
    P_EXIT_ON_SIGNAL,
    P_FEE,
    P_INTRABAR,
    P_LONG_SHORT,
    P_MAX_WEIGHT,
    P_MIN_TRADE,
    P_RISK_PCT,
    P_SIZE_PCT,
    P_SIZING,
    P_SL,
    P_SLIP,
    P_TP,
    P_TRAIL,
    SIZING_RISK,
)
from tandem.core.jit import njit

# Reason / intrabar codes as float64 (the fill row's dtype). Passed as Python int constants
# they would be typed as numba literals, compiling one copy of each helper per value.
_ENTRY = float(REASON_ENTRY)
_EXIT = float(REASON_EXIT)
_STOP_LOSS = float(REASON_STOP_LOSS)
_TAKE_PROFIT = float(REASON_TAKE_PROFIT)
_TRAILING_STOP = float(REASON_TRAILING_STOP)
_REBALANCE = float(REASON_REBALANCE)
_NO_EXIT = -1.0
_IB_NONE = float(INTRABAR_NONE)


@njit(cache=True)
def emit_fill_nb(
    fills, n, ts, asset, side, qty, price, fee, reason, intrabar, pos_after, cash_after
):
    """Write one fill row at index ``n``; return ``n + 1``."""
    fills[n, F_TS] = ts
    fills[n, F_ASSET] = asset
    fills[n, F_SIDE] = side
    fills[n, F_QTY] = qty
    fills[n, F_PRICE] = price
    fills[n, F_FEE] = fee
    fills[n, F_REASON] = reason
    fills[n, F_INTRABAR] = intrabar
    fills[n, F_POS_AFTER] = pos_after
    fills[n, F_CASH_AFTER] = cash_after
    return n + 1


@njit(cache=True)
def equity_nb(astate, pstate):
    """Cash plus every position valued at its last seen close."""
    eq = pstate[S_CASH]
    for i in range(astate.shape[0]):
        pos = astate[i, A_POS]
        if pos != 0.0:
            eq += pos * astate[i, A_LAST_CLOSE]
    return eq


@njit(cache=True)
def free_cash_nb(astate, pstate):
    """Cash an entry may spend: cash minus twice each open short's notional at its fill
    price (its proceeds, and as much again locked as collateral). Shorts are never added to,
    so ``A_ENTRY`` is the fill price of the whole short: vectorbt's ``debt``."""
    free = pstate[S_CASH]
    for i in range(astate.shape[0]):
        pos = astate[i, A_POS]
        if pos < 0.0:
            free += 2.0 * pos * astate[i, A_ENTRY]
    return free


@njit(cache=True)
def open_position_nb(params, astate, i, qty_signed, price):
    """Set entry, SL/TP levels (anchored to the fill price) and the trailing extreme."""
    astate[i, A_POS] = qty_signed
    astate[i, A_ENTRY] = price
    sl = params[P_SL]
    tp = params[P_TP]
    if qty_signed > 0.0:
        astate[i, A_SL] = price * (1.0 - sl) if sl > 0.0 else np.nan
        astate[i, A_TP] = price * (1.0 + tp) if tp > 0.0 else np.nan
    else:
        astate[i, A_SL] = price * (1.0 + sl) if sl > 0.0 else np.nan
        astate[i, A_TP] = price * (1.0 - tp) if tp > 0.0 else np.nan
    # The trailing extreme starts at the fill price: the entry bar's own high/low happened
    # before the fill (at the close), so it must not move the stop.
    astate[i, A_PEAK] = price


@njit(cache=True)
def close_position_nb(astate, i):
    """Reset a flat asset's position fields (the re-arm block is kept)."""
    astate[i, A_POS] = 0.0
    astate[i, A_ENTRY] = np.nan
    astate[i, A_SL] = np.nan
    astate[i, A_TP] = np.nan
    astate[i, A_PEAK] = np.nan


@njit(cache=True)
def check_exit_nb(params, astate, i, o, h, lo):
    """Decide whether an open position exits on this bar.

    Returns ``(reason, price, intrabar_code)`` (codes as float64) with ``reason = -1`` when
    nothing exits.
    The effective stop is the tighter of the fixed SL and the trailing level (ties count as
    ``stop_loss``). Open first: an open at or through the stop (or the target) fills at the
    open, the stop side checked first. Then inside the bar: the stop fills at its level if
    ``low <= stop`` (long), the target at its level if ``high >= target``; if both are inside
    the bar the ``intrabar`` policy decides and its code is returned.
    """
    pos = astate[i, A_POS]
    sl = astate[i, A_SL]
    tp = astate[i, A_TP]
    trail = params[P_TRAIL]
    long = pos > 0.0
    stop = sl
    stop_reason = _STOP_LOSS
    if trail > 0.0:
        tl = astate[i, A_PEAK] * (1.0 - trail) if long else astate[i, A_PEAK] * (1.0 + trail)
        # NaN comparisons are false, so "no fixed SL" lets the trailing level win.
        if np.isnan(stop) or (long and tl > stop) or ((not long) and tl < stop):
            stop = tl
            stop_reason = _TRAILING_STOP
    has_stop = not np.isnan(stop)
    has_tp = not np.isnan(tp)
    if long:
        if has_stop and o <= stop:
            return stop_reason, o, _IB_NONE
        if has_tp and o >= tp:
            return _TAKE_PROFIT, o, _IB_NONE
        stop_hit = has_stop and lo <= stop
        tp_hit = has_tp and h >= tp
    else:
        if has_stop and o >= stop:
            return stop_reason, o, _IB_NONE
        if has_tp and o <= tp:
            return _TAKE_PROFIT, o, _IB_NONE
        stop_hit = has_stop and h >= stop
        tp_hit = has_tp and lo <= tp
    if stop_hit and tp_hit:
        policy = int(params[P_INTRABAR])
        if policy == INTRABAR_OHLC:
            # Path O -> H -> L -> C: the high comes first, which is the target of a long and
            # the stop of a short.
            tp_first = long
        elif policy == INTRABAR_ADAPTIVE:
            # The extreme nearer to the open is reached first; a tie counts as the stop.
            up = h - o
            down = o - lo
            if long:
                tp_first = up < down
            else:
                tp_first = down < up
        else:
            tp_first = False
        if tp_first:
            return _TAKE_PROFIT, tp, float(policy)
        return stop_reason, stop, float(policy)
    if stop_hit:
        return stop_reason, stop, _IB_NONE
    if tp_hit:
        return _TAKE_PROFIT, tp, _IB_NONE
    return _NO_EXIT, np.nan, _IB_NONE


@njit(cache=True)
def flatten_nb(params, astate, asset, pstate, fills, n, ts, price, reason, intrabar):
    """Close the whole position of one asset at ``price`` (already slipped); emit the fill."""
    pos = astate[asset, A_POS]
    qty = abs(pos)
    notional = qty * price
    fee = notional * params[P_FEE]
    if pos > 0.0:
        pstate[S_CASH] += notional - fee
        side = -1.0
    else:
        pstate[S_CASH] -= notional + fee
        side = 1.0
    close_position_nb(astate, asset)
    return emit_fill_nb(
        fills, n, ts, asset, side, qty, price, fee, reason, intrabar, 0.0, pstate[S_CASH]
    )


@njit(cache=True)
def stop_exits_nb(params, astate, pstate, ts, o, h, lo, c, fills, n):
    """Step 1 and 2 for every asset: SL/TP/trailing exits, then the trailing extreme update."""
    for i in range(astate.shape[0]):
        pos = astate[i, A_POS]
        if pos == 0.0 or np.isnan(c[i]):
            continue
        reason, price, ib = check_exit_nb(params, astate, i, o[i], h[i], lo[i])
        if reason >= 0:
            # Block re-entry in the same direction until the signal leaves that state.
            astate[i, A_BLOCK] = 1.0 if pos > 0.0 else -1.0
            # Stop and target fills (at the level or at a gapped open) take no slippage.
            n = flatten_nb(params, astate, i, pstate, fills, n, ts, price, reason, ib)
        elif params[P_TRAIL] > 0.0:
            if pos > 0.0:
                if h[i] > astate[i, A_PEAK]:
                    astate[i, A_PEAK] = h[i]
            elif lo[i] < astate[i, A_PEAK]:
                astate[i, A_PEAK] = lo[i]
    return n


@njit(cache=True)
def entry_qty_nb(params, equity, price):
    """Quantity and total cash spend (notional + fee) of a new entry at ``price``."""
    fee_rate = params[P_FEE]
    if int(params[P_SIZING]) == SIZING_RISK:
        # Loss at the stop (fees aside) = qty * price * sl = risk_pct * equity.
        qty = params[P_RISK_PCT] * equity / (price * params[P_SL])
        spend = qty * price * (1.0 + fee_rate)
    else:
        # size_pct of equity pays for notional *and* fee, so 100 % sizing is fundable.
        spend = params[P_SIZE_PCT] * equity
        qty = spend / (price * (1.0 + fee_rate))
    return qty, spend


@njit(cache=True)
def discrete_signals_nb(params, astate, pstate, ts, c, sig, fills, n):
    """Signal exits, re-arming, then entries in asset order (shared cash, skip if unfundable).

    An entry is fundable when its spend (notional + fee) fits in free cash
    (:func:`free_cash_nb`), which every entry, long or short, then reduces by its spend.
    A skipped entry adds 1 to its cause's counter in ``pstate`` (``S_SKIP_*``).
    """
    n_assets = astate.shape[0]
    slip = params[P_SLIP]
    long_short = params[P_LONG_SHORT] > 0.0
    exit_on_signal = params[P_EXIT_ON_SIGNAL] > 0.0
    # Exits first so that the cash they free is available to entries in the same slice.
    for i in range(n_assets):
        if np.isnan(c[i]):
            continue
        s = sig[i]
        pos = astate[i, A_POS]
        if pos > 0.0 and s == -1.0 and (exit_on_signal or long_short):
            n = flatten_nb(
                params, astate, i, pstate, fills, n, ts, c[i] * (1.0 - slip), _EXIT, _IB_NONE
            )
        elif pos < 0.0 and s == 1.0 and (exit_on_signal or long_short):
            n = flatten_nb(
                params, astate, i, pstate, fills, n, ts, c[i] * (1.0 + slip), _EXIT, _IB_NONE
            )
        # Re-arm once the signal has left the blocked state (NaN counts as "left").
        if astate[i, A_BLOCK] != 0.0 and s != astate[i, A_BLOCK]:
            astate[i, A_BLOCK] = 0.0
    # Entries are sized on the equity after exits and before any entry of this slice;
    # it is computed lazily (most slices have no entry candidate), with the free cash.
    equity = np.nan
    free = 0.0
    fee_rate = params[P_FEE]
    for i in range(n_assets):
        if np.isnan(c[i]):
            continue
        if astate[i, A_POS] != 0.0:
            continue  # levels, not edges: already in a position
        s = sig[i]
        if s == 1.0:
            direction = 1.0
        elif s == -1.0 and long_short:
            direction = -1.0
        else:
            continue
        if astate[i, A_BLOCK] == direction:
            continue
        if np.isnan(equity):
            equity = equity_nb(astate, pstate)
            free = free_cash_nb(astate, pstate)
        # Every candidate from here on either fills or is counted, by cause (layout.py,
        # S_SKIP_*): fewer trades than signals, silently, told a user nothing.
        if not equity > 0.0:
            pstate[S_SKIP_UNFUNDED] += 1.0
            continue
        price = c[i] * (1.0 + slip * direction)
        qty, spend = entry_qty_nb(params, equity, price)
        # Unfundable entries are skipped (not shrunk); equality counts as fundable. So is
        # an entry below min_trade_value (once applied to portfolio trades only, the
        # setting was silently ignored here); exits are never held back by it. Funded from
        # free cash, not cash: a short's proceeds once paid for longs (2x gross exposure
        # at size_pct 1, silently).
        notional = qty * price
        if not (qty > 0.0):
            pstate[S_SKIP_UNFUNDED] += 1.0
            continue
        if notional < params[P_MIN_TRADE]:
            pstate[S_SKIP_MIN_TRADE] += 1.0
            continue
        if spend > free:
            pstate[S_SKIP_UNFUNDED] += 1.0
            continue
        fee = notional * fee_rate
        # Either side uses up notional + fee of free cash: a long pays it; a short's
        # proceeds (notional - fee) arrive borrowed and lock 2 x notional.
        free -= notional + fee
        if direction > 0.0:
            pstate[S_CASH] -= notional + fee
        else:
            pstate[S_CASH] += notional - fee
        open_position_nb(params, astate, i, direction * qty, price)
        n = emit_fill_nb(
            fills,
            n,
            ts,
            i,
            direction,
            qty,
            price,
            fee,
            _ENTRY,
            _IB_NONE,
            astate[i, A_POS],
            pstate[S_CASH],
        )
    return n


@njit(cache=True)
def portfolio_rebalance_nb(params, astate, pstate, ts, c, target, fills, n, w):
    """Rebalance towards target weights: sells (asset order), then buys (asset order).

    A slice whose targets are all NaN is not a rebalance slice. On a rebalance slice an
    asset with a NaN target, or a missing bar, keeps its holding. Weights are clipped to
    [0, max_weight]; the SL/TP overlay forces a blocked asset's weight to 0 until its target
    has been 0 once. Trades whose value at the close is below ``min_trade_value`` are
    skipped (equality trades). Buys are shrunk to the cash available. ``w`` is a
    ``float64[n_assets]`` work array (overwritten; passed in so the loop allocates nothing).
    """
    n_assets = astate.shape[0]
    rebalance = False
    for i in range(n_assets):
        if not np.isnan(target[i]):
            rebalance = True
            break
    if not rebalance:
        return n
    max_w = params[P_MAX_WEIGHT]
    total = 0.0
    for i in range(n_assets):
        w[i] = np.nan
        if np.isnan(c[i]) or np.isnan(target[i]):
            continue
        wi = min(max(target[i], 0.0), max_w)
        if astate[i, A_BLOCK] > 0.0:
            if wi == 0.0:
                astate[i, A_BLOCK] = 0.0
            else:
                wi = 0.0
        w[i] = wi
        total += wi
    if total > 1.0:
        # The Python wrappers reject such rows; this keeps the kernel safe if called directly.
        for i in range(n_assets):
            if not np.isnan(w[i]):
                w[i] = w[i] / total
    value = equity_nb(astate, pstate)
    fee_rate = params[P_FEE]
    slip = params[P_SLIP]
    min_trade = params[P_MIN_TRADE]
    for i in range(n_assets):  # sells first: they fund the buys
        if np.isnan(w[i]):
            continue
        pos = astate[i, A_POS]
        if pos <= 0.0:
            continue
        delta = w[i] * value / c[i] - pos
        if not delta < 0.0:
            continue
        qty = pos if w[i] == 0.0 else -delta
        if qty * c[i] < min_trade:
            continue
        price = c[i] * (1.0 - slip)
        notional = qty * price
        fee = notional * fee_rate
        pstate[S_CASH] += notional - fee
        if qty >= pos:
            close_position_nb(astate, i)
        else:
            astate[i, A_POS] = pos - qty
        n = emit_fill_nb(
            fills,
            n,
            ts,
            i,
            -1.0,
            qty,
            price,
            fee,
            _REBALANCE,
            _IB_NONE,
            astate[i, A_POS],
            pstate[S_CASH],
        )
    for i in range(n_assets):
        if np.isnan(w[i]) or w[i] == 0.0:
            continue
        pos = astate[i, A_POS]
        qty = w[i] * value / c[i] - pos
        if not qty > 0.0:
            continue
        price = c[i] * (1.0 + slip)
        cash = pstate[S_CASH]
        if qty * price * (1.0 + fee_rate) > cash:
            qty = max(cash, 0.0) / (price * (1.0 + fee_rate))
        if not qty > 0.0 or qty * c[i] < min_trade:
            continue
        notional = qty * price
        fee = notional * fee_rate
        pstate[S_CASH] = cash - notional - fee
        if pos == 0.0:
            open_position_nb(params, astate, i, qty, price)
        else:
            # Adding to a holding: stops stay anchored to the average fill price.
            avg = (pos * astate[i, A_ENTRY] + notional) / (pos + qty)
            peak = astate[i, A_PEAK]
            open_position_nb(params, astate, i, pos + qty, avg)
            astate[i, A_PEAK] = max(peak, avg)
        n = emit_fill_nb(
            fills,
            n,
            ts,
            i,
            1.0,
            qty,
            price,
            fee,
            _REBALANCE,
            _IB_NONE,
            astate[i, A_POS],
            pstate[S_CASH],
        )
    return n


@njit(cache=True)
def run_batch_nb(params, astate, pstate, ts, o, h, lo, c, sig, fills, n, start, equity_out, work):
    """Step the engine over time slices ``start..`` of ``n_bars x n_assets`` arrays.

    One slice (``ts[t]`` = its close time; ``o[t], h[t], lo[t], c[t], sig[t]`` per asset):
    ``c[t, i]`` NaN marks a missing bar (the asset does nothing); ``sig`` is the discrete
    signal (+1/0/-1) or, in portfolio mode, the target weight (an all-NaN row = not a
    rebalance slice). Fills are appended at ``fills[n:]``; ``equity_out[t]`` receives the
    equity after slice ``t``. The daemon steps one slice by passing one-row arrays.

    ``work``: None in discrete mode, a ``float64[n_assets]`` work array in portfolio mode.
    The mode is taken from its *type*, not from ``params``, so that numba prunes the other
    mode's branch and a run compiles only what it uses (the Python wrappers pass the one
    matching ``params[P_MODE]``).

    Stops early when ``fills`` could overflow; returns ``(n_fills, next_bar)`` so the caller
    can grow the buffer and resume from the same state.
    """
    cap = fills.shape[0]
    n_assets = astate.shape[0]
    need = MAX_FILLS_PER_ASSET * n_assets
    for t in range(start, ts.shape[0]):
        if n + need > cap:
            return n, t
        tsf = float(ts[t])
        ct = c[t]
        n = stop_exits_nb(params, astate, pstate, tsf, o[t], h[t], lo[t], ct, fills, n)
        for i in range(n_assets):
            if not np.isnan(ct[i]):
                astate[i, A_LAST_CLOSE] = ct[i]
        if work is None:
            n = discrete_signals_nb(params, astate, pstate, tsf, ct, sig[t], fills, n)
        else:
            n = portfolio_rebalance_nb(params, astate, pstate, tsf, ct, sig[t], fills, n, work)
        pstate[S_STEPS] += 1.0
        pstate[S_LAST_TS] = tsf
        equity_out[t] = equity_nb(astate, pstate)
    return n, ts.shape[0]
