"""The framecast wire protocol, sans I/O.

A frame travels as one binary message: a fixed 40-byte little-endian header
followed by the encoded picture (JPEG, or H.264 for video tiers). The same bytes
are stored in the Redis stream entry, so the edge forwards them untouched.
Control messages are small JSON objects in text messages. Nothing here touches
a socket, an event loop or Redis; every malformed input raises `ProtocolError`.
The byte layout is documented in docs/protocol.md.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Final, Literal

from framecast import constants as C

_HEADER = struct.Struct(C.HEADER_FORMAT)
assert _HEADER.size == C.HEADER_SIZE

_U8_MAX: Final = 0xFF
_U16_MAX: Final = 0xFFFF
_U32_MAX: Final = 0xFFFF_FFFF
_U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF


class ProtocolError(ValueError):
    """Raised for any message that does not follow the framecast protocol."""


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """Everything a viewer needs to know about one frame, except its pixels."""

    frame_id: int
    capture_us: int
    width: int
    height: int
    tier: int = 0
    codec: int = C.CODEC_JPEG
    quality: int = 0
    flags: int = 0
    publish_us: int = 0
    payload_len: int = 0

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & C.FLAG_KEYFRAME)

    @property
    def codec_name(self) -> str:
        return C.CODEC_NAMES.get(self.codec, f"codec-{self.codec}")


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame message: the header and the encoded payload bytes."""

    header: FrameHeader
    payload: bytes


def _check_range(name: str, value: int, maximum: int, minimum: int = 0) -> None:
    if not minimum <= value <= maximum:
        raise ProtocolError(f"{name}={value} out of range [{minimum}, {maximum}]")


def encode_header(header: FrameHeader, payload_len: int) -> bytes:
    """Pack a header for a payload of `payload_len` bytes."""
    _check_range("frame_id", header.frame_id, _U64_MAX)
    _check_range("capture_us", header.capture_us, _U64_MAX)
    _check_range("publish_us", header.publish_us, _U64_MAX)
    _check_range("width", header.width, _U16_MAX, 1)
    _check_range("height", header.height, _U16_MAX, 1)
    _check_range("tier", header.tier, _U8_MAX)
    _check_range("codec", header.codec, _U8_MAX, 1)
    _check_range("quality", header.quality, 100)
    _check_range("flags", header.flags, _U8_MAX)
    _check_range("payload_len", payload_len, min(_U32_MAX, C.MAX_PAYLOAD_BYTES))
    return _HEADER.pack(
        C.MAGIC,
        C.PROTOCOL_VERSION,
        C.HEADER_SIZE,
        header.codec,
        header.tier,
        header.flags,
        header.quality,
        header.width,
        header.height,
        payload_len,
        header.frame_id,
        header.capture_us,
        header.publish_us,
    )


def encode_frame(header: FrameHeader, payload: bytes) -> bytes:
    """Build the complete binary frame message (header + payload)."""
    return encode_header(header, len(payload)) + payload


def decode_header(data: bytes | bytearray | memoryview) -> FrameHeader:
    """Parse and validate the header at the start of `data`.

    Checks magic, version, header length and that the payload length matches
    the bytes that follow the header.
    """
    if len(data) < C.HEADER_SIZE:
        raise ProtocolError(f"frame message too short: {len(data)} bytes < {C.HEADER_SIZE}-byte header")
    (magic, version, header_len, codec, tier, flags, quality, width, height, payload_len, frame_id, capture_us,
     publish_us) = _HEADER.unpack_from(data, 0)
    if magic != C.MAGIC:
        raise ProtocolError(f"bad magic {bytes(magic)!r}, expected {C.MAGIC!r}")
    if version != C.PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version}, expected {C.PROTOCOL_VERSION}")
    if header_len < C.HEADER_SIZE:
        raise ProtocolError(f"header length {header_len} shorter than {C.HEADER_SIZE}")
    if codec not in C.CODEC_NAMES:
        raise ProtocolError(f"unknown codec {codec}")
    if width == 0 or height == 0:
        raise ProtocolError(f"invalid frame size {width}x{height}")
    if quality > 100:
        raise ProtocolError(f"invalid quality {quality}")
    if header_len + payload_len != len(data):
        raise ProtocolError(
            f"length mismatch: header says {payload_len} payload bytes, message carries {len(data) - header_len}"
        )
    return FrameHeader(
        frame_id=frame_id,
        capture_us=capture_us,
        width=width,
        height=height,
        tier=tier,
        codec=codec,
        quality=quality,
        flags=flags,
        publish_us=publish_us,
        payload_len=payload_len,
    )


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Parse a complete binary frame message."""
    header = decode_header(data)
    start = len(data) - header.payload_len
    return Frame(header=header, payload=bytes(data[start:]))


# --- control messages ------------------------------------------------------

TierChoice = str  # a tier name, or "auto"
AUTO: Final = "auto"


@dataclass(frozen=True, slots=True)
class TierInfo:
    """One rung of a stream's quality ladder, as announced to viewers."""

    name: str
    width: int
    height: int
    quality: int
    codec: str = "jpeg"
    bitrate: int = 0  # video tiers with a bitrate: bit/s (0: JPEG, or constant quality)
    crf: int = 0  # video tiers at constant quality: the CRF (0: JPEG, or a bitrate)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "width": self.width, "height": self.height,
                               "quality": self.quality, "codec": self.codec}
        if self.bitrate:
            out["bitrate"] = self.bitrate
        if self.crf:
            out["crf"] = self.crf
        return out


