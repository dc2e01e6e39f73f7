"""Portfolio weighting: how much each eligible asset gets at a rebalance — one rule, both drivers.

:func:`tandem.core.signals.signals_rows_nb` decides *which* assets may hold weight (signal +1 on
a rebalance bar) and writes the original ``score`` targets. When a profile changes any
``portfolio.weighting`` setting (:meth:`tandem.core.manifest.Portfolio.plain_score` is False),
both drivers then pass the same rows through :func:`weights_rows_nb`: the backtest over
its whole loaded history (warm-up bars with ``trade=False``), the daemon one slice at a
time through :func:`weights_step_nb`. The kernel keeps its state in one float64 array
(:func:`new_weight_state`), checkpointed by the daemon with the MTF and engine state, so
replay == backtest holds for every weighting. A profile left at the defaults never calls
this module: its numbers are those of the score rule, bit for bit.

**Return window** (every base slice, warm-up included). ``r = close_t / close_prev - 1``
where ``close_prev`` is the asset's close on the previous *stepped* slice. Rules:

* a slice with no bar for any asset (all closes NaN) is not a slice: the window does not
  move (the batch's time axis has no such row, the daemon may step one);
* a missing bar for one asset (NaN close) stores a NaN return, and the next bar's return
  is NaN too (no close to measure from): the gap breaks that asset's window;
* an asset is *ready* when its last ``lookback`` returns all exist — so an asset that
  joins the universe mid-history (or comes back from a gap) needs ``lookback + 1``
  consecutive bars before it can hold weight; until then it gets 0 like a non-signal.

**Weights at a rebalance** (a row whose score target has any non-NaN value):

1. eligible = signal +1, a bar in this slice, ready window (``score``: the score target's
   assets, window not needed); raw weights over the eligible assets sum to 1:
   ``equal`` 1/n; ``inverse_vol`` (1/σ_i)/Σ(1/σ_j), σ the sample standard deviation
   (ddof 1) of the window's returns — an asset with σ = 0 is not eligible;
   ``score`` the score rule's targets as they are (already capped);
   ``min_variance`` argmin w'Σw with 0 <= w <= max_weight, Σw = 1, Σ the Ledoit–Wolf
   shrunk covariance of the eligible assets' windows (rows in ring order; the estimate
   does not depend on it); with n·max_weight <= 1 every eligible asset gets max_weight;
   ``risk_parity`` equal risk contributions ``w_i (Σw)_i`` under the same Σ, no box in
   the optimizer (the cap of step 2 then applies, excess to cash);
   ``hrp`` hierarchical risk parity (López de Prado 2016) under the same Σ: distances
   ``sqrt((1 - ρ_ij) / 2)`` from Σ's correlations, **single** linkage (López de Prado's,
   not skfolio's default Ward), no optimal leaf ordering, leaves in dendrogram order
   (scipy's labelling: the lower cluster id on the left), then recursive bisection of that
   order into halves, each half's variance taken at its inverse-variance weights; the cap
   of step 2 applies after, excess to cash;
2. each weight is capped at ``max_weight``; the excess stays in cash (no redistribution,
   as the score rule), so Σw ≤ 1;
3. a weight below ``min_weight`` goes to cash (0);
4. ``band`` (> 0): after the first rebalance, an asset whose new weight differs from its
   last rebalance target by at most ``band`` gets NaN = "do nothing" (the engine keeps the
   holding); ``band = 1`` therefore never trades again after the first rebalance;
   The *book* (each asset's last target, R_PREV) must sum to at most 1: when the weights
   held in place (band, or no bar) plus the new ones exceed 1, the new ones are scaled
   down to fit (one that falls below ``min_weight`` then goes to cash as well);
5. ``turnover_cap``: if Σ|w_i − prev_i| over the assets that trade exceeds it, every move
   is scaled by cap/turnover (prev = last target, 0 before any); this convex step keeps
   Σw ≤ 1 and w ≤ max_weight but may leave a weight below ``min_weight`` while it moves.

Assets without a bar in the slice keep NaN (do nothing), as in the score rule. The engine's
SL/TP overlay acts after this kernel (a stopped asset's weight is forced to 0 until its
signal re-arms); the book here keeps the target it was given, so band and turnover are
measured against targets, not against the drifted or stopped holdings.
"""

from __future__ import annotations

