"""sd_notify over a real AF_UNIX datagram socket (as systemd listens), path and abstract."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile

import pytest
from tandem.daemon.ops.notify import SystemdNotifier


@pytest.fixture
def listener():
    """A datagram socket standing in for systemd's notify socket (short path: 108-byte limit)."""
    d = tempfile.mkdtemp(prefix="sdn")
    path = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()
    os.unlink(path)
    os.rmdir(d)


def recv_all(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return out


def test_disabled_without_socket():
    n = SystemdNotifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert n.watchdog_interval() is None


def test_ready_watchdog_stopping_datagrams(listener):
    path, sock = listener
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert n.ready("live") and n.watchdog() and n.stopping()
    assert sock.recv(4096) == b"READY=1\nSTATUS=live"
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace():
    name = f"tandem-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_send_failure_is_swallowed(tmp_path):
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.enabled and n.ready() is False


def test_watchdog_interval_is_half_of_watchdogsec():
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval() == 15.0
    assert SystemdNotifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval() is None
    assert SystemdNotifier({"WATCHDOG_USEC": "0"}).watchdog_interval() is None
    # $WATCHDOG_PID names another process: the watchdog is not ours.
    other = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier(other).watchdog_interval() is None
    mine = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier(mine).watchdog_interval() == 15.0


async def test_watchdog_loop_pings_and_respects_alive(listener):
    path, sock = listener
    n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # every 50 ms
    alive = {"v": True}
    task = asyncio.create_task(n.watchdog_loop(alive=lambda: alive["v"]))
    await asyncio.sleep(0.32)
    got = recv_all(sock)
    assert len(got) >= 4 and set(got) == {"WATCHDOG=1"}
    alive["v"] = False  # a wedged engine: pings stop, systemd would restart us
    await asyncio.sleep(0.06)
    recv_all(sock)
    await asyncio.sleep(0.2)
    assert recv_all(sock) == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    n.close()


async def test_watchdog_loop_returns_without_watchdog(listener):
    path, _ = listener
    await asyncio.wait_for(SystemdNotifier({"NOTIFY_SOCKET": path}).watchdog_loop(), 1)


async def test_ops_lifecycle_datagrams(listener):
    """Ops: STATUS while warming up, READY then watchdog pings, STOPPING exactly once."""
    from tandem.daemon.ops import Ops, OpsConfig

    path, sock = listener
    ops = Ops(OpsConfig(http_enabled=False),
              env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    await ops.start()
    assert sock.recv(4096) == b"STATUS=warming up"
    ops.ready()
    await asyncio.sleep(0.12)
    ops.stopping()
    ops.stopping()
    await ops.stop()
    got = recv_all(sock)
    assert got[0] == "READY=1\nSTATUS=live"
    assert "WATCHDOG=1" in got
    assert [m for m in got if m.startswith("STOPPING=1")] == ["STOPPING=1\nSTATUS=stopping"]
    assert ops.health.evaluate().phase == "stopping"
