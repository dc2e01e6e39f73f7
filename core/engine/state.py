"""Engine state: creation, validation of inputs, and byte (de)serialisation."""

from __future__ import annotations

import struct

import numpy as np
from tandem.core.engine.layout import (
    A_BLOCK,
    A_ENTRY,
    A_LAST_CLOSE,
    A_PEAK,
    A_POS,
    A_SL,
    A_TP,
    N_ASTATE,
    N_PSTATE,
    S_CASH,
    S_LAST_TS,
    S_SKIP_MIN_TRADE,
    S_SKIP_UNFUNDED,
    S_STEPS,
)

_MAGIC = b"TNDMENG1"
_HEADER = struct.Struct("<8sIII")  # magic, n_assets, N_ASTATE, N_PSTATE


def new_state(n_assets: int, initial_cash: float) -> tuple[np.ndarray, np.ndarray]:
    """Fresh ``(astate, pstate)``: flat, armed, all cash."""
    if n_assets < 1:
        raise ValueError(f"n_assets must be >= 1, got {n_assets}")
    astate = np.full((n_assets, N_ASTATE), np.nan, dtype=np.float64)
    astate[:, A_POS] = 0.0
    astate[:, A_BLOCK] = 0.0
    for col in (A_ENTRY, A_SL, A_TP, A_PEAK, A_LAST_CLOSE):
        astate[:, col] = np.nan
    pstate = np.zeros(N_PSTATE, dtype=np.float64)
    pstate[S_CASH] = initial_cash
    pstate[S_STEPS] = 0.0
    pstate[S_LAST_TS] = -1.0
    pstate[S_SKIP_UNFUNDED] = 0.0
    pstate[S_SKIP_MIN_TRADE] = 0.0
    return astate, pstate


def state_to_bytes(astate: np.ndarray, pstate: np.ndarray) -> bytes:
    """Exact binary image of the state (little-endian float64, with a small header)."""
    head = _HEADER.pack(_MAGIC, astate.shape[0], astate.shape[1], pstate.shape[0])
    return head + astate.astype("<f8").tobytes() + pstate.astype("<f8").tobytes()


def state_from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`state_to_bytes`; rejects foreign or truncated data."""
    if len(data) < _HEADER.size:
        raise ValueError("engine state: data too short")
    magic, n_assets, n_a, n_p = _HEADER.unpack_from(data, 0)
    if magic != _MAGIC:
        raise ValueError("engine state: unknown format")
    if n_a != N_ASTATE or n_p != N_PSTATE:
        # Another core's layout (e.g. before the S_SKIP_* counters): its slots would load
        # shifted. Refused; the daemon then rebuilds the state from its journal.
        raise ValueError(
            f"engine state: saved with another layout ({n_a} asset / {n_p} "
            f"portfolio slots; this core has {N_ASTATE} / {N_PSTATE})"
        )
    body = np.frombuffer(data, dtype="<f8", offset=_HEADER.size)
    if body.size != n_assets * n_a + n_p:
        raise ValueError("engine state: size does not match its header")
    astate = body[: n_assets * n_a].reshape(n_assets, n_a).astype(np.float64)
    pstate = body[n_assets * n_a :].astype(np.float64)
    return astate, pstate
