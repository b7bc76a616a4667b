from __future__ import annotations

import framecast
import framecast.client


def test_top_level_reexports() -> None:
    for name in ("connect", "connect_sync", "Subscription", "ReceivedFrame"):
        assert getattr(framecast, name) is getattr(framecast.client, name)


def test_public_names_exist() -> None:
    for name in framecast.client.__all__:
        assert hasattr(framecast.client, name), name