import numpy as np
from tandem.core.jit import njit

W_SCORE = 0
W_EQUAL = 1
W_INVERSE_VOL = 2
W_MIN_VARIANCE = 3
W_RISK_PARITY = 4
W_HRP = 5
WEIGHTINGS = {"score": W_SCORE, "equal": W_EQUAL, "inverse_vol": W_INVERSE_VOL,
              "min_variance": W_MIN_VARIANCE, "risk_parity": W_RISK_PARITY, "hrp": W_HRP}

# State rows (float64 ``(HDR + lookback, n_assets)``):
R_LAST = 0  # the asset's close on the previous stepped slice (NaN: none)
R_PREV = 1  # its target at the last rebalance that set it (NaN: never)
R_RUN = 2  # consecutive valid returns, capped at lookback
R_HEAD = 3  # column 0: the ring's next write row (same for all assets)
HDR = 4


def new_weight_state(n_assets: int, lookback: int) -> np.ndarray:
    """A fresh state: no closes seen, no rebalance yet."""
    st = np.zeros((HDR + lookback, n_assets))
    st[R_LAST] = np.nan
    st[R_PREV] = np.nan
    st[HDR:] = np.nan
    return st


@njit(cache=True)
def update_window_nb(state, close):
    """Push one slice's closes into the return window (module doc, "Return window")."""
    n = close.shape[0]
    any_bar = False
    for i in range(n):
        if not np.isnan(close[i]):
            any_bar = True
            break
    if not any_bar:
        return
    lookback = state.shape[0] - HDR
    head = int(state[R_HEAD, 0])
    for i in range(n):
        c = close[i]
        last = state[R_LAST, i]
        r = np.nan
        if not np.isnan(c) and not np.isnan(last) and last > 0.0:
            r = c / last - 1.0
        state[HDR + head, i] = r
        if np.isnan(r):
            state[R_RUN, i] = 0.0
        elif state[R_RUN, i] < lookback:
            state[R_RUN, i] += 1.0
        state[R_LAST, i] = c
    head += 1
    if head == lookback:
        head = 0
    state[R_HEAD, :] = head


@njit(cache=True)
def window_std_nb(state, i):
    """Sample standard deviation (ddof 1) of asset ``i``'s window (two-pass, for accuracy)."""
    lookback = state.shape[0] - HDR
    m = 0.0
    for k in range(lookback):
        m += state[HDR + k, i]
    m /= lookback
    ss = 0.0
    for k in range(lookback):
        d = state[HDR + k, i] - m
        ss += d * d
    return np.sqrt(ss / (lookback - 1))


@njit(cache=True)
def ledoit_wolf_nb(x):
    """Ledoit–Wolf (2004) shrunk covariance of returns ``x`` ``(n_obs, p)``: the sample
    covariance (demeaned, divided by n) shrunk towards ``mu·I`` (``mu`` its mean variance)
    with the optimal intensity — the estimator of scikit-learn's ``LedoitWolf``."""
    n, p = x.shape
    xc = x - x.sum(axis=0) / n  # broadcasting: demean each column
    raw = np.dot(xc.T, xc)
    x2 = xc * xc
    s = raw / n
    tr = 0.0
    for i in range(p):
        tr += s[i, i]
    mu = tr / p
    beta_ = np.dot(x2.T, x2).sum()
    delta_ = (raw * raw).sum() / (n * n)
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * tr + p * mu * mu) / p
    if beta > delta:
        beta = delta
    shrink = 0.0 if beta == 0.0 else beta / delta
    out = (1.0 - shrink) * s
    for i in range(p):
        out[i, i] += shrink * mu
    return out


@njit(cache=True)
def project_capped_simplex_nb(v, u, out):
    """Euclidean projection of ``v`` onto {0 <= w <= u, Σw = 1} (needs p·u >= 1):
    ``w = clip(v - τ, 0, u)`` with τ found by bisection."""
    lo = v.min() - 1.0
    hi = v.max()
    for _ in range(200):
        tau = 0.5 * (lo + hi)
        tot = 0.0
        for i in range(v.shape[0]):
            tot += min(max(v[i] - tau, 0.0), u)
        if tot > 1.0:
            lo = tau
        else:
            hi = tau
        if hi - lo <= 1e-16 * (1.0 + abs(tau)):
            break
    tau = 0.5 * (lo + hi)
    for i in range(v.shape[0]):
        out[i] = min(max(v[i] - tau, 0.0), u)


