"""Match paper fills with backtest fills and measure how each pair differs.

Fills are matched on ``(profile, symbol, ts, side, reason)`` plus an occurrence counter
(``occ``: the n-th fill with that key on its side, in journal order), so repeated keys pair
up in order instead of multiplying in a join. Every journal column except ``source`` and
``run_id`` is compared; equality is exact (``==`` on float64, the parity contract).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY: list[str] = ["profile", "symbol", "ts", "side", "reason"]
NUMERIC: list[str] = ["qty", "price", "fee", "position_after", "cash_after"]
TEXT: list[str] = ["intrabar", "fill_id"]

IDENTICAL = "identical"
WITHIN = "within_tolerance"
MISMATCHED = "mismatched"
MISSING_PAPER = "missing_in_paper"  # the backtest has the fill, the paper journal not
MISSING_BACKTEST = "missing_in_backtest"
STATUSES = (IDENTICAL, WITHIN, MISMATCHED, MISSING_PAPER, MISSING_BACKTEST)


@dataclass(frozen=True)
class Tolerance:
    """When a numeric difference still counts as agreement.

    A value pair agrees when ``|paper - backtest| <= abs + rel * max(|paper|, |backtest|)``;
    text columns (``intrabar``, ``fill_id``) must be equal, and a fill missing on one side
    is never within tolerance. ``equity`` (quote currency), when set, also bounds the
    largest absolute equity drift. The default is exact parity.
    """

    rel: float = 0.0
    abs: float = 0.0
    equity: float | None = None

    def __post_init__(self) -> None:
        # NaN compares False everywhere: an equity bound of NaN never failed (a silent pass);
        # a negative bound means nothing. Refused (ValueError: the CLI's exit 2).
        for name, v in (("--tolerance", self.rel), ("--abs-tolerance", self.abs),
                        ("--equity-tolerance", self.equity)):
            if v is not None and not v >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {v}")

    def agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 is NaN (no agreement);
            # a huge --tolerance overflows to an inf bound: agreement, as asked, no warning
            bound = self.abs + self.rel * np.maximum(np.abs(a), np.abs(b))
            # an inf on one side made the relative bound inf too: "within tolerance" (exit 0)
            return (a == b) | (np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= bound))


def _with_occ(fills: pd.DataFrame) -> pd.DataFrame:
    df = fills.reset_index(drop=True).copy()
    df["occ"] = df.groupby(KEY, sort=False).cumcount().astype("int64")
    df["row"] = np.arange(len(df), dtype=np.int64)
    return df


def match_fills(paper: pd.DataFrame, backtest: pd.DataFrame, tolerance: Tolerance | None = None) -> pd.DataFrame:
    """One row per matched pair or unmatched fill, in ``(profile, ts, symbol)`` order.

    Columns: the key and ``occ``; ``status`` (one of :data:`STATUSES`); for each compared
    column ``c``: ``c_paper``, ``c_backtest`` and, for numeric ones, ``d_c`` (paper minus
    backtest); ``fields`` (comma-separated names of the columns that differ, exactly);
    ``row_paper``/``row_backtest`` (position in each journal, -1 when absent).
    """
    tol = tolerance or Tolerance()
    p, b = _with_occ(paper), _with_occ(backtest)
    cols = [*NUMERIC, *TEXT, "row"]
    m = pd.merge(
        p[[*KEY, "occ", *cols]], b[[*KEY, "occ", *cols]],
        on=[*KEY, "occ"], how="outer", suffixes=("_paper", "_backtest"), indicator=True,
    )
    m["ts"] = m["ts"].astype("int64")
    for side in ("paper", "backtest"):
        m[f"row_{side}"] = m[f"row_{side}"].fillna(-1).astype("int64")
        for c in TEXT:
            m[f"{c}_{side}"] = m[f"{c}_{side}"].astype(object).where(m[f"{c}_{side}"].notna(), None)
    both = (m["_merge"] == "both").to_numpy()
    differs: list[np.ndarray] = []
    agree_all = np.ones(len(m), dtype=bool)
    for c in NUMERIC:
        a = m[f"{c}_paper"].to_numpy(np.float64)
        bb = m[f"{c}_backtest"].to_numpy(np.float64)
        m[f"d_{c}"] = a - bb
        differs.append(both & (a != bb))
        agree_all &= tol.agree(a, bb)
    for c in TEXT:
        d = both & (m[f"{c}_paper"].to_numpy() != m[f"{c}_backtest"].to_numpy())
        differs.append(d)
        agree_all &= ~d
    names = [*NUMERIC, *TEXT]
    diff_mat = np.column_stack(differs) if len(m) else np.zeros((0, len(names)), bool)
    m["fields"] = [",".join(n for n, f in zip(names, row, strict=True) if f) for row in diff_mat]
    status = np.where(
        m["_merge"] == "left_only", MISSING_BACKTEST,
        np.where(m["_merge"] == "right_only", MISSING_PAPER,
                 np.where(~diff_mat.any(axis=1), IDENTICAL, np.where(agree_all, WITHIN, MISMATCHED))),
    )
    m["status"] = status.astype(object)
    m = m.drop(columns="_merge")
    return m.sort_values(["profile", "ts", "symbol", "side", "reason", "occ"], kind="stable").reset_index(drop=True)


def relative_delta(row: pd.Series | dict, col: str) -> float:
    """``|paper - backtest| / max(|paper|, |backtest|)`` for one compared column (0 if both 0)."""
    a, b = float(row[f"{col}_paper"]), float(row[f"{col}_backtest"])
    scale = max(abs(a), abs(b))
    return 0.0 if a == b else abs(a - b) / scale if scale else float("inf")
