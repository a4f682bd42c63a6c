"""flux0-sync: mirror every flux0 session's events into a local SQLite archive."""

import sys

from .stopflag import StopFlag

if sys.argv[:1] == ["-m"]:
    # ``python -m flux0sync`` is starting (Python sets argv[0] to "-m" while it locates the
    # module): take SIGTERM/SIGINT before the imports below, so a stop that arrives this early
    # ends in exit 0 too, never in a kill by the default handler or a KeyboardInterrupt.
    StopFlag().install()

from flux0lite import __version__

from .config import Config, ConfigError, load_config
from .store import Store, StoreError, StoreFullError
from .sync import PassResult, Syncer

__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "load_config",
    "Store",
    "StoreError",
    "StoreFullError",
    "Syncer",
    "PassResult",
    "StopFlag",
]