@njit(cache=True)
def _polish_nb(cov, w, u, out):
    """Exact KKT solution on ``w``'s active set (free / at 0 / at u); True if it is
    feasible and optimal (every multiplier of the right sign), then written to ``out``.
    No free asset: the capped ones must hold the whole book (``n_up · u = 1``)."""
    p = w.shape[0]
    tol = 1e-9
    free = np.empty(p, dtype=np.int64)
    nf = 0
    n_up = 0
    for i in range(p):
        if w[i] > tol and w[i] < u - tol:
            free[nf] = i
            nf += 1
        elif w[i] >= u - tol:
            n_up += 1
    if nf == 0:
        # A vertex: n_up assets at the cap make the whole book. Optimal when no gradient on
        # the capped set exceeds one on the zero set (one multiplier separates them).
        if abs(n_up * u - 1.0) > 1e-9:
            return False
        for i in range(p):
            out[i] = u if w[i] >= u - tol else 0.0
        g = np.dot(cov, out)
        top = -np.inf
        bottom = np.inf
        for i in range(p):
            if out[i] > 0.0:
                top = max(top, g[i])
            else:
                bottom = min(bottom, g[i])
        return top <= bottom + 1e-12 * (1.0 + abs(top))
    a = np.empty((nf, nf))
    rhs = np.empty((nf, 2))
    for r in range(nf):
        i = free[r]
        b = 0.0
        for j in range(p):
            if w[j] >= u - tol:
                b += cov[i, j] * u
        for c in range(nf):
            a[r, c] = cov[i, free[c]]
        rhs[r, 0] = 1.0
        rhs[r, 1] = b
    sol = np.linalg.solve(a, rhs)
    s1 = sol[:, 0].sum()
    sb = sol[:, 1].sum()
    nu = (1.0 - n_up * u + sb) / s1
    for i in range(p):
        out[i] = u if w[i] >= u - tol else 0.0
    for r in range(nf):
        x = nu * sol[r, 0] - sol[r, 1]
        if x < -1e-12 or x > u + 1e-12:
            return False
        out[free[r]] = min(max(x, 0.0), u)
    g = np.dot(cov, out)  # ∂(w'Σw)/2: equals nu on the free set
    for i in range(p):
        if w[i] <= tol and g[i] < nu - 1e-12 * (1.0 + abs(nu)):
            return False  # moving weight into i would lower the variance
        if w[i] >= u - tol and g[i] > nu + 1e-12 * (1.0 + abs(nu)):
            return False
    return True


@njit(cache=True)
def min_variance_nb(cov, u, out):
    """Long-only minimum variance: argmin w'Σw, 0 <= w <= u, Σw = 1 (``p·u >= 1``).
    Accelerated projected gradient (FISTA) until its active set gives an exact KKT point
    (:func:`_polish_nb`); the projected-gradient iterate if that never happens."""
    p = cov.shape[0]
    # step 1/L, L = 2·λmax(Σ) from a power iteration (1 % margin)
    v = np.ones(p) / np.sqrt(p)
    lam = 0.0
    for _ in range(50):
        z = np.dot(cov, v)
        lam = np.sqrt((z * z).sum())
        if lam == 0.0:
            break
        v = z / lam
    step = 1.0 / (2.0 * lam * 1.01) if lam > 0.0 else 1.0
    w = np.empty(p)
    project_capped_simplex_nb(np.full(p, 1.0 / p), u, w)
    y = w.copy()
    t = 1.0
    nxt = np.empty(p)
    side = np.zeros(p, dtype=np.int8)  # 0 at zero, 1 free, 2 at the cap: the active set
    for it in range(1, 20001):
        g = np.dot(cov, y)
        project_capped_simplex_nb(y - step * 2.0 * g, u, nxt)
        t2 = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        y = nxt + ((t - 1.0) / t2) * (nxt - w)
        w[:] = nxt
        t = t2
        if it % 10 == 0:
            # The exact solve costs O(free³): try it only once the active set holds still.
            same = True
            for i in range(p):
                sd = 0 if w[i] <= 1e-9 else (2 if w[i] >= u - 1e-9 else 1)
                if sd != side[i]:
                    same = False
                    side[i] = sd
            if same and _polish_nb(cov, w, u, out):
                return
    out[:] = w


