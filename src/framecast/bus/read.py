"""Reading a frames stream: newest-wins for JPEG tiers, every entry from a keyframe for video tiers.

`read_frames` (JPEG) yields only the newest entry of each XREAD batch, and
resumes at the newest entry after a reconnect: older JPEG frames are stale, so
a viewer never gets a burst of them. That is wrong for H.264, where a skipped
entry breaks the reference chain of every viewer. `read_video_frames` is its
video twin:

* on start it looks back over the last `backlog` entries (30: one second at
  30 fps, less than a viewer queue's fall-behind limit) for the newest keyframe
  and yields from there, so a new reader warms the edge's `GopCache` at once and
  its first viewer needs no fresh IDR (no keyframe in reach, or only one
  captured more than `max_age_us` ago: it yields from the next entries on,
  flagged, and viewers wait for a keyframe);
* then it yields every entry of each `XREAD` batch, in order;
* after a Redis error it resumes *after the last entry it delivered* when that
  entry still exists (nothing was lost, no gap); when it does not (trimmed while
  the reader lagged, or Redis restarted empty) it restarts at the newest keyframe;
* `VideoEntry.gap` is True on the first entry after a (re)start: what came
  before is not the reference of what follows. On a gap the edge calls
  `GopCache.break_chain()` and `GopViewerQueue.break_chain()` for that tier.

A full batch (`count` entries) means the reader lags; it then checks that the
last delivered entry was not trimmed under it before trusting the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from framecast import constants as C
from framecast.backoff import Backoff
from framecast.bus.client import REDIS_ERRORS, raise_if_cancelling
from framecast.bus.streams import now_us
from framecast.protocol import ProtocolError, decode_header


async def newest_entry(client: aioredis.Redis, key: str) -> tuple[bytes, bytes] | None:
    """The newest (entry id, wire message) of a frames stream, if any."""
    entries: Any = await client.xrevrange(key, "+", "-", count=1)
    if not entries:
        return None
    entry_id, fields = entries[0]
    return bytes(entry_id), bytes(fields[C.FRAME_FIELD])


def captured_within(message: bytes, max_age_us: int | None) -> bool:
    """Whether a stored wire message was captured at most `max_age_us` ago (None: any age will do)."""
    if max_age_us is None:
        return True
    try:
        return now_us() - decode_header(message).capture_us <= max_age_us
    except ProtocolError:
        return False


async def read_frames(client: aioredis.Redis, key: str, *, block_ms: int = 1000,
                      backoff: Backoff | None = None, on_error: Any = None,
                      max_age_us: int | None = None) -> AsyncIterator[bytes]:
    """Yield wire messages of one frames stream forever, newest first then live.

    Starts with the newest stored entry (so a new viewer gets a picture at once)
    unless it was captured more than `max_age_us` ago (a tier nobody encodes
    any more keeps its last entries: they are no start point), then follows
    with `XREAD BLOCK`. When Redis goes away it retries with jittered back-off
    and resumes at the newest entry, skipping the backlog. JPEG tiers only:
    video tiers need every entry (`read_video_frames`).
    `on_error(exc)` is called for every failed attempt (for metrics and logs).
    """
    backoff = backoff or Backoff()
    last_id: bytes | None = None
    while True:
        try:
            raise_if_cancelling()
            if last_id is None:
                newest = await newest_entry(client, key)
                if newest is None:
                    last_id = b"$"
                else:
                    last_id = newest[0]
                    if captured_within(newest[1], max_age_us):
                        yield newest[1]
            # "$" means "only entries added after this call"
            reply: Any = await client.xread({key: last_id}, count=16, block=block_ms)
            raise_if_cancelling()
            backoff.reset()
            if not reply:
                if last_id == b"$":
                    last_id = None  # nothing yet: look for a first entry again
                continue
            entries = reply[0][1]
            last_id = bytes(entries[-1][0])
            # deliver only the newest of a batch: older ones are stale on arrival
            yield bytes(entries[-1][1][C.FRAME_FIELD])
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS as exc:
            if on_error is not None:
                on_error(exc)
            last_id = None  # after a reconnect resume at the newest entry, never replay the backlog
            await asyncio.sleep(backoff.next_delay())


@dataclass(frozen=True, slots=True)
class VideoEntry:
    message: bytes  # the complete wire frame message, as published
    gap: bool  # entries before this one were not delivered (start, reconnect, or fell behind)


def _is_keyframe(message: bytes) -> bool:
    try:
        return decode_header(message).keyframe
    except ProtocolError:
        return False


async def _from_last_keyframe(client: aioredis.Redis, key: str, backlog: int,
                              max_age_us: int | None = None) -> tuple[bytes | None, list[bytes]]:
    """(id of the newest entry, messages from the newest keyframe to the newest entry).

    A keyframe captured more than `max_age_us` ago is no start point (the tier
    was not encoded for a while: its last GOP is history, not live video).
    """
    entries: Any = await client.xrevrange(key, "+", "-", count=backlog)
    if not entries:
        return None, []
    newest_id = bytes(entries[0][0])
    run: list[bytes] = []
    for _entry_id, fields in entries:  # newest first
        message = bytes(fields[C.FRAME_FIELD])
        run.append(message)
        if _is_keyframe(message):
            if not captured_within(message, max_age_us):
                return newest_id, []
            run.reverse()
            return newest_id, run
    return newest_id, []


async def _exists(client: aioredis.Redis, key: str, entry_id: bytes) -> bool:
    found: Any = await client.xrange(key, entry_id, entry_id, count=1)
    return bool(found)


async def read_video_frames(client: aioredis.Redis, key: str, *, block_ms: int = 1000, count: int = 32,
                            backlog: int = 30, backoff: Backoff | None = None,
                            on_error: Callable[[BaseException], None] | None = None,
                            max_age_us: int | None = None) -> AsyncGenerator[VideoEntry, None]:
    """Yield every wire message of a video tier's stream, in order, from a keyframe on (see module doc)."""
    backoff = backoff or Backoff()
    last_id: bytes | None = None  # None: (re)start at the newest keyframe; b"$": only what comes next
    gap = True  # the next entry yielded does not follow the previous one
    check = False  # verify that last_id still exists before reading after it
    while True:
        try:
            raise_if_cancelling()
            if last_id is None:
                newest_id, run = await _from_last_keyframe(client, key, backlog, max_age_us)
                last_id = newest_id if newest_id is not None else b"$"
                for message in run:
                    yield VideoEntry(message, gap)
                    gap = False
            elif check:
                check = False
                if not await _exists(client, key, last_id):
                    last_id, gap = None, True
                    continue
            reply: Any = await client.xread({key: last_id}, count=count, block=block_ms)
            raise_if_cancelling()
            backoff.reset()
            if not reply:
                if last_id == b"$":
                    last_id = None  # nothing yet: look for a keyframe again
                continue
            entries = reply[0][1]
            if len(entries) >= count and last_id != b"$" and not await _exists(client, key, last_id):
                last_id, gap = None, True  # trimmed under a lagging reader: restart at the newest keyframe
                continue
            last_id = bytes(entries[-1][0])
            for _entry_id, fields in entries:
                yield VideoEntry(bytes(fields[C.FRAME_FIELD]), gap)
                gap = False
        except asyncio.CancelledError:
            raise
        except REDIS_ERRORS as exc:
            raise_if_cancelling()  # a cancellation redis-py turned into a connection error
            if on_error is not None:
                on_error(exc)
            if last_id is None or last_id == b"$":
                last_id = None
            else:
                check = True  # resume after last_id if it survived, else restart at a keyframe
            await asyncio.sleep(backoff.next_delay())
