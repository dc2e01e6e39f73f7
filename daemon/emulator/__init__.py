"""Exchange emulator: Binance spot REST + websocket kline streams on a virtual clock.

See :mod:`daemon.emulator.server` for what is served and the fault-injection API;
:mod:`daemon.emulator.bybit` and :mod:`daemon.emulator.okx` speak those venues' protocols.
"""

from daemon.emulator.faults import FaultPlan, MessageFault, MessageFaultKind, RestFault
from daemon.emulator.market import MarketData, kline_event, kline_event_json, kline_row, partial_bar
from daemon.emulator.server import Emulator

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