@njit(cache=True)
def rebalance_weights_nb(state, signal, target, method, max_w, min_w, band, cap, work):
    """Rewrite one rebalance row ``target`` in place (module doc, "Weights at a rebalance")."""
    n = target.shape[0]
    lookback = state.shape[0] - HDR
    total = 0.0
    covariance = method == W_MIN_VARIANCE or method == W_RISK_PARITY or method == W_HRP
    if covariance:
        _min_variance_row_nb(state, signal, target, max_w, work, method)
        total = 1.0  # already normalised
    for i in range(n):
        if covariance:
            continue
        w = 0.0
        if not np.isnan(target[i]):
            if method == W_SCORE:
                w = target[i]
            elif signal[i] == 1 and state[R_RUN, i] >= lookback:
                if method == W_EQUAL:
                    w = 1.0
                else:
                    sd = window_std_nb(state, i)
                    if sd > 0.0:
                        w = 1.0 / sd
        work[i] = w
        total += w
    if method != W_SCORE and not covariance and total > 0.0:
        for i in range(n):
            work[i] /= total
    held = 0.0  # the book weight of assets that keep their holding (no bar, or band)
    moving = 0.0
    for i in range(n):
        prev = state[R_PREV, i]
        if np.isnan(target[i]):
            held += 0.0 if np.isnan(prev) else prev  # no bar: do nothing, as the score rule
            continue
        w = work[i]
        if w > max_w:
            w = max_w
        if w < min_w:
            w = 0.0
        if band > 0.0 and not np.isnan(prev) and abs(w - prev) <= band:
            target[i] = np.nan  # inside the band: keep the holding
            held += prev
            continue
        target[i] = w
        moving += w
    if held + moving > 1.0 and moving > 0.0:
        # Held weights stay in the book: the moving ones share what is left (Σ book <= 1).
        k = max(1.0 - held, 0.0) / moving
        for i in range(n):
            if not np.isnan(target[i]):
                target[i] *= k
                if target[i] < min_w:
                    target[i] = 0.0  # min_weight holds after the squeeze too
    turnover = 0.0
    for i in range(n):
        if not np.isnan(target[i]):
            prev = state[R_PREV, i]
            turnover += abs(target[i] - (0.0 if np.isnan(prev) else prev))
    if cap > 0.0 and turnover > cap:
        k = cap / turnover
        for i in range(n):
            if not np.isnan(target[i]):
                prev = state[R_PREV, i]
                p = 0.0 if np.isnan(prev) else prev
                target[i] = p + (target[i] - p) * k
    for i in range(n):
        if not np.isnan(target[i]):
            state[R_PREV, i] = target[i]


@njit(cache=True)
def risk_parity_nb(cov, out):
    """Equal risk contribution, long-only: ``w_i (Σw)_i`` equal for all i, Σw = 1.
    Cyclical coordinate descent on ``y`` with ``y_i (Σy)_i = 1/p`` (each step solves its
    quadratic exactly; Griveau-Billion, Richard & Roncalli 2013), then ``w = y / Σy``."""
    p = cov.shape[0]
    b = 1.0 / p
    y = np.empty(p)
    for i in range(p):
        y[i] = 1.0 / np.sqrt(cov[i, i]) / p
    sy = np.dot(cov, y)
    for _ in range(2_000):
        moved = 0.0
        for i in range(p):
            c = sy[i] - cov[i, i] * y[i]
            new = (-c + np.sqrt(c * c + 4.0 * cov[i, i] * b)) / (2.0 * cov[i, i])
            d = new - y[i]
            if d != 0.0:
                for j in range(p):
                    sy[j] += cov[j, i] * d
                y[i] = new
                moved = max(moved, abs(d) / new)
        if moved < 1e-12:  # relative step; risk contributions then agree to ~1e-12
            break
    out[:] = y / y.sum()


