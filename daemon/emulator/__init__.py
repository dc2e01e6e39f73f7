"""Exchange emulator: Binance spot REST + websocket kline streams on a virtual clock.

See :mod:`tandem.daemon.emulator.server` for what is served and the fault-injection API;
:mod:`tandem.daemon.emulator.bybit` and :mod:`tandem.daemon.emulator.okx` speak those venues' protocols.
"""

from tandem.daemon.emulator.faults import FaultPlan, MessageFault, MessageFaultKind, RestFault
from tandem.daemon.emulator.market import (
    MarketData,
    kline_event,
    kline_event_json,
    kline_row,
    partial_bar,
)
from tandem.daemon.emulator.server import Emulator

__all__ = [
    "Emulator",
    "FaultPlan",
    "MarketData",
    "MessageFault",
    "MessageFaultKind",
    "RestFault",
    "kline_event",
    "kline_event_json",
    "kline_row",
    "partial_bar",
]
