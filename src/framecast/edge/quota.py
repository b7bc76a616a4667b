"""How many tiers the viewers of one address can make the inference service encode by pinning them.

A viewer on `auto` gets the tier the edge measures its link can take; a viewer
that pins a tier makes the inference service encode that tier for as long as
it stays (demand). Five viewers pinning five tiers from one address would cost
the encoder four extra tiers for nothing: `PinQuota` lets one address pin at
most `per_address` distinct tiers of a stream. A pin over the quota is refused
(the viewer stays on auto and is told why); pins of tiers the address already
pins are free.
"""

from __future__ import annotations

from collections import Counter


class PinQuota:
    """Distinct pinned tiers per (address, stream), with a count of viewers per tier (pure bookkeeping)."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address  # 0 = unlimited
        self.pins: dict[tuple[str, str], Counter[str]] = {}

    def acquire(self, address: str, stream: str, tier: str) -> bool:
        """One more viewer of `address` pins `tier`; False (and nothing held) when that is one tier too many."""
        held = self.pins.setdefault((address, stream), Counter())
        if self.per_address and tier not in held and len(held) >= self.per_address:
            if not held:
                del self.pins[(address, stream)]
            return False
        held[tier] += 1
        return True

    def release(self, address: str, stream: str, tier: str) -> None:
        held = self.pins.get((address, stream))
        if held is None or held[tier] <= 0:
            return
        held[tier] -= 1
        if held[tier] <= 0:
            del held[tier]
        if not held:
            del self.pins[(address, stream)]