@njit(cache=True)
def single_linkage_order_nb(dist):
    """Leaf order of the single-linkage dendrogram of the distance matrix ``dist``, as
    ``scipy.cluster.hierarchy.leaves_list(linkage(squareform(dist), "single"))``: Prim's
    minimum spanning tree in scipy's visiting order, its edges sorted by distance (stable),
    clusters labelled ``p + k`` at the k-th merge with the lower label on the left, then
    the leaves read left first. Equal distances therefore break ties as scipy does."""
    p = dist.shape[0]
    # Prim, recording each step as (last added node, nearest outside node, its distance)
    ex = np.empty(p - 1, dtype=np.int64)
    ey = np.empty(p - 1, dtype=np.int64)
    ed = np.empty(p - 1)
    merged = np.zeros(p, dtype=np.bool_)
    near = np.full(p, np.inf)
    x = 0
    for k in range(p - 1):
        merged[x] = True
        best = np.inf
        y = -1
        for i in range(p):
            if merged[i]:
                continue
            if dist[x, i] < near[i]:
                near[i] = dist[x, i]
            if near[i] < best or y < 0:
                best = near[i]
                y = i
        ex[k] = x
        ey[k] = y
        ed[k] = best
        x = y
    order = np.argsort(ed, kind="mergesort")
    # union-find over cluster labels: leaves 0..p-1, the k-th merge makes p + k
    parent = np.arange(2 * p - 1)
    left = np.empty(p - 1, dtype=np.int64)
    right = np.empty(p - 1, dtype=np.int64)
    for k in range(p - 1):
        roots = np.empty(2, dtype=np.int64)
        for side in range(2):
            r = ex[order[k]] if side == 0 else ey[order[k]]
            while parent[r] != r:
                r = parent[r]
            roots[side] = r
        a, b = min(roots[0], roots[1]), max(roots[0], roots[1])
        left[k] = a
        right[k] = b
        parent[a] = p + k
        parent[b] = p + k
    leaves = np.empty(p, dtype=np.int64)
    stack = np.empty(2 * p, dtype=np.int64)
    top = 0
    stack[0] = 2 * p - 2
    n_out = 0
    while top >= 0:
        node = stack[top]
        top -= 1
        if node < p:
            leaves[n_out] = node
            n_out += 1
        else:  # right pushed first: the left subtree is read first
            stack[top + 1] = right[node - p]
            stack[top + 2] = left[node - p]
            top += 2
    return leaves


@njit(cache=True)
def _cluster_variance_nb(cov, iv, ids, a, b):
    """Variance of the assets ``ids[a:b]`` held at their inverse-variance weights
    (``iv`` = 1 / diag(cov))."""
    tot = 0.0
    for k in range(a, b):
        tot += iv[ids[k]]
    var = 0.0
    for k in range(a, b):
        row = 0.0
        for m in range(a, b):
            row += iv[ids[m]] * cov[ids[k], ids[m]]
        var += iv[ids[k]] * row
    return var / (tot * tot)


@njit(cache=True)
def hrp_nb(cov, out):
    """Hierarchical risk parity over ``cov`` (module doc): single-linkage leaf order, then
    each range of it split in halves, the left half scaled by ``1 - v_l / (v_l + v_r)``.
    A flat covariance (a zero variance: every window flat) leaves all weights at 0."""
    p = cov.shape[0]
    for i in range(p):
        if not cov[i, i] > 0.0:
            out[:] = 0.0
            return
    dist = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            rho = cov[i, j] / np.sqrt(cov[i, i] * cov[j, j])
            dist[i, j] = np.sqrt(min(max(0.5 * (1.0 - rho), 0.0), 1.0))
    ids = single_linkage_order_nb(dist) if p > 1 else np.zeros(1, dtype=np.int64)
    iv = np.empty(p)
    for i in range(p):
        iv[i] = 1.0 / cov[i, i]
    w = np.ones(p)
    # ranges [a, b) of ``ids`` still to split; each split makes two, at most p - 1 splits
    lo = np.empty(p, dtype=np.int64)
    hi = np.empty(p, dtype=np.int64)
    lo[0] = 0
    hi[0] = p
    top = 0
    while top >= 0:
        a = lo[top]
        b = hi[top]
        top -= 1
        if b - a < 2:
            continue
        mid = a + (b - a) // 2
        vl = _cluster_variance_nb(cov, iv, ids, a, mid)
        vr = _cluster_variance_nb(cov, iv, ids, mid, b)
        alpha = 1.0 - vl / (vl + vr)
        for k in range(a, mid):
            w[ids[k]] *= alpha
        for k in range(mid, b):
            w[ids[k]] *= 1.0 - alpha
        lo[top + 1] = a
        hi[top + 1] = mid
        lo[top + 2] = mid
        hi[top + 2] = b
        top += 2
    out[:] = w


