"""Shared test fixtures.

Real exchange candles live in ``../shared/data`` (or ``$TANDEM_TEST_DATA``). They are never
committed; tests that need them use the ``shared_data`` fixture and skip with a clear message
where the folder is absent (as on a user's fresh clone).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# No JIT warm-up worker processes during the suite (core.warmup): the suite keeps every core
# busy already, so a worker would only compete with the tests; tests/test_warmup.py forces
# it where it is the subject. Subprocesses (the CLI tests) inherit the setting.
os.environ.setdefault("TANDEM_WARMUP", "0")


def shared_data_dir() -> Path | None:
    """Folder with the real candles, or None when this machine has none."""
    env = os.environ.get("TANDEM_TEST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.csv")):
            return path
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real candles not found: set TANDEM_TEST_DATA or provide ../shared/data")
    return path


def read_shared_csv(folder: Path, name: str) -> pd.DataFrame:
    """Read one ``<exchange>_<BASE-QUOTE>_<tf>.csv`` file; skip the test if it is missing."""
    path = folder / name
    if not path.exists():
        pytest.skip(f"{name} not found in {folder}")
    return pd.read_csv(path)


@pytest.fixture(scope="session")
def btc_1h(shared_data: Path) -> pd.DataFrame:
    return read_shared_csv(shared_data, "binance_BTC-USDT_1h.csv")


# Exchange emulator fixtures (127.0.0.1, port 0), shared by emulator/download/daemon tests.
from tests.emulator_fixtures import (  # noqa: E402,F401
    emulator,
    emulator_factory,
    pro_exchange_factory,
)
