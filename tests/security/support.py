"""The harness of the security suite: honest viewers watching while an attack runs, and what to assert.

`watch_attack` starts three honest viewers (from 127.0.0.1), measures their
frame rate before and during an attack (attackers connect from other
loopback addresses, 127.0.0.2 and up), samples the edge's RSS throughout,
and checks what every attack must leave intact: each honest viewer keeps
>= 80 % of its frame rate and its one connection, the edge's RSS grows by
< 64 MiB and comes back, and the edge log holds no traceback. Figures go
to tests/artifacts/security.json (docs/security.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.reliability.conftest import Stack
from tests.reliability.support import Viewer, stop_viewers
from tests.support.timing import wait_until_async

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "tests" / "artifacts" / "security.json"
HONEST = 3
BASELINE_S = 3.0
MIN_FPS_RATIO = 0.8
MAX_RSS_GROWTH = 64 * 2**20
T = TypeVar("T")


def attacker_address(n: int = 0) -> str:
    """A loopback address of its own for attacker `n` (Linux routes all of 127/8 to lo)."""
    return f"127.0.0.{2 + n}"


@dataclass
class AttackFigures:
    name: str
    fps_before: list[float]
    fps_during: list[float]
    rss_before_mib: float
    rss_peak_mib: float
    rss_after_mib: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> None:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(ARTIFACT.read_text())
        except (OSError, ValueError):
            data = {}
        data[self.name] = {**self.__dict__, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        ARTIFACT.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        print(f"[security] {self.name}: honest fps before {self.fps_before} during {self.fps_during}; "
              f"edge RSS {self.rss_before_mib:.0f} -> peak {self.rss_peak_mib:.0f} -> {self.rss_after_mib:.0f} MiB; "
              f"{self.extra}")


async def watch_attack(stack: Stack, name: str, attack: Callable[[], Awaitable[T]], *,
                       viewer_url: str | None = None, viewer_kwargs: dict[str, Any] | None = None,
                       min_attack_s: float = 3.0, min_fps_ratio: float = MIN_FPS_RATIO) -> tuple[T, AttackFigures]:
    """Run `attack()` while honest viewers watch; assert they did not notice; return its result and figures."""
    viewers = [Viewer(viewer_url or stack.ws(), **(viewer_kwargs or {})).start() for _ in range(HONEST)]
    try:
        await wait_until_async("frames to the honest viewers", lambda: all(len(v.frames) >= 3 for v in viewers), 30)
        t0 = time.monotonic()
        await asyncio.sleep(BASELINE_S)  # the measuring window of the baseline frame rate (not a readiness wait)
        t1 = time.monotonic()
        rss_before = stack.edge_stats().rss_bytes
        peak = rss_before
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                with _suppress_gone():
                    peak = max(peak, stack.edge_stats().rss_bytes)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        result = await attack()
        left = min_attack_s - (time.monotonic() - t1)
        if left > 0:
            await asyncio.sleep(left)  # the frame-rate window is at least this long (the attack may end early)
        t2 = time.monotonic()
        sampling = False
        await sampler
        # RSS comes back: within the growth bound of where it started (allocators keep some pages)
        await wait_until_async("edge RSS back after the attack",
                               lambda: stack.edge_stats().rss_bytes - rss_before < MAX_RSS_GROWTH, 15, interval=0.2)
        rss_after = stack.edge_stats().rss_bytes
    finally:
        await stop_viewers(viewers)
    figures = AttackFigures(
        name, [round(v.fps(t0, t1), 1) for v in viewers], [round(v.fps(t1, t2), 1) for v in viewers],
        rss_before / 2**20, peak / 2**20, rss_after / 2**20, round(t2 - t1, 1))
    figures.record()
    for v, before, during in zip(viewers, figures.fps_before, figures.fps_during, strict=True):
        assert v.connects == 1 and v.close_code is None and not v.error, \
            f"{name}: an honest viewer was disconnected ({v.close_code} {v.close_reason} {v.error})"
        assert during >= min_fps_ratio * before, f"{name}: honest viewer fps {before} -> {during} during the attack"
    assert peak - rss_before < MAX_RSS_GROWTH, \
        f"{name}: edge RSS grew {(peak - rss_before) / 2**20:.0f} MiB during the attack"
    assert stack.edge is not None and stack.edge.alive(), f"{name}: the edge died"
    assert "Traceback" not in stack.edge.log(), f"{name}: traceback in the edge log:\n{stack.edge.log()[-3000:]}"
    return result, figures


class _suppress_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (FileNotFoundError, ProcessLookupError))  # type: ignore[arg-type]


