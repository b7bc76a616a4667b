"""framecast: live frames from GPU models to many remote viewers.

The client API (`framecast.connect`, `framecast.connect_sync`, `Subscription`,
`ReceivedFrame`) is imported on first use, so that the services do not pay for
client-only dependencies; type checkers see the real signatures.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framecast.client import ReceivedFrame, Subscription, connect, connect_sync

try:
    # one source for the version: pyproject's [project] version, as installed
    __version__ = metadata.version("framecast")
except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = ["ReceivedFrame", "Subscription", "__version__", "connect", "connect_sync"]
_CLIENT_NAMES = frozenset({"connect", "connect_sync", "Subscription", "ReceivedFrame"})


def __getattr__(name: str) -> object:
    if name in _CLIENT_NAMES:
        return getattr(importlib.import_module("framecast.client"), name)
    raise AttributeError(f"module 'framecast' has no attribute {name!r}")
