"""Multi-timeframe (MTF) rating state: base-timeframe ratings plus each higher timeframe's
last *closed* ratings, updated one closed base bar at a time.

Per asset, everything lives in one flat float64 array so the daemon can checkpoint it::

    [ base rating state | HTF 1: agg state, rating state, last out | HTF 2: ... ]

One base bar of one asset: the kernel steps the base rating, feeds the bar to each
HTF aggregator (:mod:`tandem.core.aggregate`) and, for every HTF bar that closed on this bar,
steps that timeframe's rating and stores its output. Output rows: ``out[0]`` = base
ratings of this bar, ``out[1 + k]`` = HTF k's last closed ratings (NaN until its first
close). An HTF value therefore changes only on the base bar where that HTF bar closed
(or, after a gap, on the first real bar beyond its end) and never repaints.

A missing base bar (close NaN) leaves the whole state untouched: the base row is NaN and
the HTF rows repeat their last closed values.

One kernel, :func:`mtf_batch_nb`, steps ``n_bars × n_assets``: the backtest passes its
whole history, the daemon one time slice (:func:`mtf_slice`, ``n_bars = 1``) and its
warm-up one asset's bars. One compiled loop for every driver: they agree bit for bit
(``tests/test_mtf.py``: batch == slice == streaming), and a first run compiles it once (a
separate slice kernel was 2.6 s more of a cold replay's compile). :func:`compute_mtf_ratings` runs it on a
few threads, each over its share of the assets (the kernel releases the GIL): numba's
``prange`` would do the same but its parallel lowering costs seconds of compile on a cold
start.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numba
import numpy as np
from tandem.core.aggregate import (
    AGG_STATE_SIZE,
    HTF_BAR_SIZE,
    MAX_EMIT,
    agg_step_at_nb,
    new_agg_state,
)
from tandem.core.indicators.rating import rating_kernel, rating_step_at_nb
from tandem.core.jit import njit
from tandem.core.jit_ready import ready as jit_ready
from tandem.core.ratings import N_RATING_OUT, RATING_STATE_SIZE, new_rating_state
from tandem.core.timeframes import bucket_offset_ms, check_htf, timeframe_to_ms

if TYPE_CHECKING:
    from tandem.core.manifest import Profile

HTF_BLOCK = AGG_STATE_SIZE + RATING_STATE_SIZE + N_RATING_OUT
N_RATINGS = 3  # rating_ma, rating_osc, rating_all (the first three output columns)


def mtf_state_size(n_htf: int) -> int:
    """Length of one asset's flat MTF state with ``n_htf`` higher timeframes."""
    return RATING_STATE_SIZE + n_htf * HTF_BLOCK


def new_mtf_state(n_htf: int) -> np.ndarray:
    """Fresh MTF state for one asset."""
    state = np.empty(mtf_state_size(n_htf))
    state[:RATING_STATE_SIZE] = new_rating_state()
    for k in range(n_htf):
        a = RATING_STATE_SIZE + k * HTF_BLOCK
        state[a : a + AGG_STATE_SIZE] = new_agg_state()
        b = a + AGG_STATE_SIZE
        state[b : b + RATING_STATE_SIZE] = new_rating_state()
        state[b + RATING_STATE_SIZE : a + HTF_BLOCK] = np.nan
    return state


def new_mtf_states(n_assets: int, n_htf: int) -> np.ndarray:
    """Fresh states for many assets, one row each."""
    return np.tile(new_mtf_state(n_htf), (n_assets, 1))