# viewer -> edge
@dataclass(frozen=True, slots=True)
class ClientHello:
    client_id: str = ""
    tier: TierChoice = AUTO
    max_fps: float = 0.0
    codecs: tuple[str, ...] = ("jpeg",)
    token: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """The viewer has received (and, for the browser, drawn) frame `frame_id`."""

    frame_id: int


@dataclass(frozen=True, slots=True)
class SetPreferences:
    tier: TierChoice | None = None
    max_fps: float | None = None


@dataclass(frozen=True, slots=True)
class KeyframeNeeded:
    """The viewer's video decoder lost its reference (error, gap): it needs a keyframe."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class ClientStats:
    fps: float = 0.0
    latency_ms: float = 0.0
    dropped: int = 0


# edge -> viewer
@dataclass(frozen=True, slots=True)
class ServerHello:
    stream: str
    tiers: tuple[TierInfo, ...]
    tier: str
    server: str = ""
    fps: float = 0.0
    protocol: int = C.PROTOCOL_VERSION
    ack: bool = True


@dataclass(frozen=True, slots=True)
class Status:
    state: Literal["live", "stalled", "draining"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TierChanged:
    tier: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    code: int
    message: str


ViewerMessage = ClientHello | Ack | SetPreferences | ClientStats | KeyframeNeeded
ServerMessage = ServerHello | Status | TierChanged | ErrorMessage
ControlMessage = ViewerMessage | ServerMessage


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def encode_control(msg: ControlMessage) -> str:
    """Serialise a control message to its JSON text form."""
    match msg:
        case Ack(frame_id):
            return _dump({"type": "ack", "id": frame_id})
        case ClientHello():
            return _dump({"type": "hello", "client_id": msg.client_id, "tier": msg.tier, "max_fps": msg.max_fps,
                          "codecs": list(msg.codecs), **({"token": msg.token} if msg.token else {})})
        case SetPreferences():
            body: dict[str, Any] = {"type": "set"}
            if msg.tier is not None:
                body["tier"] = msg.tier
            if msg.max_fps is not None:
                body["max_fps"] = msg.max_fps
            return _dump(body)
        case KeyframeNeeded():
            return _dump({"type": "keyframe", "reason": msg.reason})
        case ClientStats():
            return _dump({"type": "stats", "fps": msg.fps, "latency_ms": msg.latency_ms, "dropped": msg.dropped})
        case ServerHello():
            return _dump({"type": "hello", "protocol": msg.protocol, "stream": msg.stream, "server": msg.server,
                          "tiers": [t.to_json() for t in msg.tiers], "tier": msg.tier, "fps": msg.fps,
                          "ack": msg.ack})
        case Status():
            return _dump({"type": "status", "state": msg.state, "detail": msg.detail})
        case TierChanged():
            return _dump({"type": "tier", "tier": msg.tier, "reason": msg.reason})
        case ErrorMessage():
            return _dump({"type": "error", "code": msg.code, "message": msg.message})
    raise ProtocolError(f"cannot encode {type(msg).__name__}")  # pragma: no cover


def _load(text: str | bytes) -> dict[str, Any]:
    if len(text) > C.MAX_CONTROL_BYTES:
        raise ProtocolError(f"control message too long: {len(text)} > {C.MAX_CONTROL_BYTES} bytes")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"control message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("control message must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("control message has no string 'type'")
    return obj


def _int(obj: dict[str, Any], key: str, *, minimum: int = 0, maximum: int = _U64_MAX) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ProtocolError(f"'{obj['type']}' needs integer '{key}' in [{minimum}, {maximum}], got {value!r}")
    return value


def _num(obj: dict[str, Any], key: str, default: float | None = None) -> float:
    value = obj.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1e9:
        raise ProtocolError(f"'{obj['type']}' needs a non-negative number '{key}', got {value!r}")
    return float(value)


def _str(obj: dict[str, Any], key: str, default: str | None = None, max_len: int = 256) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or len(value) > max_len:
        raise ProtocolError(f"'{obj['type']}' needs a string '{key}' of at most {max_len} chars, got {value!r}")
    return value


def _tier_choice(obj: dict[str, Any]) -> str:
    value = _str(obj, "tier", AUTO, 32)
    if value != AUTO and not C.TIER_NAME_RE.match(value):
        raise ProtocolError(f"invalid tier name {value!r}")
    return value


def parse_viewer_message(text: str | bytes) -> ViewerMessage:
    """Parse a control message sent by a viewer to the edge."""
    obj = _load(text)
    kind = obj["type"]
    if kind == "ack":
        return Ack(_int(obj, "id"))
    if kind == "hello":
        codecs = obj.get("codecs", ["jpeg"])
        if not isinstance(codecs, list) or not all(isinstance(c, str) and len(c) <= 32 for c in codecs) \
                or len(codecs) > 8:
            raise ProtocolError(f"'hello' needs 'codecs' as a list of short strings, got {codecs!r}")
        return ClientHello(client_id=_str(obj, "client_id", "", 128), tier=_tier_choice(obj),
                           max_fps=_num(obj, "max_fps", 0.0), codecs=tuple(codecs),
                           token=_str(obj, "token", "", 2048))
    if kind == "set":
        tier = _tier_choice(obj) if "tier" in obj else None
        max_fps = _num(obj, "max_fps") if "max_fps" in obj else None
        return SetPreferences(tier=tier, max_fps=max_fps)
    if kind == "keyframe":
        return KeyframeNeeded(reason=_str(obj, "reason", "", 128))
    if kind == "stats":
        return ClientStats(fps=_num(obj, "fps", 0.0), latency_ms=_num(obj, "latency_ms", 0.0),
                           dropped=_int(obj, "dropped") if "dropped" in obj else 0)
    raise ProtocolError(f"unknown viewer message type {kind!r}")


def parse_server_message(text: str | bytes) -> ServerMessage:
    """Parse a control message sent by the edge to a viewer."""
    obj = _load(text) if len(text) <= C.MAX_CONTROL_BYTES else _load_large(text)
    kind = obj["type"]
    if kind == "hello":
        tiers_raw = obj.get("tiers")
        if not isinstance(tiers_raw, list):
            raise ProtocolError("'hello' needs a list 'tiers'")
        tiers = []
        for t in tiers_raw:
            if not isinstance(t, dict):
                raise ProtocolError("'hello' tiers must be objects")
            t = {"type": "hello.tier", **t}
            tiers.append(TierInfo(name=_str(t, "name", max_len=32), width=_int(t, "width", maximum=_U16_MAX),
                                  height=_int(t, "height", maximum=_U16_MAX),
                                  quality=_int(t, "quality", maximum=100), codec=_str(t, "codec", "jpeg", 32),
                                  bitrate=_int({"bitrate": 0, **t}, "bitrate", maximum=_U32_MAX),
                                  crf=_int({"crf": 0, **t}, "crf", maximum=_U8_MAX)))
        return ServerHello(stream=_str(obj, "stream", max_len=64), tiers=tuple(tiers), tier=_str(obj, "tier"),
                           server=_str(obj, "server", ""), fps=_num(obj, "fps", 0.0),
                           protocol=_int(obj, "protocol", maximum=_U8_MAX), ack=bool(obj.get("ack", True)))
    if kind == "status":
        state = _str(obj, "state")
        if state not in ("live", "stalled", "draining"):
            raise ProtocolError(f"unknown status state {state!r}")
        return Status(state=state, detail=_str(obj, "detail", ""))  # type: ignore[arg-type]
    if kind == "tier":
        return TierChanged(tier=_str(obj, "tier", max_len=32), reason=_str(obj, "reason", ""))
    if kind == "error":
        return ErrorMessage(code=_int(obj, "code", maximum=4999), message=_str(obj, "message", "", 1024))
    raise ProtocolError(f"unknown server message type {kind!r}")


def _load_large(text: str | bytes) -> dict[str, Any]:
    # a hello with many tiers may exceed the viewer limit; bound it all the same
    if len(text) > 16 * C.MAX_CONTROL_BYTES:
        raise ProtocolError(f"server control message too long: {len(text)} bytes")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"control message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("control message must be a JSON object with a string 'type'")
    return obj

