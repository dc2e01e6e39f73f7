"""Operations: health model, Prometheus metrics, read-only HTTP endpoint, systemd notify.

The daemon holds one ``Ops`` (``daemon.ops.runtime``) and calls its small event API; the
pieces are importable on their own for tests and tools.
"""

from daemon.ops.health import Health, HealthConfig, HealthReport
from daemon.ops.http import InsecureBindError, OpsServer, StateProvider, is_loopback_host
from daemon.ops.metrics import Metrics
from daemon.ops.notify import SystemdNotifier
from daemon.ops.runtime import Ops, OpsConfig

__all__ = [
    "Health",
    "HealthConfig",
    "HealthReport",
    "InsecureBindError",
    "Metrics",
    "Ops",
    "OpsConfig",
    "OpsServer",
    "StateProvider",
    "SystemdNotifier",
    "is_loopback_host",
]
