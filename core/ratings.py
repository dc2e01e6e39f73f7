"""TradingView Technical Ratings: the public face.

Kernels (numba) live in :mod:`core.indicators.rating`; this module re-exports the contract
names other rooms build on (``new_rating_state``, ``RATING_STATE_SIZE``, ``N_RATING_OUT``,
``VOTE_NAMES``, ``rating_step_nb``, ``RATING_WARMUP_BARS``) and adds the pandas-facing
``compute_ratings`` and the streaming ``RatingState``.
"""

from __future__ import annotations

from core.indicators.rating import (
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
    ratings_batch_nb,
    ratings_nb,
)

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
    "ratings_batch_nb",
    "ratings_nb",
]
