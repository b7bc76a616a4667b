"""framecast: live frames from GPU models to many remote viewers.

The client API (`framecast.connect`) is imported lazily so that the services
do not pay for client-only dependencies.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

try:
    # one source for the version: pyproject's [project] version, as installed
    __version__ = metadata.version("framecast")
except metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name in ("connect", "connect_sync", "Subscription", "ReceivedFrame"):
        from framecast import client

        return getattr(client, name)
    raise AttributeError(name)
