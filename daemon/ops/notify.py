"""systemd's notify protocol (``sd_notify``) in a few lines of stdlib ``socket``.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for
the abstract namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC``. The daemon sends:

* ``READY=1`` once warm-up is done — systemd then reports the unit started;
* ``WATCHDOG=1`` every ``WatchdogSec/2`` — sent from an asyncio task, so a blocked event
  loop stops the pings and systemd restarts the service;
* ``STOPPING=1`` on SIGTERM, before the final slice/persist.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op returning False, so the daemon
calls it unconditionally. Send failures are swallowed: a monitoring channel must never take
the trading loop down.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

__all__ = ["SystemdNotifier"]


class SystemdNotifier:
    """Send ``sd_notify`` datagrams to ``$NOTIFY_SOCKET`` (no-op when unset)."""

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in Linux's abstract namespace (leading NUL byte).
        self._address: str | None = ("\0" + raw[1:]) if raw.startswith("@") else (raw or None)
        self._watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None
        self.sent: list[str] = []  # what was sent successfully, for logs/tests

    @property
    def enabled(self) -> bool:
        """True when systemd (or a test) is listening."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None when off."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, *states: str) -> bool:
        """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; True if sent."""
        if self._address is None or not states:
            return False
        msg = "\n".join(states)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(msg.encode(), self._address)
        except OSError:
            return False
        self.sent.append(msg)
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (optionally with a ``STATUS=`` line)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """Free-form ``STATUS=`` line shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    async def watchdog_loop(self, alive: Callable[[], bool] | None = None,
                            interval: float | None = None) -> None:
        """Ping ``WATCHDOG=1`` forever at ``interval`` (default: ``WatchdogSec/2``).

        ``alive`` lets the caller withhold a ping (e.g. the engine loop is wedged); returns
        at once when there is no watchdog to feed. Cancel the task to stop it.
        """
        interval = interval if interval is not None else self.watchdog_interval()
        if interval is None or not self.enabled:
            return
        while True:
            if alive is None or alive():
                self.watchdog()
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """``$WATCHDOG_USEC`` if it is meant for this process (``$WATCHDOG_PID`` unset or ours)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # inherited by a child: the watchdog belongs to our parent
    return usec if usec > 0 else None
