"""The link scenarios of the benchmark (issue 8) and the quick CI variant."""

from __future__ import annotations

from dataclasses import dataclass

from bench.constants import SCENARIO_LOOPBACK
from bench.linkemu import LinkSpec


@dataclass(frozen=True)
class Scenario:
    """A link (None = plain loopback), a bounded duration and an optional rate step."""

    name: str
    link: LinkSpec | None
    duration_s: float
    warmup_s: float
    step_at_s: float | None = None
    step_to_mbit: float | None = None

    @property
    def is_step(self) -> bool:
        return self.step_at_s is not None and self.step_to_mbit is not None


LINK_8MBIT_50MS = Scenario("8mbit-50ms", LinkSpec(8.0, 50.0), 20.0, 4.0)
LINK_20MBIT_20MS = Scenario("20mbit-20ms", LinkSpec(20.0, 20.0), 20.0, 4.0)
LINK_3MBIT_100MS = Scenario("3mbit-100ms", LinkSpec(3.0, 100.0), 20.0, 4.0)
STEP_20_TO_5MBIT = Scenario("step-20to5mbit-50ms", LinkSpec(20.0, 50.0), 30.0, 4.0, 15.0, 5.0)
LOOPBACK_QUICK = Scenario(SCENARIO_LOOPBACK, None, 2.0, 0.3)

LINK_SCENARIOS: tuple[Scenario, ...] = (
    LINK_8MBIT_50MS,
    LINK_20MBIT_20MS,
    LINK_3MBIT_100MS,
    STEP_20_TO_5MBIT,
)
ALL_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (*LINK_SCENARIOS, LOOPBACK_QUICK)}


def scaled(scenario: Scenario, factor: float) -> Scenario:
    """The same scenario with every duration multiplied by ``factor``."""
    step_at = None if scenario.step_at_s is None else scenario.step_at_s * factor
    return Scenario(
        scenario.name,
        scenario.link,
        scenario.duration_s * factor,
        scenario.warmup_s * factor,
        step_at,
        scenario.step_to_mbit,
    )
