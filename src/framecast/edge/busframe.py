"""One frame as the edge read it from the bus, framed once as a WebSocket message for every viewer.

A class of the compiled hot path (hotpath.py): every viewer reads these fields for every frame, and a
compiled class reads them from a C struct, where a dataclass of the fanout module would look each one up.
"""

from __future__ import annotations

from typing import Final

from framecast.edge.wsconn import binary_message


class BusFrame:
    """One frame as read from the bus; `data` (and `wire`) are shared by every viewer, never copied."""

    __slots__ = ("capture_us", "data", "frame_id", "keyframe", "read_us", "tier_index", "wire")

    def __init__(self, data: bytes, frame_id: int, capture_us: int, tier_index: int, read_us: int,
                 keyframe: bool = True) -> None:
        self.data: Final = data
        self.frame_id: Final = frame_id
        self.capture_us: Final = capture_us
        self.tier_index: Final = tier_index
        self.read_us: Final = read_us
        self.keyframe: Final = keyframe  # JPEG frames always are; H.264 frames when the header's flag says so
        self.wire: Final = binary_message(data)  # `data` framed once as a WebSocket binary message

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return (f"BusFrame(frame_id={self.frame_id}, capture_us={self.capture_us}, tier_index={self.tier_index}, "
                f"keyframe={self.keyframe}, {len(self.data)} bytes)")