@njit(cache=True)
def _min_variance_row_nb(state, signal, target, max_w, work, method):
    """``work`` = long-only min-variance (risk-parity, HRP) weights over the eligible assets
    (module doc)."""
    n = target.shape[0]
    lookback = state.shape[0] - HDR
    idx = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        work[i] = 0.0
        if not np.isnan(target[i]) and signal[i] == 1 and state[R_RUN, i] >= lookback:
            idx[m] = i
            m += 1
    if m == 0:
        return
    if method == W_MIN_VARIANCE and m * max_w <= 1.0:  # the caps bind everywhere
        for k in range(m):
            work[idx[k]] = max_w
        return
    x = np.empty((lookback, m))
    for k in range(m):
        for r in range(lookback):
            x[r, k] = state[HDR + r, idx[k]]
    cov = ledoit_wolf_nb(x)
    w = np.empty(m)
    if method == W_MIN_VARIANCE:
        min_variance_nb(cov, max_w, w)
    elif method == W_RISK_PARITY:
        risk_parity_nb(cov, w)  # capped after, like equal and inverse_vol
    else:
        hrp_nb(cov, w)  # capped after as well
    for k in range(m):
        work[idx[k]] = w[k]


@njit(cache=True, nogil=True)  # nogil: a sweep's weighted trials run on threads at once
def weights_rows_nb(close, signal, target, trade, state, method, max_w, min_w, band, cap):
    """Bars ``close[t]`` ``(n_bars, n_assets)`` through the window; on rows where ``trade``
    is set and ``target[t]`` is a rebalance row (any non-NaN), rewrite its weights in place.
    Rows with ``trade`` unset (warm-up) only feed the window, as the daemon's warm-up."""
    n_bars, n = close.shape
    work = np.empty(n)
    for t in range(n_bars):
        update_window_nb(state, close[t])
        if not trade[t]:
            continue
        rebalance = False
        for i in range(n):
            if not np.isnan(target[t, i]):
                rebalance = True
                break
        if rebalance:
            rebalance_weights_nb(state, signal[t], target[t], method, max_w, min_w, band, cap,
                                 work)


@njit(cache=True)
def weights_step_nb(close, signal, target, trade, state, method, max_w, min_w, band, cap):
    """One slice (the daemon's face of :func:`weights_rows_nb`); 1-D ``(n_assets,)`` arrays."""
    n = close.shape[0]
    tr = np.empty(1, dtype=np.bool_)
    tr[0] = trade
    weights_rows_nb(close.reshape((1, n)), signal.reshape((1, n)), target.reshape((1, n)), tr,
                    state, method, max_w, min_w, band, cap)


class WeightParams:
    """The numeric form of a profile's ``portfolio`` weighting settings."""

    __slots__ = ("method", "lookback", "max_w", "min_w", "band", "cap")

    def __init__(self, portfolio) -> None:  # noqa: ANN001 - core.manifest.Portfolio
        self.method = WEIGHTINGS[portfolio.weighting]
        self.lookback = int(portfolio.lookback)
        self.max_w = float(portfolio.max_weight)
        self.min_w = float(portfolio.min_weight)
        self.band = float(portfolio.band)
        self.cap = 0.0 if portfolio.turnover_cap is None else float(portfolio.turnover_cap)

    def args(self) -> tuple[int, float, float, float, float]:
        return self.method, self.max_w, self.min_w, self.band, self.cap


def apply_weighting(portfolio, close: np.ndarray, signal: np.ndarray, target: np.ndarray,  # noqa: ANN001
                    first_trade: int, state: np.ndarray | None = None) -> np.ndarray:
    """Batch driver: rewrite ``target`` ``(n_bars, n_assets)`` in place from bar
    ``first_trade`` on (earlier bars only feed the window); returns the final state."""
    p = WeightParams(portfolio)
    n_bars, n = target.shape
    if state is None:
        state = new_weight_state(n, p.lookback)
    trade = np.arange(n_bars) >= first_trade
    weights_rows_nb(np.ascontiguousarray(close, dtype=np.float64),
                    np.ascontiguousarray(signal, dtype=np.int8), target, trade, state, *p.args())
    return state
