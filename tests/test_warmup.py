"""core.warmup: worker processes fill the numba cache that a later process then loads.

Each test uses its own empty cache folder. Only the engine group is compiled here (a few
seconds); the ratings group runs the same machinery with a bigger kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import warmup
from core.manifest import load_manifest, parse_manifest
from core.numba_cache import core_source_hash

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def profile():  # noqa: ANN201
    return load_manifest(REPO / "manifest.json").profile("crypto_rating_all")


@pytest.fixture
def cache(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """An empty cache root; this process's numba folder points into it like a fresh one's."""
    from numba.core import config

    folder = tmp_path / f"core-{core_source_hash()}"
    monkeypatch.setattr(config, "CACHE_DIR", str(folder))
    return tmp_path


def load_in_fresh_process(root: Path, profile_name: str = "crypto_rating_all") -> dict:
    """Run the engine job in a new interpreter on ``root``; report the kernel's cache use."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from core import warmup\n"
        "from core.manifest import load_manifest\n"
        f"p = load_manifest({str(REPO / 'manifest.json')!r}).profile({profile_name!r})\n"
        "warmup.run_jobs(p, ['engine'])\n"
        "from core.engine.kernels import run_batch_nb as k\n"
        "print(json.dumps({'hits': sum(k.stats.cache_hits.values()),\n"
        "                  'misses': sum(k.stats.cache_misses.values())}))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(root))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_markers_and_switch(profile, cache, monkeypatch) -> None:  # noqa: ANN001
    assert not warmup.is_warm(profile, "engine")
    warmup.mark_warm(profile, ["engine"], seconds={"engine": 1.5})
    assert warmup.is_warm(profile, "engine") and not warmup.is_warm(profile, "ratings")
    assert warmup.job_seconds(profile, "engine") == 1.5
    # The engine kernel is typed by the execution mode: another mode is another job.
    data = profile.model_dump(mode="json")
    data["execution"]["mode"] = "portfolio"
    data["execution"]["long_short"] = False
    port = parse_manifest({"profiles": {"p": data}}, source="t").profile("p")
    assert warmup.job_key(port, "engine") != warmup.job_key(profile, "engine")
    assert not warmup.is_warm(port, "engine")
    # Warm jobs spawn nothing; TANDEM_WARMUP=0 spawns nothing either.
    assert warmup.start_warmup(profile, (("engine",),)).groups == []
    monkeypatch.setenv(warmup.ENV_SWITCH, "0")
    assert warmup.start_warmup(port, (("engine",),)).groups == []


def test_worker_fills_the_cache_for_a_fresh_process(profile, cache) -> None:  # noqa: ANN001
    w = warmup.start_warmup(profile, (("engine",),), force=True)
    assert w.groups == [["engine"]]
    info = w.wait(timeout=300)
    assert info["failed"] == [], info
    assert warmup.is_warm(profile, "engine")
    assert warmup.job_seconds(profile, "engine") > 0.0
    # A new process finds the kernel in the cache: loaded, not compiled.
    assert load_in_fresh_process(cache) == {"hits": 1, "misses": 0}


def test_two_workers_compiling_the_same_kernel_at_once(profile, cache) -> None:  # noqa: ANN001
    """Both write the same cache entry concurrently (atomic renames): both succeed and the
    entry loads cleanly afterwards, with a single index entry for the one signature."""
    w = warmup.start_warmup(profile, (("engine",), ("engine",)), force=True)
    assert len(w.procs) == 2
    info = w.wait(timeout=300)
    assert info["failed"] == [], info
    index = list(Path(warmup.cache_dir()).rglob("kernels.run_batch_nb-*.nbi"))
    assert len(index) == 1
    assert len(list(index[0].parent.glob("kernels.run_batch_nb-*.nbc"))) == 1
    assert not list(index[0].parent.glob("*.tmp.*"))  # no torn temporary files left
    assert load_in_fresh_process(cache) == {"hits": 1, "misses": 0}