@njit(cache=True, nogil=True)
def mtf_batch_nb(kern, ts, o, h, l, c, v, base_ms, htf_ms, htf_off, use_htf, states, res, first, stop):  # noqa: E741
    """Step all bars of the assets ``first .. stop - 1`` (inputs ``(n_bars, n_assets)``,
    ``ts`` their open times), writing ``res`` ``(n_bars, n_assets, 1 + n_htf, n_cols)``:
    the first ``n_cols`` output columns (3 = ratings only, N_RATING_OUT = with votes).
    ``kern`` is the rating kernel's address
    (:func:`tandem.core.indicators.rating.rating_kernel`).

    Per bar and asset: the base rating steps; each HTF aggregator takes the bar and, for
    every HTF bar that closed on it (oldest first: after a gap two may close on one base
    bar), that timeframe's rating steps and its output is kept in the state. Output rows:
    base ratings of this bar, then each HTF's last closed ratings (NaN until its first
    close). ``htf_ms``/``htf_off``: int64 per HTF (length and bucket offset, ms);
    ``use_htf``: False for assets on the base timeframe only (HTF rows stay NaN, no HTF
    work). ``states`` (``(n_assets, size)``) is advanced in place, so a batch can continue
    where another (or a warm-up) stopped. Threads given disjoint ranges touch disjoint
    assets; with more than one bar each steps a private copy of its asset's state (no
    reference count shared between threads in the hot loop).
    """
    n_bars = c.shape[0]
    n_tf = res.shape[2]
    n_cols = res.shape[3]
    per_bar = n_tf * n_cols
    n_htf = htf_ms.shape[0]
    zero = np.int64(0)
    scratch = np.empty((MAX_EMIT, HTF_BAR_SIZE))
    row = np.empty(N_RATING_OUT)
    buf = np.empty(n_bars * per_bar)
    for j in range(first, stop):
        # An asset's column is strided in the inputs and in ``res`` (a new page every few
        # bars): copy it out, run the bars on contiguous data, copy the results back.
        # Element loops, not ``res[:, j] = buf``: numba's array-to-array assignment carries
        # a shape-mismatch message whose string formatting compiles for ~8 s.
        oj = o[:, j].copy()
        hj = h[:, j].copy()
        lj = l[:, j].copy()
        cj = c[:, j].copy()
        vj = v[:, j].copy()
        # One bar (a daemon slice) steps the state row in place: copying a 31 KB state in
        # and out for one bar costs more than the bar (~2.5 ms a slice at 500 assets).
        st = states[j] if n_bars == 1 else states[j].copy()
        uh = use_htf[j]
        for t in range(n_bars):
            # One function, written out: a call (numba-inlined or not) that passes arrays
            # costs their reference counts on every bar, ~100 ns, a quarter of this loop.
            ti, oi, hi, li, ci, vi = ts[t], oj[t], hj[t], lj[t], cj[t], vj[t]
            rating_step_at_nb(kern, st, zero, oi, hi, li, ci, vi, row, zero)
            oo = t * per_bar
            for q in range(n_cols):
                buf[oo + q] = row[q]
            for k in range(n_htf):
                a = RATING_STATE_SIZE + k * HTF_BLOCK
                b = a + AGG_STATE_SIZE
                r = b + RATING_STATE_SIZE
                if uh:
                    n = agg_step_at_nb(st, a, ti, oi, hi, li, ci, vi, base_ms, htf_ms[k], htf_off[k], scratch)
                    for e in range(n):
                        rating_step_at_nb(
                            kern, st, b, scratch[e, 1], scratch[e, 2], scratch[e, 3], scratch[e, 4], scratch[e, 5], st, r
                        )
                base = oo + (k + 1) * n_cols
                for q in range(n_cols):
                    buf[base + q] = st[r + q]
        for t in range(n_bars):
            for f in range(n_tf):
                for q in range(n_cols):
                    res[t, j, f, q] = buf[t * per_bar + f * n_cols + q]
        if n_bars != 1:
            for q in range(st.shape[0]):
                states[j, q] = st[q]


class MtfConfig:
    """Timeframe layout of an MTF run: base timeframe + higher timeframes (ms, offsets)."""

    def __init__(self, base_tf: str, htfs: list[str] | tuple[str, ...]):
        for htf in htfs:
            check_htf(base_tf, htf)
        self.base_tf = base_tf
        self.htfs = tuple(htfs)
        self.base_ms = timeframe_to_ms(base_tf)
        self.htf_ms = np.array([timeframe_to_ms(t) for t in htfs], dtype=np.int64)
        self.htf_off = np.array([bucket_offset_ms(t) for t in htfs], dtype=np.int64)

    @classmethod
    def from_profile(cls, profile: Profile) -> MtfConfig:
        return cls(profile.base_timeframe, profile.htfs)

    @property
    def timeframes(self) -> tuple[str, ...]:
        return (self.base_tf, *self.htfs)

    @property
    def n_htf(self) -> int:
        return len(self.htfs)

    @property
    def state_size(self) -> int:
        return mtf_state_size(self.n_htf)


