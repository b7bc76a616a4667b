"""An async subscription to one stream of a framecast edge.

`Subscription` owns one WebSocket at a time: it sends the viewer hello, reads
the edge's hello, decodes every binary frame with the shared protocol module,
acknowledges it (by default when the consumer asks for the next frame, so the
edge paces itself to what this viewer actually processes), follows status and
tier messages, and reconnects with jittered back-off when the edge goes away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import secrets
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

import framecast
from framecast import constants as C
from framecast.client.errors import ClientError, ConnectError, ConnectionLost
from framecast.client.reconnect import ABNORMAL_CLOSURE, FATAL_CLOSE_CODES, ReconnectPolicy
from framecast.client.stats import StatsWindow
from framecast.client.urls import Endpoint, resolve
from framecast.protocol import (
    AUTO,
    Ack,
    ClientHello,
    ClientStats,
    ErrorMessage,
    FrameHeader,
    KeyframeNeeded,
    ProtocolError,
    ServerHello,
    SetPreferences,
    Status,
    TierChanged,
    TierInfo,
    decode_frame,
    encode_control,
    parse_server_message,
)

if TYPE_CHECKING:
    import numpy.typing as npt

log = logging.getLogger("framecast.client")

AckMode = Literal["consumed", "received", "none"]
DEFAULT_URL = C.DEFAULT_EDGE_URL
_KNOWN_SERVER_TYPES = frozenset({"hello", "status", "tier", "error"})
_MAX_PRELUDE_MESSAGES = 8  # control messages tolerated before the edge's hello


def wall_us() -> int:
    """Wall-clock µs: the clock of `capture_us` (same definition as framecast.bus.now_us)."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """One frame as this viewer received it: header fields, the payload bytes and arrival time.

    `payload` is what the header's codec says: a JPEG file, or an H.264 access unit (Annex B).
    """

    header: FrameHeader
    payload: bytes = field(repr=False)  # kilobytes of binary: not in a repr or a log line
    received_us: int  # wall clock, same clock as capture_us
    received_at: float  # time.monotonic()
    stream: str
    tier_name: str
    message_bytes: int  # size of the whole wire message (header + payload)
    decoded: Any = field(default=None, repr=False)  # H.264 with decode_video=True: the picture (BGR), or None

    @property
    def frame_id(self) -> int:
        return self.header.frame_id

    @property
    def capture_us(self) -> int:
        return self.header.capture_us

    @property
    def publish_us(self) -> int:
        return self.header.publish_us

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def tier(self) -> int:
        return self.header.tier

    @property
    def quality(self) -> int:
        return self.header.quality

    @property
    def codec(self) -> str:
        return self.header.codec_name

    @property
    def keyframe(self) -> bool:
        return self.header.keyframe

    @property
    def jpeg(self) -> bytes:
        """Deprecated: the payload is H.264 on video tiers; use `payload`."""
        warnings.warn("ReceivedFrame.jpeg is deprecated: use ReceivedFrame.payload (JPEG or H.264 by codec)",
                      DeprecationWarning, stacklevel=2)
        return self.payload

    @property
    def latency_ms(self) -> float:
        """Capture to arrival, in ms (assumes the inference host's clock agrees with this one)."""
        return (self.received_us - self.header.capture_us) / 1000.0

    def image(self, *, rgb: bool = True) -> npt.NDArray[Any]:
        """The picture as an HxWx3 uint8 array (RGB, or BGR for OpenCV with rgb=False).

        JPEG frames decode on demand; H.264 frames carry the picture the subscription decoded in
        order (connect with decode_video=True; frames before the first keyframe have none).
        """
        if self.header.codec == C.CODEC_H264:
            if self.decoded is None:
                raise ClientError(f"frame {self.frame_id} is H.264 without a decoded picture: connect with "
                                  "decode_video=True (needs PyAV), and delta frames before a keyframe have none")
            return _bgr_to_rgb(self.decoded) if rgb else self.decoded  # type: ignore[no-any-return]
        if self.header.codec != C.CODEC_JPEG:
            raise ClientError(f"frame {self.frame_id} is {self.codec}: decode its payload yourself")
        try:
            import cv2
            import numpy as np
        except ImportError:
            return _decode_simplejpeg(self.payload, rgb)
        image = cv2.imdecode(np.frombuffer(self.payload, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ProtocolError(f"frame {self.frame_id}: payload is not a decodable JPEG")
        if rgb:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return image

    def save(self, path: str) -> None:
        with open(path, "wb") as fh:
            fh.write(self.payload)


def _bgr_to_rgb(image: Any) -> Any:
    return image[:, :, ::-1].copy()


def _decode_simplejpeg(data: bytes, rgb: bool) -> npt.NDArray[Any]:
    try:
        import simplejpeg
    except ImportError:
        raise ClientError("decoding images needs opencv-python-headless or simplejpeg: pip install "
                          "opencv-python-headless") from None
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB" if rgb else "BGR")  # type: ignore[no-any-return]
    except ValueError as exc:
        raise ProtocolError(f"payload is not a decodable JPEG: {exc}") from None


def _close_info(exc: ConnectionClosed) -> tuple[int, str]:
    if exc.rcvd is not None:
        return exc.rcvd.code, exc.rcvd.reason
    return ABNORMAL_CLOSURE, "connection lost without a close frame"


def _is_unknown_type(text: str | bytes) -> bool:
    """True for a well-formed control message of a type this client does not know (forward compatible)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get("type"), str) and obj["type"] not in _KNOWN_SERVER_TYPES


_KNOWN_CODECS = ("jpeg", "h264")


def _check_codecs(codecs: Sequence[str]) -> tuple[str, ...]:
    if isinstance(codecs, str):
        codecs = [c.strip() for c in codecs.split(",") if c.strip()]
    out = tuple(dict.fromkeys(codecs))
    bad = [c for c in out if c not in _KNOWN_CODECS]
    if not out or bad:
        raise ClientError(f"invalid codecs {list(codecs)!r}: choose from {', '.join(_KNOWN_CODECS)}")
    return out


def _video_decoder_class() -> Any:
    try:
        from framecast.codecs.h264_decoder import H264Decoder
    except ImportError as exc:
        raise ClientError(f"decoding H.264 needs PyAV: pip install 'framecast[video]' ({exc})") from None
    return H264Decoder


def _check_tier(tier: str) -> str:
    if tier != AUTO and not C.TIER_NAME_RE.match(tier):
        raise ClientError(f"invalid tier {tier!r}: use 'auto' or a tier name such as 'high'")
    return tier


def _check_max_fps(max_fps: float) -> float:
    if not 0 <= max_fps < 1e6:
        raise ClientError(f"invalid max_fps {max_fps!r}: use 0 (no cap) or a positive number")
    return float(max_fps)


class Subscription:
    """Frames of one stream: `async for frame in sub` yields `ReceivedFrame`s, acking automatically.

    ack="consumed" (default) acknowledges a frame when the consumer asks for the next one, so the
    edge's in-flight window follows the consumer's speed; "received" acks on arrival; "none" never
    acks (a legacy viewer: the edge then paces by its socket buffer alone).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str | None = None,
        tier: str = AUTO,
        client_id: str = "",
        max_fps: float = 0.0,
        token: str = "",
        reconnect: bool = True,
        reconnect_timeout: float | None = None,
        ack: AckMode = "consumed",
        open_timeout: float = 10.0,
        policy: ReconnectPolicy | None = None,
        stats_window_s: float = 5.0,
        stats_interval_s: float = 2.0,
        max_queue: int = 4,
        codecs: Sequence[str] = ("jpeg",),
        decode_video: bool = False,
        rng: random.Random | None = None,
        start_wait_s: float = 0.0,
    ) -> None:
        if ack not in ("consumed", "received", "none"):
            raise ClientError(f"invalid ack mode {ack!r}: use 'consumed', 'received' or 'none'")
        if open_timeout <= 0:
            raise ClientError("open_timeout must be positive")
        if start_wait_s < 0:
            raise ClientError("start_wait_s must not be negative")
        self.start_wait_s = start_wait_s
        self.endpoint: Endpoint = resolve(url, stream)
        self.requested_tier = _check_tier(tier)
        self.max_fps = _check_max_fps(max_fps)
        self.client_id = client_id or f"py-{secrets.token_hex(4)}"
        if len(self.client_id) > 128:
            raise ClientError("client_id is longer than 128 characters")
        self.token = token
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.ack_mode: AckMode = ack
        self.open_timeout = open_timeout
        self.policy = policy or ReconnectPolicy()
        self.stats = StatsWindow(started=time.monotonic(), window_s=stats_window_s)
        self.stats_interval_s = stats_interval_s
        self._max_queue = max(1, max_queue)
        self._rng = rng or random.Random()
        self.codecs = _check_codecs(codecs)
        self.decode_video = decode_video
        self._video_decoders: dict[int, Any] = {}
        self._video_tier: int | None = None
        self._last_keyframe_request = -1e9
        self.keyframe_requests = 0
        if decode_video:
            if "h264" not in self.codecs:
                raise ClientError("decode_video=True needs 'h264' in codecs")
            _video_decoder_class()  # fail now, not at the first frame, when PyAV is missing

        self.hello: ServerHello | None = None
        self.status: Status | None = None
        self.state = "idle"  # idle, connecting, waiting, live, stalled, draining, reconnecting, closed
        self.tier: str | None = None  # the tier being received now
        self.tier_changes = 0
        self.reconnects = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_error: ErrorMessage | None = None
        self.ignored_messages = 0
        self.acks_sent = 0

        self._ws: ClientConnection | None = None
        self._stash: bytes | None = None  # a frame that arrived before any hello (legacy edge)
        self._pending_ack: int | None = None
        self._closed = False
        self._last_stats_sent = 0.0

    # -- properties ---------------------------------------------------------
    @property
    def stream(self) -> str:
        return self.endpoint.stream

    @property
    def url(self) -> str:
        return self.endpoint.ws_url

    @property
    def tiers(self) -> tuple[TierInfo, ...]:
        return self.hello.tiers if self.hello else ()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def tier_name(self, index: int) -> str:
        tiers = self.tiers
        return tiers[index].name if 0 <= index < len(tiers) else f"tier-{index}"

    # -- lifecycle ----------------------------------------------------------
    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and read the edge's hello; raises ConnectError when the edge refuses or is unreachable.

        With `start_wait_s`, a stream that is starting (the edge does not know it yet: 4004, its source
        still loading a model) or an edge not answering yet is tried again, with back-off, for up to that
        many seconds; state is "waiting" meanwhile. A refused token ends it at once.
        """
        self._closed = False
        self.stats.started = time.monotonic()
        self.state = "connecting"
        deadline = time.monotonic() + self.start_wait_s
        attempt = 0
        try:
            while True:
                try:
                    await self._open_once()
                    return
                except ConnectError as exc:
                    left = deadline - time.monotonic()
                    if (exc.fatal and exc.close_code != C.CLOSE_UNKNOWN_STREAM) or left <= 0:
                        raise
                    self.state = "waiting"
                    log.info("%s; waiting for it (%.0f s left)", exc, left)
                    await asyncio.sleep(min(left, 0.25 * 2 ** min(attempt, 3)))  # 0.25 s doubling to 2 s
                    self.state = "connecting"
                    attempt += 1
        except BaseException:
            self.state = "closed"
            raise

    async def close(self) -> None:
        self._closed = True
        self.state = "closed"
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await self._flush_ack(ws)
                await ws.close(C.CLOSE_NORMAL, "viewer leaving")
            except Exception:  # closing a dead socket is not an error worth raising
                pass

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ReceivedFrame:
        if self._closed:
            raise StopAsyncIteration
        if self._ws is not None:
            await self._flush_ack(self._ws)
        while True:
            ws = self._ws
            if ws is None:
                if self._closed:
                    raise StopAsyncIteration
                await self._reconnect()
                continue
            data: str | bytes
            if self._stash is not None:
                data, self._stash = self._stash, None
            else:
                try:
                    data = await ws.recv()
                except ConnectionClosed as exc:
                    if self._closed:
                        raise StopAsyncIteration from None
                    self._on_closed(*_close_info(exc))
                    continue
            if isinstance(data, str):
                await self._guard(ws, self._on_control, data)
                continue
            frame: ReceivedFrame = await self._guard(ws, self._on_frame, data)
            if self.decode_video and frame.header.codec == C.CODEC_H264:
                frame = await self._decode_video(frame)
            if self.ack_mode == "received":
                await self.ack(frame.frame_id)
            elif self.ack_mode == "consumed":
                self._pending_ack = frame.frame_id
            await self._maybe_send_stats(ws)
            return frame

    async def next(self, timeout: float | None = None) -> ReceivedFrame | None:  # noqa: ASYNC109 (sync API)
        """The next frame, or None when the subscription ended; TimeoutError after `timeout` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except StopAsyncIteration:
            return None

    async def _decode_video(self, frame: ReceivedFrame) -> ReceivedFrame:
        """Decode an H.264 access unit in order, off the event loop; one decoder per tier."""
        tier = frame.header.tier
        if self._video_tier is not None and tier != self._video_tier:
            self._video_decoders.pop(self._video_tier, None)  # a tier switch starts at a keyframe
        self._video_tier = tier
        decoder = self._video_decoders.get(tier)
        if decoder is None:
            decoder = self._video_decoders[tier] = _video_decoder_class()()
        picture = await asyncio.to_thread(decoder.decode, frame.payload, frame.header.keyframe)
        if picture is None and not decoder.started:
            await self._request_keyframe("decoder waiting for a keyframe")
        return dataclasses.replace(frame, decoded=picture)

    async def _request_keyframe(self, reason: str) -> None:
        """Ask the edge for a keyframe of the current video tier, at most once a second."""
        now = time.monotonic()
        ws = self._ws
        if ws is None or now - self._last_keyframe_request < 1.0:
            return
        self._last_keyframe_request = now
        self.keyframe_requests += 1
        try:
            await ws.send(encode_control(KeyframeNeeded(reason=reason)))
        except ConnectionClosed:
            pass

    # -- viewer -> edge -----------------------------------------------------
    async def ack(self, frame_id: int) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send(encode_control(Ack(frame_id)))
            self.acks_sent += 1
        except ConnectionClosed:
            pass  # the receive path sees the close and handles it

    async def set(self, *, tier: str | None = None, max_fps: float | None = None) -> None:
        """Pin a tier (or "auto") and/or cap the frame rate; kept across reconnects."""
        if tier is not None:
            self.requested_tier = _check_tier(tier)
        if max_fps is not None:
            self.max_fps = _check_max_fps(max_fps)
        ws = self._ws
        if ws is not None:
            try:
                await ws.send(encode_control(SetPreferences(tier=tier, max_fps=max_fps)))
            except ConnectionClosed:
                pass

    async def _flush_ack(self, ws: ClientConnection) -> None:
        if self._pending_ack is not None:
            frame_id, self._pending_ack = self._pending_ack, None
            try:
                await ws.send(encode_control(Ack(frame_id)))
                self.acks_sent += 1
            except ConnectionClosed:
                pass

    async def _maybe_send_stats(self, ws: ClientConnection) -> None:
        now = time.monotonic()
        if self.stats_interval_s <= 0 or now - self._last_stats_sent < self.stats_interval_s:
            return
        self._last_stats_sent = now
        snap = self.stats.snapshot(now)
        msg = ClientStats(fps=round(snap.fps, 2), latency_ms=round(max(snap.latency_p50_ms, 0.0), 2),
                          dropped=snap.dropped)
        try:
            await ws.send(encode_control(msg))
        except ConnectionClosed:
            pass

    # -- connecting ---------------------------------------------------------
    async def _open_once(self) -> None:
        ep = self.endpoint
        where = f"{ep.host}:{ep.port}"
        try:
            ws = await ws_connect(
                ep.ws_url,
                compression=None,  # JPEG does not compress; deflate would only cost CPU
                proxy=None,
                open_timeout=self.open_timeout,
                max_size=C.HEADER_SIZE + C.MAX_PAYLOAD_BYTES,
                max_queue=self._max_queue,  # small: a backlog here is latency the edge cannot see
                ping_interval=10,
                ping_timeout=10,
                close_timeout=2,
                user_agent_header=f"framecast-client/{framecast.__version__}",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (403, 404):
                raise ConnectError(
                    f"{ep.ws_url}: the edge refused the viewer with HTTP {status} "
                    f"(unknown stream {ep.stream!r}, wrong path, or not allowed)", fatal=True, close_code=status
                ) from None
            raise ConnectError(f"{ep.ws_url}: the edge answered HTTP {status}", close_code=status) from None
        except InvalidURI as exc:
            raise ClientError(f"invalid URL {ep.ws_url!r}: {exc}") from None
        except InvalidHandshake as exc:
            raise ConnectError(f"{where} did not complete a WebSocket handshake: {exc}") from None
        except TimeoutError:
            raise ConnectError(f"timed out after {self.open_timeout:g}s connecting to {where}") from None
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConnectError(f"cannot reach {where}: {reason}") from None
        try:
            await ws.send(encode_control(ClientHello(client_id=self.client_id, tier=self.requested_tier,
                                                     max_fps=self.max_fps, codecs=self.codecs, token=self.token)))
            await self._read_hello(ws)
        except ConnectionClosed as exc:
            code, reason = _close_info(exc)
            self.close_code, self.close_reason = code, reason
            raise self._close_error(code, reason) from None
        except TimeoutError:
            await ws.close(C.CLOSE_NORMAL, "no hello")
            raise ConnectError(f"{ep.ws_url}: no hello from the edge within {self.open_timeout:g}s") from None
        except BaseException:
            await ws.close(C.CLOSE_PROTOCOL_ERROR, "protocol error")
            raise
        self._ws = ws
        if self.state in ("connecting", "reconnecting", "closed"):
            self.state = "live"

    async def _read_hello(self, ws: ClientConnection) -> None:
        async with asyncio.timeout(self.open_timeout):
            for _ in range(_MAX_PRELUDE_MESSAGES):
                data = await ws.recv()
                if isinstance(data, bytes):
                    self._stash = data  # an edge without hello: accept frames all the same
                    return
                self._on_control(data)
                if self.hello is not None:
                    return
        raise ProtocolError(f"no hello among the first {_MAX_PRELUDE_MESSAGES} messages from the edge")

    def _on_closed(self, code: int, reason: str) -> None:
        self._ws = None
        self.close_code, self.close_reason = code, reason
        if code == C.CLOSE_NORMAL:
            self._closed = True
            self.state = "closed"
            raise StopAsyncIteration
        if code in FATAL_CLOSE_CODES or not self.reconnect:
            self.state = "closed"
            raise self._close_error(code, reason)
        self.state = "reconnecting"
        log.info("connection to %s closed (%s %s); reconnecting", self.url, code, reason)

    def _close_error(self, code: int, reason: str) -> Exception:
        ep = self.endpoint
        detail = f"close code {code}" + (f": {reason}" if reason else "")
        if code == C.CLOSE_UNKNOWN_STREAM:
            return ConnectError(f"unknown stream {ep.stream!r} at {ep.http_base} ({detail})", fatal=True,
                                close_code=code)
        if code == C.CLOSE_AUTH_FAILED:
            return ConnectError(f"authentication failed at {ep.http_base} ({detail})", fatal=True, close_code=code)
        if code in FATAL_CLOSE_CODES:
            return ProtocolError(f"the edge closed the connection for a protocol violation ({detail})")
        if code == C.CLOSE_TRY_AGAIN_LATER:
            return ConnectError(f"the edge at {ep.http_base} is full, try again later ({detail})", close_code=code)
        return ConnectionLost(f"connection to {ep.ws_url} closed ({detail})", close_code=code)

    async def _reconnect(self) -> None:
        began = time.monotonic()
        attempt = 0
        last: Exception | None = None
        while True:
            delay = self.policy.delay(self.close_code, attempt, self._rng)
            if self.reconnect_timeout is not None and time.monotonic() + delay - began > self.reconnect_timeout:
                self.state = "closed"
                raise ConnectionLost(f"gave up reconnecting to {self.url} after {self.reconnect_timeout:g}s"
                                     + (f": {last}" if last else ""), close_code=self.close_code)
            self.state = "reconnecting"
            await asyncio.sleep(delay)
            if self._closed:
                return
            try:
                await self._open_once()
            except ConnectError as exc:
                # a stream that existed a moment ago may be between sources (its inference restarting):
                # keep trying it, slowly; other refusals (authentication) end the subscription
                if exc.fatal and exc.close_code != C.CLOSE_UNKNOWN_STREAM:
                    self.state = "closed"
                    raise
                last = exc
                if exc.close_code is not None:
                    self.close_code = exc.close_code
                attempt += 1
                continue
            except ConnectionLost as exc:
                # accepted, then closed before its hello: a replica draining behind the load balancer (1012)
                # or one going away; retry unless the code says retrying cannot help
                if not self.policy.should_reconnect(exc.close_code):
                    self.state = "closed"
                    raise
                last = exc
                self.close_code = exc.close_code
                attempt += 1
                continue
            self.reconnects += 1
            self.stats.connection_reset()
            self._video_decoders.clear()  # a new connection starts its video tiers at a keyframe
            self._pending_ack = None
            log.info("reconnected to %s (attempt %d)", self.url, attempt + 1)
            return

    async def _guard(self, ws: ClientConnection, handler: Any, data: Any) -> Any:
        """Run a message handler; on a protocol violation close with 1002 before raising."""
        try:
            return handler(data)
        except ProtocolError:
            self._closed = True
            self._ws = None
            self.state = "closed"
            try:
                await ws.close(C.CLOSE_PROTOCOL_ERROR, "protocol error")
            except Exception:  # the close is best effort; the protocol error is what matters
                pass
            raise

    # -- edge -> viewer -----------------------------------------------------
    def _on_control(self, text: str) -> None:
        try:
            msg = parse_server_message(text)
        except ProtocolError:
            if _is_unknown_type(text):
                self.ignored_messages += 1
                return
            raise
        if isinstance(msg, ServerHello):
            if msg.protocol != C.PROTOCOL_VERSION:
                raise ProtocolError(f"the edge speaks protocol version {msg.protocol}, this client "
                                    f"{C.PROTOCOL_VERSION}")
            self.hello = msg
            self.tier = msg.tier
        elif isinstance(msg, Status):
            self.status = msg
            self.state = msg.state
        elif isinstance(msg, TierChanged):
            if msg.tier != self.tier:
                self.tier_changes += 1
            self.tier = msg.tier
        elif isinstance(msg, ErrorMessage):
            self.last_error = msg
            # the edge sends this just before closing with the same code: the close is what gets reported
            log.debug("edge error %d: %s", msg.code, msg.message)

    def _on_frame(self, data: bytes) -> ReceivedFrame:
        received_us = wall_us()
        now = time.monotonic()
        frame = decode_frame(data)
        header = frame.header
        name = self.tier_name(header.tier)
        self.tier = name
        if self.state == "stalled":
            self.state = "live"
        self.stats.record(now, header.frame_id, header.capture_us, received_us, len(data))
        return ReceivedFrame(header=header, payload=frame.payload, received_us=received_us, received_at=now,
                             stream=self.endpoint.stream, tier_name=name, message_bytes=len(data))


def connect(
    url: str = DEFAULT_URL,
    *,
    stream: str | None = None,
    tier: str = AUTO,
    client_id: str = "",
    max_fps: float = 0.0,
    token: str = "",
    codecs: Sequence[str] = ("jpeg",),
    decode_video: bool = False,
    ack: AckMode = "consumed",
    reconnect: bool = True,
    reconnect_timeout: float | None = None,
    open_timeout: float = 10.0,
    policy: ReconnectPolicy | None = None,
    stats_window_s: float = 5.0,
    stats_interval_s: float = 2.0,
    max_queue: int = 4,
    start_wait_s: float = 0.0,
) -> Subscription:
    """Subscribe to a stream: `async with framecast.connect(url, stream="demo") as sub: async for f in sub: ...`.

    The arguments are those of `Subscription`: `max_fps` caps the rate (0: none), `token` is the viewer JWT
    when the edge has auth on, `codecs=("h264", "jpeg")` accepts video tiers (`decode_video=True` decodes
    them with PyAV), `ack` says when frames are acknowledged, `reconnect_timeout` bounds the reconnecting,
    `start_wait_s` how long to wait for a stream that is starting.
    """
    return Subscription(url, stream=stream, tier=tier, client_id=client_id, max_fps=max_fps, token=token,
                        codecs=codecs, decode_video=decode_video, ack=ack, reconnect=reconnect,
                        reconnect_timeout=reconnect_timeout, open_timeout=open_timeout, policy=policy,
                        stats_window_s=stats_window_s, stats_interval_s=stats_interval_s, max_queue=max_queue,
                        start_wait_s=start_wait_s)
