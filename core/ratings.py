"""TradingView Technical Ratings: the public face.

Kernels (numba) live in :mod:`tandem.core.indicators.rating`; this module re-exports the contract
names other rooms build on (``new_rating_state``, ``RATING_STATE_SIZE``, ``N_RATING_OUT``,
``VOTE_NAMES``, ``rating_step_nb``, ``RATING_WARMUP_BARS``) and adds the pandas-facing
``compute_ratings`` and the streaming ``RatingState``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from tandem.core.candles import check_bar, validate_candles
from tandem.core.indicators.rating import (
    LABEL_NONE,
    LABELS,
    N_MA_VOTES,
    N_OSC_VOTES,
    N_RATING_OUT,
    OUT_ALL,
    OUT_MA,
    OUT_OSC,
    OUT_VOTES,
    RATING_STATE_SIZE,
    RATING_WARMUP_BARS,
    VOTE_NAMES,
    label_code_nb,
    new_rating_state,
    new_rating_states,
    rating_step_nb,
    ratings_nb,
)

if TYPE_CHECKING:  # pandas is imported where it is used: the streaming path never needs it
    import pandas as pd

__all__ = [
    "LABELS",
    "LABEL_NONE",
    "N_MA_VOTES",
    "N_OSC_VOTES",
    "N_RATING_OUT",
    "OUT_ALL",
    "OUT_MA",
    "OUT_OSC",
    "OUT_VOTES",
    "RATING_STATE_SIZE",
    "RATING_WARMUP_BARS",
    "VOTE_NAMES",
    "label_code_nb",
    "new_rating_state",
    "new_rating_states",
    "rating_step_nb",
    "ratings_nb",
    "Rating",
    "RatingState",
    "compute_ratings",
    "label_of",
]

# ---------------------------------------------------------------------------------------
# Python faces (pandas, checkpointing); the kernels stay pandas-free.


def label_of(v: float) -> str | None:
    """The TradingView label of a rating value (None for NaN)."""
    # the kernel's own Python source: no compiled-code load for a scalar (cached start)
    code = label_code_nb.py_func(float(v))
    return None if code == LABEL_NONE else LABELS[code]


class Rating(NamedTuple):
    """One bar's ratings as returned by :meth:`RatingState.step`."""

    ts: int
    rating_ma: float
    rating_osc: float
    rating_all: float
    label: str | None
    votes: np.ndarray  # float64[26] in VOTE_NAMES order (a copy)


_MAGIC = b"TNDRRATE"
_VERSION = 1
_HEADER = struct.Struct("<8sIIqq")  # magic, version, state size, n_bars, last_ts (-1: none)


class RatingState:
    """Streaming ratings for one asset (one timeframe): what the daemon holds.

    ``step`` validates the bar first (same rules and message as :func:`compute_ratings`,
    the row number being the count of bars accepted so far) and leaves the state
    untouched when it rejects it. ``to_bytes`` / ``from_bytes`` checkpoint it exactly.
    """

    def __init__(self) -> None:
        self.state: np.ndarray = new_rating_state()
        self.n_bars: int = 0
        self.last_ts: int | None = None
        self._out = np.empty(N_RATING_OUT)

    def step(self, ts: int, o: float, h: float, lo: float, c: float, v: float) -> Rating:
        """Consume one closed bar; return its ratings."""
        ts = int(ts)
        o, h, lo, c, v = float(o), float(h), float(lo), float(c), float(v)
        check_bar(self.n_bars, ts, o, h, lo, c, v, self.last_ts)
        out = self._out
        rating_step_nb(self.state, o, h, lo, c, v, out)
        self.n_bars += 1
        self.last_ts = ts
        return Rating(
            ts,
            float(out[OUT_MA]),
            float(out[OUT_OSC]),
            float(out[OUT_ALL]),
            label_of(out[OUT_ALL]),
            out[OUT_VOTES:].copy(),
        )

    @property
    def warmed_up(self) -> bool:
        """True once every vote can be available (``RATING_WARMUP_BARS`` bars seen)."""
        return self.n_bars >= RATING_WARMUP_BARS

    def to_bytes(self) -> bytes:
        """Checkpoint: a small header plus the raw little-endian float64 state."""
        last = -1 if self.last_ts is None else self.last_ts
        head = _HEADER.pack(_MAGIC, _VERSION, RATING_STATE_SIZE, self.n_bars, last)
        return head + self.state.astype("<f8", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> RatingState:
        """Restore a checkpoint written by :meth:`to_bytes` (raises ValueError if foreign)."""
        if len(data) < _HEADER.size:
            raise ValueError("rating checkpoint too short")
        magic, version, size, n_bars, last = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a rating checkpoint (magic {magic!r}, version {version})")
        if size != RATING_STATE_SIZE or len(data) != _HEADER.size + 8 * size:
            raise ValueError(
                f"rating checkpoint holds {size} floats, this build expects {RATING_STATE_SIZE}"
            )
        self = cls()
        self.state = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
        self.n_bars = n_bars
        self.last_ts = None if last == -1 else last
        return self


def _timestamps(candles: pd.DataFrame) -> np.ndarray:
    import pandas as pd

    for col in ("ts", "timestamp"):
        if col in candles.columns:
            return candles[col].to_numpy()
    if isinstance(candles.index, pd.DatetimeIndex):
        return candles.index.as_unit("ms").asi8
    raise ValueError("candles need a 'ts' or 'timestamp' column (int ms) or a DatetimeIndex")


def compute_ratings(candles: pd.DataFrame, votes: bool = False) -> pd.DataFrame:
    """Ratings of one candle series (columns open, high, low, close, volume and ts/timestamp).

    Returns a frame on the same index with ``rating_ma, rating_osc, rating_all, label``
    (an ordered categorical of ``LABELS``; missing while warming up) and, with
    ``votes=True``, one ``vote_<name>`` column per component. Raises ``ValueError`` naming
    the first bad row (see :mod:`tandem.core.candles`).
    """
    import pandas as pd

    missing = [k for k in ("open", "high", "low", "close", "volume") if k not in candles.columns]
    if missing:
        raise ValueError(f"candles lack column(s) {missing}")
    ts = _timestamps(candles)
    cols = [
        candles[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")
    ]
    validate_candles(ts, *cols)
    out = ratings_nb(*[np.ascontiguousarray(x) for x in cols], new_rating_state())
    codes = np.array([label_code_nb(x) for x in out[:, OUT_ALL]], dtype=np.int64)
    label = pd.Categorical.from_codes(codes, categories=list(LABELS), ordered=True)
    frame = pd.DataFrame(
        {
            "rating_ma": out[:, OUT_MA],
            "rating_osc": out[:, OUT_OSC],
            "rating_all": out[:, OUT_ALL],
            "label": label,
        },
        index=candles.index,
    )
    if votes:
        for j, name in enumerate(VOTE_NAMES):
            frame[f"vote_{name}"] = out[:, OUT_VOTES + j]
    return frame
