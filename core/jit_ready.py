"""The one hook the core's stages call for the JIT warm-up: :func:`ready`.

Kept apart from :mod:`tandem.core.warmup` (which imports the stages to compile them in a worker),
so that the stages can import the hook without an import cycle.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: The :class:`core.warmup.WarmupBlock` of the enclosing ``jit_warmup`` block, if any.
_BLOCK: ContextVar[Any] = ContextVar("tandem_jit_warmup", default=None)


def ready(job: str) -> None:
    """Called by a core stage right before it runs the kernels of ``job`` (one of
    ``tandem.core.warmup.JOBS``): inside a ``tandem.core.warmup.jit_warmup`` block whose worker compiles
    them, block until that worker is done (they are then in the cache: loaded, not compiled
    again); otherwise return at once (a context-variable read)."""
    block = _BLOCK.get()
    if block is not None:
        block.ready(job)