def mtf_slice(kern: int, cfg: MtfConfig, use_htf: np.ndarray, states: np.ndarray, ts: int,
              o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, v: np.ndarray,  # noqa: E741
              out: np.ndarray) -> None:
    """One time slice of every asset (the daemon): :func:`mtf_batch_nb` over one bar.

    Prices float64 ``(n_assets,)`` C-contiguous, NaN = no bar; ``ts`` the bar's open time;
    ``states`` advanced in place; ``out`` ``(n_assets, 1 + n_htf, N_RATING_OUT)``
    C-contiguous, overwritten. The reshapes are views, typed as the backtest's arguments,
    so the daemon loads the backtest's compiled loop."""
    n = states.shape[0]
    mtf_batch_nb(kern, np.array([ts], dtype=np.int64), o.reshape(1, n), h.reshape(1, n),
                 l.reshape(1, n), c.reshape(1, n), v.reshape(1, n), cfg.base_ms, cfg.htf_ms,
                 cfg.htf_off, use_htf, states, out.reshape((1, *out.shape)), 0, n)


def use_htf_mask(profile: Profile, symbols: Sequence[str] | None = None) -> np.ndarray:
    """Per asset (``symbols``, default ``profile.assets``): True for core assets (MTF)."""
    core = set(profile.core_assets)
    syms = profile.assets if symbols is None else symbols
    return np.array([s in core for s in syms], dtype=np.bool_)


