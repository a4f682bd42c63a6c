"""flux0-sync: mirror every flux0 session's events into a local SQLite archive."""

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
]
