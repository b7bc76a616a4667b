"""When and how soon a viewer reconnects, from the close code the edge sent.

A pure policy (the RNG is passed in): 1012 (edge restarting) means come back
soon, 1013 (edge full) means back off longer, and codes that retrying cannot
fix (unknown stream, authentication, protocol errors) are not retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from framecast import constants as C
from framecast.backoff import equal_jitter

# closes that end a subscription for good
FATAL_CLOSE_CODES = frozenset({
    C.CLOSE_PROTOCOL_ERROR, C.CLOSE_UNSUPPORTED_DATA, C.CLOSE_POLICY_VIOLATION, C.CLOSE_MESSAGE_TOO_BIG,
    C.CLOSE_AUTH_FAILED, C.CLOSE_UNKNOWN_STREAM, C.CLOSE_BAD_MESSAGE,
})
ABNORMAL_CLOSURE = 1006  # no close frame: the TCP connection just went away


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When to reconnect: framecast.backoff's equal jitter, with its own bases per close code."""

    base_s: float = 0.25
    cap_s: float = 10.0
    restart_min_s: float = 0.05  # 1012: the edge is restarting; another replica may already be ready
    restart_max_s: float = 1.0
    try_later_base_s: float = 2.0  # 1013: the edge is full; give it room (also 4004 while reconnecting)
    try_later_cap_s: float = 30.0

    def should_reconnect(self, close_code: int | None) -> bool:
        return close_code not in FATAL_CLOSE_CODES and close_code != C.CLOSE_NORMAL

    def delay(self, close_code: int | None, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt number `attempt` (0 = first)."""
        if close_code in (C.CLOSE_TRY_AGAIN_LATER, C.CLOSE_UNKNOWN_STREAM):
            return equal_jitter(self.try_later_base_s, self.try_later_cap_s, attempt, rng)
        if close_code == C.CLOSE_SERVICE_RESTART and attempt <= 0:
            return rng.uniform(self.restart_min_s, self.restart_max_s)
        return equal_jitter(self.base_s, self.cap_s, attempt, rng)
