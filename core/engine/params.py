"""Engine parameter vector: layout, codes and the validated Python-facing config.

The numba kernels take every setting as one flat ``float64`` array (``params``) so that one
compiled signature serves every configuration and the daemon and the backtest pass exactly
the same numbers. :class:`EngineConfig` is the validated, manifest-named face of that array.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

# --- parameter vector layout -------------------------------------------------------------
P_SL = 0  # stop_loss_pct, fraction; 0 = off
P_TP = 1  # take_profit_pct, fraction; 0 = off
P_TRAIL = 2  # trailing_stop_pct, fraction; 0 = off
P_EXIT_ON_SIGNAL = 3  # 1.0 / 0.0
P_INTRABAR = 4  # INTRABAR_* code
P_MODE = 5  # MODE_* code
P_FEE = 6  # fee_rate, fraction of notional
P_SLIP = 7  # slippage as a fraction (slippage_bps / 1e4)
P_SIZING = 8  # SIZING_* code
P_SIZE_PCT = 9  # fraction of equity per entry (fraction sizing)
P_RISK_PCT = 10  # fraction of equity lost at the stop (risk sizing)
P_LONG_SHORT = 11  # 1.0 / 0.0
P_MAX_WEIGHT = 12  # portfolio weight cap
P_MIN_TRADE = 13  # minimum |trade value| in quote: portfolio trades, discrete entries
P_INITIAL_CASH = 14
N_PARAMS = 15

MODE_DISCRETE = 0
MODE_PORTFOLIO = 1
MODES = ("discrete", "portfolio")

SIZING_FRACTION = 0
SIZING_RISK = 1
SIZINGS = ("fraction", "risk")

# Intrabar policy codes. In a fill row, 0 means "not an ambiguous bar"; a policy code there
# means that policy decided which of SL/TP filled.
INTRABAR_NONE = 0
INTRABAR_PESSIMISTIC = 1
INTRABAR_OHLC = 2
INTRABAR_ADAPTIVE = 3
INTRABAR_NAMES = ("", "pessimistic", "ohlc", "adaptive")


def _off(x: float | None) -> float:
    """Manifest convention: None, NaN or 0 switch a stop off; the kernels use 0.0."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return 0.0
    return float(x)


class EngineConfig(BaseModel):
    """Engine settings with the manifest's names (docs/CONTRACTS.md, "Engine").

    Percentages are fractions (0.05 = 5 %). ``stop_loss_pct``, ``take_profit_pct`` and
    ``trailing_stop_pct`` accept None/NaN/0 for "off"; a negative value is an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["discrete", "portfolio"] = "discrete"
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None
    exit_on_signal: bool = True
    intrabar: Literal["pessimistic", "ohlc", "adaptive"] = "pessimistic"
    fee_rate: float = 0.001
    slippage_bps: float = 0.0
    sizing: Literal["fraction", "risk"] = "fraction"
    size_pct: float = 0.1
    risk_pct: float = 0.01
    # Shorts lock their proceeds and as much again; entries are funded from free cash
    # (kernels.py, "Funding"), so size_pct never adds up to leverage.
    long_short: bool = False
    max_weight: float = 1.0
    min_trade_value: float = 0.0
    initial_cash: float = 10_000.0

    @field_validator("stop_loss_pct", "take_profit_pct", "trailing_stop_pct")
    @classmethod
    def _stop_positive(cls, v: float | None, info) -> float | None:  # noqa: ANN001
        if v is None or math.isnan(v) or v == 0.0:
            return None  # one canonical "off", so saved configs compare and serialise cleanly
        if not math.isfinite(v) or v < 0.0:
            raise ValueError(f"{info.field_name} must be > 0 (or 0/None = off), got {v}")
        if info.field_name != "take_profit_pct" and v >= 1.0:
            raise ValueError(f"{info.field_name} must be < 1 (a fraction), got {v}")
        return v

    @field_validator("fee_rate", "slippage_bps", "min_trade_value")
    @classmethod
    def _non_negative(cls, v: float, info) -> float:  # noqa: ANN001
        if not math.isfinite(v) or v < 0.0:
            raise ValueError(f"{info.field_name} must be a finite number >= 0, got {v}")
        return v

    @field_validator("size_pct", "risk_pct", "max_weight")
    @classmethod
    def _unit_fraction(cls, v: float, info) -> float:  # noqa: ANN001
        if not math.isfinite(v) or v <= 0.0 or v > 1.0:
            raise ValueError(f"{info.field_name} must be in (0, 1], got {v}")
        return v

    @field_validator("initial_cash")
    @classmethod
    def _cash_positive(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0.0:
            raise ValueError(f"initial_cash must be > 0, got {v}")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> EngineConfig:
        if self.sizing == "risk" and _off(self.stop_loss_pct) == 0.0:
            raise ValueError("sizing='risk' needs stop_loss_pct > 0 (risk is measured to the stop)")
        if self.fee_rate >= 1.0:
            raise ValueError(f"fee_rate must be < 1, got {self.fee_rate}")
        if self.mode == "portfolio" and self.long_short:
            raise ValueError("portfolio mode is long-only (target weights are in [0, max_weight])")
        return self

    def to_params(self) -> np.ndarray:
        """The flat ``float64`` parameter vector the kernels read."""
        p = np.zeros(N_PARAMS, dtype=np.float64)
        p[P_SL] = _off(self.stop_loss_pct)
        p[P_TP] = _off(self.take_profit_pct)
        p[P_TRAIL] = _off(self.trailing_stop_pct)
        p[P_EXIT_ON_SIGNAL] = 1.0 if self.exit_on_signal else 0.0
        p[P_INTRABAR] = float(INTRABAR_NAMES.index(self.intrabar))
        p[P_MODE] = float(MODES.index(self.mode))
        p[P_FEE] = self.fee_rate
        p[P_SLIP] = self.slippage_bps / 1e4
        p[P_SIZING] = float(SIZINGS.index(self.sizing))
        p[P_SIZE_PCT] = self.size_pct
        p[P_RISK_PCT] = self.risk_pct
        p[P_LONG_SHORT] = 1.0 if self.long_short else 0.0
        p[P_MAX_WEIGHT] = self.max_weight
        p[P_MIN_TRADE] = self.min_trade_value
        p[P_INITIAL_CASH] = self.initial_cash
        return p
