"""The rules a new fleet starts with: one per everyday fault, derived from the known metric ranges
(`models.telemetry.KNOWN_METRICS`, `models.rules.RULE_METRICS`).

`fleet rules defaults` adds those whose name is not taken; `fleet up` adds them all to a database whose
rule table is empty (its first start). Each has a duration, so that one noisy reading raises nothing,
and where it makes sense a hysteresis limit, so that a value hovering at the limit does not flap.
"""

from __future__ import annotations

from typing import Final

from models.rules import RuleSpec

DEFAULT_RULES: Final[tuple[RuleSpec, ...]] = (
    # A coolant at 110 °C boils under a standard pressure cap: stop the engine now.
    RuleSpec(
        name="engine overheating",
        metric="engine_temp",
        op=">",
        threshold=110,
        for_s=30,
        clear_threshold=100,
        clear_for_s=60,
        severity="critical",
    ),
    # A 12 V system resting below 11.5 V is about to fail to start (a 24 V fleet wants a rule of its own).
    RuleSpec(
        name="low battery",
        metric="battery",
        op="<",
        threshold=11.5,
        for_s=60,
        clear_threshold=12.0,
        clear_for_s=60,
        severity="minor",
    ),
    # The level sloshes on the road: a minute below 10 % is a tank running dry, not a bump.
    RuleSpec(
        name="low fuel",
        metric="fuel",
        op="<",
        threshold=10,
        for_s=60,
        clear_threshold=15,
        clear_for_s=60,
        severity="warning",
    ),
    RuleSpec(
        name="overspeed",
        metric="speed",
        op=">",
        threshold=120,
        for_s=10,
        clear_threshold=110,
        clear_for_s=10,
        severity="major",
    ),
    # Parked, the level does not move but for sensor noise: 15 % of the tank gone within five minutes is
    # being siphoned off (the `fuel-theft` scenario of `fleet sim` drains 20 % in 90 s).
    RuleSpec(
        name="fuel theft",
        metric="fuel",
        op="drop",
        threshold=15,
        window_s=300,
        while_parked=True,
        # The gauge's noise hovers around any limit: cleared only once the fall is well under it.
        clear_threshold=10,
        clear_for_s=60,
        severity="critical",
    ),
    RuleSpec(name="truck offline", op="offline", for_s=600, kind="truck", severity="major"),
)
