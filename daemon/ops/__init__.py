"""Operations: health model, Prometheus metrics, read-only HTTP endpoint, systemd notify.

The daemon holds one ``Ops`` (``tandem.daemon.ops.runtime``) and calls its small event API; the
pieces are importable on their own for tests and tools.

Names are imported lazily (PEP 562) so that ``python -m tandem.daemon.ops.healthcheck`` — run by
Docker every 30 s — loads only the stdlib, not aiohttp/pydantic/prometheus.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Health": "tandem.daemon.ops.health",
    "HealthConfig": "tandem.daemon.ops.health",
    "HealthReport": "tandem.daemon.ops.health",
    "InsecureBindError": "tandem.daemon.ops.http",
    "OpsServer": "tandem.daemon.ops.http",
    "StateProvider": "tandem.daemon.ops.http",
    "is_loopback_host": "tandem.daemon.ops.http",
    "Metrics": "tandem.daemon.ops.metrics",
    "SystemdNotifier": "tandem.daemon.ops.notify",
    "Ops": "tandem.daemon.ops.runtime",
    "OpsConfig": "tandem.daemon.ops.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tandem.daemon.ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return __all__
