"""The daemon's strategy stepper: one closed time slice through the core, nothing else.

Per slice, in this order, and only with the core's step functions:

1. :func:`tandem.core.mtf.mtf_slice` — base and higher-timeframe ratings (warm-up included);
2. :func:`tandem.core.signals.signals_slice` — the combiner, with the profile's
   :class:`~tandem.core.signals.SignalParams`;
3. :meth:`tandem.core.engine.Engine.step_raw` — exits, entries, sizing, fees: the fills, turned
   into journal rows by :func:`tandem.core.journal.fills_frame`.

Each is the backtest's batch kernel over one bar (the engine's too): the same compiled
code. Warm-up slices (``trade=False``) run step 1 only, exactly as the batch driver seeds
its indicator state with the warm-up bars before its first tradable bar. No trading rule
lives here: the daemon and the backtest cannot drift apart by construction.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tandem.core.engine import Engine, EngineConfig
from tandem.core.engine.layout import (
    A_POS,
)
from tandem.core.indicators.rating import rating_kernel, stand_in_kernel
from tandem.core.journal import fill_records
from tandem.core.mtf import (
    N_RATINGS,
    MtfConfig,
    mtf_batch_nb,
    mtf_slice,
    new_mtf_states,
    use_htf_mask,
)
from tandem.core.ratings import N_RATING_OUT
from tandem.core.signals import SignalParams, signals_slice
from tandem.core.weighting import WeightParams, new_weight_state, weights_step_nb
from tandem.daemon.logconfig import get_logger
from tandem.daemon.slices import Slice

log = get_logger("daemon")


class ProfileStepper:
    """MTF ratings -> signals -> engine for one manifest profile (assets in manifest order)."""

    def __init__(self, profile, run_id: str, *, kernel: int | None = None):  # noqa: ANN001 - core.manifest.Profile
        self.profile = profile
        self.run_id = run_id
        self.symbols = list(profile.assets)
        n = len(self.symbols)
        self.mtf = MtfConfig.from_profile(profile)
        self.use_htf = np.ascontiguousarray(use_htf_mask(profile))
        self.states = new_mtf_states(n, self.mtf.n_htf)
        self._out = np.full((n, 1 + self.mtf.n_htf, N_RATING_OUT), np.nan)
        self.sp = SignalParams.from_profile(profile)
        self._sig = np.zeros(n, dtype=np.int8)
        self._score = np.empty(n)
        self._target = np.empty(n)
        self._kernel = kernel  # the rating kernel's address: loaded on the first step
        self.portfolio = profile.execution.mode == "portfolio"
        # core.weighting: only when a weighting setting is changed (the score rule alone
        # needs no state, and its checkpoints keep their layout).
        self.wp = None
        self.wstate = None
        if self.portfolio and not profile.portfolio.plain_score():
            self.wp = WeightParams(profile.portfolio)
            self.wstate = new_weight_state(n, self.wp.lookback)
        self._core = frozenset(profile.core_assets)
        self.engine = Engine(
            EngineConfig(**profile.engine_params()), self.symbols,
            profile=profile.name, run_id=run_id, source="paper",
        )

    def step(self, sl: Slice, *, trade: bool) -> list[dict[str, Any]]:
        """Step one slice; the journal rows of its fills (none during warm-up)."""
        if self._kernel is None:
            self._kernel = rating_kernel()
        mtf_slice(self._kernel, self.mtf, self.use_htf, self.states, sl.ts, sl.open, sl.high,
                  sl.low, sl.close, sl.volume, self._out)
        if not trade:
            if self.wp is not None:  # warm-up feeds the return window, as the batch does
                weights_step_nb(sl.close, self._sig, self._target, False, self.wstate,
                                *self.wp.args())
            return []
        ts_close = sl.ts + self.mtf.base_ms
        chosen = np.ascontiguousarray(self._out[:, :, self.sp.rating_column])
        signals_slice(self.sp, ts_close, chosen, self._sig, self._score, self._target)
        if self.wp is not None:
            weights_step_nb(sl.close, self._sig, self._target, True, self.wstate, *self.wp.args())
        signal = self._target if self.portfolio else self._sig
        raw = self.engine.step_raw(ts_close, sl.open, sl.high, sl.low, sl.close, signal)
        if len(raw) == 0:
            return []
        return self._journal_rows(raw)

    def warm_asset(self, j: int, ts: np.ndarray, values: np.ndarray) -> None:
        """Warm-up bars of asset ``j`` (``ts`` int64 ``(k,)``, ``values`` ``(k, 5)``: o, h,
        l, c, v) through the backtest's batch kernel on that asset's state row: the same
        steps as :meth:`step` with ``trade=False`` over slices where only this asset has a
        bar (tandem.daemon.warmstart)."""
        if self._kernel is None:
            self._kernel = rating_kernel()
        k = len(ts)
        cols = [np.ascontiguousarray(values[:, q]).reshape(k, 1) for q in range(5)]
        res = np.empty((k, 1, 1 + self.mtf.n_htf, N_RATINGS))
        mtf_batch_nb(self._kernel, ts, *cols, self.mtf.base_ms, self.mtf.htf_ms, self.mtf.htf_off,
                     self.use_htf[j : j + 1], self.states[j : j + 1], res, 0, 1)
        self._out[j, :, :N_RATINGS] = res[-1, 0]  # the latest ratings, for core_ratings()

    def wants_warm_window(self) -> bool:
        """True when the warm-up also feeds a weighting return window (:meth:`warm_window`)."""
        return self.wp is not None

    def warm_window(self, close: np.ndarray) -> None:
        """The weighting window's warm-up: ``close`` ``(n_slices, n_assets)`` (NaN = no
        bar), one row per warm-up slice in time order, as :meth:`step` feeds it."""
        for row in close:
            weights_step_nb(np.ascontiguousarray(row), self._sig, self._target, False,
                            self.wstate, *self.wp.args())

    def _journal_rows(self, raw: np.ndarray) -> list[dict[str, Any]]:
        """Journal rows of one slice's numeric fills (the core's one mapping)."""
        return fill_records(raw, self.symbols, self.profile.name, self.run_id, "paper")

    def prewarm(self) -> None:
        """Load/compile every kernel :meth:`step` uses, on a throwaway copy, so the first
        live slice does not pay for JIT compilation (seconds) while feeds wait.

        On an empty cache with two CPUs (:mod:`tandem.core.warmup`), a worker process compiles
        the rating kernel while this one compiles the MTF loop (running a stand-in kernel:
        the loop gets the kernel as an address), the combiner and the engine; then this one
        loads the kernel from the cache."""
        from tandem.core import warmup

        n = len(self.symbols)
        one = np.ones(n)
        worker = self._warmup = warmup.start_warmup(self.profile, warmup.DAEMON_GROUPS)
        stand_in = stand_in_kernel().address if worker.procs else None
        scratch = ProfileStepper(self.profile, "prewarm", kernel=stand_in)
        scratch.step(Slice(0, one, one * 1.01, one * 0.99, one, one, [], [], False), trade=True)
        info = worker.wait()
        if info["failed"] or info.get("error"):
            log.warning("jit_warmup_failed", failed=info["failed"], error=info.get("error"),
                        hint="compiling the rating kernel in this process instead")
        if self._kernel is None:
            self._kernel = rating_kernel()
        marker = self._warm_marker()
        try:  # best effort: only decides what the next start logs
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("ok")
        except OSError:
            pass

    def _warm_marker(self) -> Path:
        """Left in the numba cache folder after a prewarm (that folder is keyed by the
        core's sources, so a changed core starts without it). Keyed by what types the
        kernels: timeframes and execution mode."""
        from tandem.core import warmup

        p = self.profile
        typed = json.dumps([p.base_timeframe, list(p.htfs), p.execution.mode])
        return warmup.cache_dir() / f"warm-daemon-{hashlib.sha256(typed.encode()).hexdigest()[:10]}.ok"

    def is_cold(self) -> bool:
        """True when :meth:`prewarm` will (likely) compile rather than load: no prewarm
        finished with the current core and numba cache folder."""
        return not self._warm_marker().is_file()

    def cancel_prewarm(self) -> None:
        """Stop the warm-up worker processes of an abandoned :meth:`prewarm` (SIGTERM)."""
        worker = getattr(self, "_warmup", None)
        if worker is not None:
            worker.cancel()

    def core_ratings(self) -> dict[str, dict[str, float]]:
        """``{core asset: {timeframe: rating}}`` after the last step, the rating the profile
        trades on (NaN until warmed up; an HTF value holds until that HTF bar's next close).
        A read-only copy for the dashboard."""
        col = self.sp.rating_column
        tfs = self.mtf.timeframes
        out: dict[str, dict[str, float]] = {}
        for i, symbol in enumerate(self.symbols):
            if symbol in self._core:
                vals = self._out[i, :, col].tolist()
                out[symbol] = dict(zip(tfs, vals, strict=True))
        return out

    def blobs(self) -> dict[str, bytes]:
        """MTF/rating states and the engine, as restorable bytes."""
        buf = io.BytesIO()
        np.save(buf, self.states, allow_pickle=False)
        out = {"mtf": buf.getvalue(), "engine": self.engine.to_bytes()}
        if self.wstate is not None:
            wbuf = io.BytesIO()
            np.save(wbuf, self.wstate, allow_pickle=False)
            out["weights"] = wbuf.getvalue()
        return out

    def restore(self, blobs: dict[str, bytes]) -> None:
        states = np.load(io.BytesIO(blobs["mtf"]), allow_pickle=False)
        if states.shape != self.states.shape:
            raise ValueError(f"stored MTF state has shape {states.shape}, expected "
                             f"{self.states.shape}")
        self.states = np.ascontiguousarray(states)
        if self.wstate is not None:
            if "weights" not in blobs:
                raise ValueError("checkpoint has no portfolio weighting state")
            ws = np.load(io.BytesIO(blobs["weights"]), allow_pickle=False)
            if ws.shape != self.wstate.shape:
                raise ValueError(f"stored weighting state has shape {ws.shape}, expected "
                                 f"{self.wstate.shape}")
            self.wstate = np.ascontiguousarray(ws)
        if "engine" in blobs:
            self.engine = Engine.from_bytes(blobs["engine"])

    def positions(self) -> dict[str, float]:
        # tolist(): Python floats in one C loop (per slice, on the close-to-commit path)
        return dict(zip(self.symbols, self.engine.astate[:, A_POS].tolist(), strict=True))


def stepper_factory(profile) -> Callable[[str], ProfileStepper]:  # noqa: ANN001
    """``run_id -> ProfileStepper`` for :class:`tandem.daemon.app.Daemon`."""
    return lambda run_id: ProfileStepper(profile, run_id)
