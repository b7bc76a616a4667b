"""framecast: live frames from GPU models to many remote viewers.

The client API (`framecast.connect`) is imported lazily so that the services
do not pay for client-only dependencies.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("connect", "connect_sync", "Subscription", "ReceivedFrame"):
        from framecast import client

        return getattr(client, name)
    raise AttributeError(name)
