"""Operations: health model, Prometheus metrics, read-only HTTP endpoint, systemd notify.

The daemon holds one ``Ops`` (``daemon.ops.runtime``) and calls its small event API; the
pieces are importable on their own for tests and tools.

Names are imported lazily (PEP 562) so that ``python -m daemon.ops.healthcheck`` — run by
Docker every 30 s — loads only the stdlib, not aiohttp/pydantic/prometheus.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Health": "daemon.ops.health",
    "HealthConfig": "daemon.ops.health",
    "HealthReport": "daemon.ops.health",
    "InsecureBindError": "daemon.ops.http",
    "OpsServer": "daemon.ops.http",
    "StateProvider": "daemon.ops.http",
    "is_loopback_host": "daemon.ops.http",
    "Metrics": "daemon.ops.metrics",
    "SystemdNotifier": "daemon.ops.notify",
    "Ops": "daemon.ops.runtime",
    "OpsConfig": "daemon.ops.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'daemon.ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return __all__
