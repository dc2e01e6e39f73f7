"""The live paper-trading daemon (``tandem-daemon``).

ccxt imports with its exchanges deferred (:mod:`tandem.daemon.ccxt_lazy`):
the daemon uses one venue of ccxt's hundred-odd, and the rest would stay resident.
"""

from tandem.daemon import ccxt_lazy

ccxt_lazy.install()
