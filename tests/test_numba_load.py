"""Cached core kernels load without numba's compiler set-up (core/numba_load.py).

Two fresh processes share one empty numba cache: the first compiles a kernel (the cache miss
still goes through numba's full pipeline), the second loads it. The second must give the same
numbers and must not have imported numba's lowering registries, the 0.2-0.35 s a warm
command used to spend before its first kernel ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
import numpy as np
from tandem.core.indicators.extremes import highlow_step_nb, new_highlow_state
s = new_highlow_state(3)
out = [bool(highlow_step_nb(s, hi, lo)) for hi, lo in [(3.0, 1.0), (5.0, 2.0), (4.0, 0.5), (2.0, 1.5)]]
print(json.dumps({"full": out, "state": s.tolist(),
                  "registries": "numba.np.linalg" in sys.modules,
                  "hits": sum(d.stats.cache_hits.total() for d in (highlow_step_nb,
                                                                   new_highlow_state))}))
"""


def _probe(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cached_kernel_loads_without_compiler_setup(tmp_path):
    cold = _probe(str(tmp_path))
    assert cold["hits"] == 0  # compiled through numba's pipeline, with the loader installed
    assert cold["registries"]  # a compile sets the whole compiler up
    warm = _probe(str(tmp_path))
    assert warm["hits"] == 2
    assert (warm["full"], warm["state"]) == (cold["full"], cold["state"])
    assert warm["full"] == [False, False, True, True]
    assert not warm["registries"]


def test_core_has_no_parallel_kernels():
    """The loader starts NRT only; a ``parallel=True`` kernel would need the threading layer."""
    from pathlib import Path

    core = Path(__file__).resolve().parents[1] / "core"
    offenders = [p.name for p in core.rglob("*.py")
                 if p.name != "numba_load.py" and "parallel=True" in p.read_text()]
    assert offenders == []
