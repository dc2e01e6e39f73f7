"""The daemon imports ccxt with its exchanges deferred (daemon/ccxt_lazy.py): the same names
resolve to the same kinds of objects as after a plain ``import ccxt.pro``, and only the
exchanges asked for are loaded."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

_NAMES = """
import json, sys, types
import ccxt, ccxt.async_support, ccxt.pro
out = {}
for pkg in (ccxt, ccxt.async_support, ccxt.pro):
    for n in pkg.exchanges:
        getattr(pkg, n)
for pkg in (ccxt, ccxt.async_support, ccxt.pro):
    names = {}
    for n in sorted(set(dir(pkg)) | set(pkg.exchanges)):
        if n.startswith("_") or n == "_lazy":
            continue
        v = getattr(pkg, n)
        if isinstance(v, types.ModuleType):
            names[n] = "module:" + v.__name__
        else:
            names[n] = f"{type(v).__name__}:{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', '')}"
    out[pkg.__name__] = names
print(json.dumps(out))
"""


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_deferred_ccxt_has_every_name_of_the_eager_one() -> None:
    eager = json.loads(_run(_NAMES))
    lazy = json.loads(_run("import tandem.daemon\n" + _NAMES))
    assert lazy == eager
    assert len(eager["ccxt.pro"]) > 100


def test_only_the_venue_asked_for_is_loaded() -> None:
    code = ("import tandem.daemon, sys\nassert 'ccxt' not in sys.modules\n"
            "import ccxt.pro\nex = ccxt.pro.binance({})\n"
            "from ccxt.async_support.okx import okx\nassert ccxt.async_support.okx is okx\n"
            "assert issubclass(ccxt.pro.binance, ccxt.async_support.binance)\n"
            "print(sorted(m for m in sys.modules if m.count('.') == 1 and m.startswith('ccxt.')"
            " or m.count('.') == 2 and m.startswith(('ccxt.pro.', 'ccxt.async_support.'))))")
    loaded = eval(_run(code))  # noqa: S307 - our own printed list
    exchanges = {m.rsplit(".", 1)[1] for m in loaded} - {"base", "abstract", "async_support", "pro", "static_dependencies"}
    assert exchanges == {"binance", "okx"}
