"""Errors raised by the framecast client, all under `ClientError`.

Protocol violations by the edge raise the shared `framecast.protocol.ProtocolError`
(re-exported here) so that callers catch one class whatever part found the fault.
"""

from __future__ import annotations

from framecast.protocol import ProtocolError

__all__ = ["ClientError", "ConnectError", "ConnectionLost", "ProtocolError"]


class ClientError(Exception):
    """Base class of framecast client errors (bad URL, bad arguments, ...)."""


class ConnectError(ClientError):
    """The edge could not be reached, refused the viewer, or does not know the stream.

    `fatal` is true when retrying cannot help (unknown stream, authentication failed).
    `close_code` is the WebSocket close code or HTTP status that caused it, when known.
    """

    def __init__(self, message: str, *, fatal: bool = False, close_code: int | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.close_code = close_code


class ConnectionLost(ClientError):
    """The connection closed and reconnecting was not allowed (or gave up)."""

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code