def compute_mtf_ratings(
    cfg: MtfConfig,
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    use_htf: np.ndarray | None = None,
    *,
    votes: bool = False,
    states: np.ndarray | None = None,
    kernel: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch MTF ratings over aligned candles (``ts`` bar open times; prices
    ``(n_bars, n_assets)``, NaN = missing bar).

    Returns ``(ratings, states)``: ratings ``(n_bars, n_assets, n_tf, 3 or N_RATING_OUT)``
    (``votes=True`` adds the component votes) and the final per-asset states (pass them
    back as ``states`` to continue, or hand them to the daemon). ``kernel``: the rating
    kernel's address (default :func:`tandem.core.indicators.rating.rating_kernel`; the JIT
    warm-up passes a stand-in's to compile this loop without compiling the kernel).
    """
    close = np.asarray(close, dtype=np.float64)
    if close.ndim != 2:
        raise ValueError(f"prices must be (n_bars, n_assets), got {close.shape}")
    n_assets = close.shape[1]
    if states is not None and states.shape != (n_assets, cfg.state_size):
        raise ValueError(f"states must be {(n_assets, cfg.state_size)}, got {states.shape}")
    # The rating kernel first (on an empty cache: compiled here, the biggest compile), then
    # this loop's own kernels, which a JIT warm-up worker may be compiling meanwhile.
    kern = rating_kernel() if kernel is None else kernel
    jit_ready("mtf")
    if states is None:
        states = new_mtf_states(n_assets, cfg.n_htf)
    if use_htf is None:
        use_htf = np.ones(n_assets, dtype=np.bool_)
    arrays = [np.ascontiguousarray(x, dtype=np.float64) for x in (open_, high, low, close, volume)]
    ts = np.asarray(ts, dtype=np.int64)
    use_htf = np.asarray(use_htf, dtype=np.bool_)
    n_cols = N_RATING_OUT if votes else N_RATINGS
    res = np.empty((close.shape[0], n_assets, 1 + cfg.n_htf, n_cols))
    n_threads = max(1, min(n_assets, numba.config.NUMBA_NUM_THREADS))
    # Contiguous ranges of assets per thread: interleaved assets would have the threads
    # writing the same cache lines of ``res`` at the same time.
    bounds = np.linspace(0, n_assets, n_threads + 1).round().astype(np.int64)

    def run(part: int) -> None:
        mtf_batch_nb(kern, ts, *arrays, cfg.base_ms, cfg.htf_ms, cfg.htf_off, use_htf, states, res,
                     bounds[part], bounds[part + 1])

    if n_threads == 1:
        run(0)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, range(n_threads)))  # list(): re-raise a worker's error
    return res, states


_MAGIC = b"TMTF"
_HEADER = struct.Struct("<4sHHHqH")  # magic, version, rating state size, n_rating_out, base_ms, n_htf


class MtfRatingStates:
    """Streaming MTF ratings of several assets stepped one time slice at a time (the
    daemon's face), checkpointable as bytes. Uses the batch's step kernel, so a replay
    through it equals :func:`compute_mtf_ratings` bit for bit."""

    VERSION = 1

    def __init__(self, base_tf: str, htfs: Sequence[str], use_htf: Sequence[bool]):
        self.cfg = MtfConfig(base_tf, list(htfs))
        self.use_htf = np.array(use_htf, dtype=np.bool_).reshape(-1)
        self.states = new_mtf_states(self.use_htf.shape[0], self.cfg.n_htf)
        self._out = np.empty((self.use_htf.shape[0], 1 + self.cfg.n_htf, N_RATING_OUT))

    @classmethod
    def from_profile(cls, profile: Profile, symbols: Sequence[str] | None = None) -> MtfRatingStates:
        """States for ``symbols`` (default ``profile.assets``); core assets get the HTFs."""
        return cls(profile.base_timeframe, profile.htfs, use_htf_mask(profile, symbols))

    @property
    def n_assets(self) -> int:
        return int(self.use_htf.shape[0])

    def step_slice(self, ts: int, o, h, l, c, v) -> np.ndarray:  # noqa: E741
        """Consume one time slice (prices ``(n_assets,)``, NaN = missing bar); return a
        copy of ``(n_assets, 1 + n_htf, N_RATING_OUT)``."""
        cfg = self.cfg
        arrs = [np.ascontiguousarray(x, dtype=np.float64).reshape(self.n_assets) for x in (o, h, l, c, v)]
        mtf_slice(rating_kernel(), cfg, self.use_htf, self.states, int(ts), *arrs, self._out)
        return self._out.copy()

    def to_bytes(self) -> bytes:
        """Checkpoint: a header (layout, timeframes, HTF mask) and the raw float64 states."""
        tfs = ",".join(self.cfg.timeframes).encode()
        head = _HEADER.pack(_MAGIC, self.VERSION, RATING_STATE_SIZE, N_RATING_OUT, self.cfg.base_ms, self.cfg.n_htf)
        return (
            head
            + struct.pack("<IH", self.n_assets, len(tfs))
            + tfs
            + self.use_htf.astype(np.uint8).tobytes()
            + self.states.astype("<f8").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> MtfRatingStates:
        """Restore a checkpoint; refuses one written with another state layout."""
        if len(data) < _HEADER.size:
            raise ValueError("not an MTF rating state checkpoint (too short)")
        magic, ver, rss, nro, _base_ms, _n_htf = _HEADER.unpack_from(data, 0)
        if magic != _MAGIC or ver != cls.VERSION:
            raise ValueError("not an MTF rating state checkpoint (bad magic/version)")
        if rss != RATING_STATE_SIZE or nro != N_RATING_OUT:
            raise ValueError(
                f"checkpoint layout (rating state {rss}, out {nro}) differs from this build "
                f"({RATING_STATE_SIZE}, {N_RATING_OUT}); warm up again"
            )
        pos = _HEADER.size
        n_assets, n = struct.unpack_from("<IH", data, pos)
        pos += struct.calcsize("<IH")
        tfs = data[pos : pos + n].decode().split(",")
        pos += n
        mask = np.frombuffer(data, dtype=np.uint8, count=n_assets, offset=pos).astype(np.bool_)
        pos += n_assets
        obj = cls(tfs[0], tfs[1:], mask)
        states = np.frombuffer(data, dtype="<f8", offset=pos).astype(np.float64)
        if states.shape[0] != n_assets * obj.cfg.state_size:
            raise ValueError("checkpoint truncated or corrupt")
        obj.states = states.reshape(n_assets, obj.cfg.state_size)
        return obj


class MtfRatingState:
    """Streaming MTF ratings of one asset (a one-asset :class:`MtfRatingStates`)."""

    def __init__(self, base_tf: str, htfs: Sequence[str], *, use_htf: bool = True):
        self._multi = MtfRatingStates(base_tf, htfs, [use_htf])

    @property
    def cfg(self) -> MtfConfig:
        return self._multi.cfg

    @property
    def state(self) -> np.ndarray:
        """The flat state array (a view: checkpoint with :meth:`to_bytes`)."""
        return self._multi.states[0]

    def step(self, ts: int, o: float, h: float, l: float, c: float, v: float) -> np.ndarray:  # noqa: E741
        """Consume one closed base bar; return a copy of ``(1 + n_htf, N_RATING_OUT)``."""
        return self._multi.step_slice(ts, o, h, l, c, v)[0]

    def to_bytes(self) -> bytes:
        return self._multi.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> MtfRatingState:
        multi = MtfRatingStates.from_bytes(data)
        if multi.n_assets != 1:
            raise ValueError(f"checkpoint holds {multi.n_assets} assets, not one")
        obj = cls.__new__(cls)
        obj._multi = multi
        return obj
