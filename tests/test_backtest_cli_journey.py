"""``tandem-backtest`` as a new user drives it from the README and ``.env.example``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import sys
from tandem.backtest.cli import main
code = main(sys.argv[1:])
from numba.core import config
print(code, config.CACHE_DIR)
"""


def test_numba_cache_setting_is_applied(tmp_path: Path) -> None:
    """.env.example: TANDEM_NUMBA_CACHE_DIR is "exported as NUMBA_CACHE_DIR". Only the daemon
    did: ``tandem-backtest`` compiled its kernels into the default folder whatever the
    setting said. The command here stops at a missing --data folder, after the settings are
    read and before anything compiles."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=str(tmp_path / "elsewhere"),
               TANDEM_NUMBA_CACHE_DIR=str(tmp_path / "nc"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, "run", "--data", str(tmp_path / "none"),
                           "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    code, cache_dir = proc.stdout.split()
    assert code == "1", proc.stderr  # the missing data folder
    assert Path(cache_dir).parent == tmp_path / "nc", proc.stdout
