"""Fault plans: what the emulator should break next, counted down as faults fire.

The emulator consults these at three points: the websocket handshake
(:class:`HandshakeFault`), each REST request (:class:`RestFault`), and each outgoing kline
event (:class:`MessageFault`). Connection-level faults (close frame, TCP abort, silent
socket) act immediately and live on the emulator itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class MessageFaultKind(StrEnum):
    """How one outgoing kline event is disturbed."""

    DUPLICATE = "duplicate"  # sent twice in a row
    OUT_OF_ORDER = "out_of_order"  # held back and sent right after the next event
    LATE = "late"  # held back until the virtual clock passes E + delay_ms
    MALFORMED = "malformed"  # a broken JSON frame is sent just before it (event kept)
    DROP = "drop"  # never sent (a lost message: only REST can recover it)


@dataclass
class MessageFault:
    """Disturb the next ``count`` kline events that match ``symbol`` / ``closing_only``."""

    kind: MessageFaultKind
    count: int = 1
    symbol: str | None = None  # unified symbol; None = any
    closing_only: bool = True  # only ``x: true`` events (those the engine consumes)
    delay_ms: int = 0  # LATE only: virtual time the event is held for

    def matches(self, symbol: str, closed: bool) -> bool:
        return self.count > 0 and (self.symbol in (None, symbol)) and (closed or not self.closing_only)


@dataclass
class RestFault:
    """Answer the next ``count`` REST requests under ``path_prefix`` badly.

    ``status`` >= 500 returns Binance's internal-error body with that status;
    ``delay_s`` > 0 instead stalls the response that long (a client timeout).
    """

    count: int = 1
    status: int = 503
    delay_s: float = 0.0
    path_prefix: str = "/api/v3/klines"

    def matches(self, path: str) -> bool:
        return self.count > 0 and path.startswith(self.path_prefix)


@dataclass
class HandshakeFault:
    """Refuse the next ``count`` websocket handshakes with an HTTP ``status``."""

    count: int = 1
    status: int = 503


@dataclass
class FaultPlan:
    """All pending faults (mutated by the emulator as they fire)."""

    messages: list[MessageFault] = field(default_factory=list)
    rest: list[RestFault] = field(default_factory=list)
    handshakes: list[HandshakeFault] = field(default_factory=list)

    def take_message(self, symbol: str, closed: bool) -> MessageFault | None:
        """The first pending message fault matching this event, counted down."""
        for fault in self.messages:
            if fault.matches(symbol, closed):
                fault.count -= 1
                return fault
        return None

    def take_rest(self, path: str) -> RestFault | None:
        for fault in self.rest:
            if fault.matches(path):
                fault.count -= 1
                return fault
        return None

    def take_handshake(self) -> HandshakeFault | None:
        for fault in self.handshakes:
            if fault.count > 0:
                fault.count -= 1
                return fault
        return None

    def pending(self) -> int:
        """How many fault firings are still armed (tests assert this reaches 0)."""
        return sum(f.count for f in (*self.messages, *self.rest, *self.handshakes))
