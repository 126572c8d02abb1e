"""Test-only crash points (the fault-injection suite). Off unless TASKFLEET_FAULTS is set.

`TASKFLEET_FAULTS="after_commit:0.05,after_ack:0.02"` makes a worker die (os._exit, as a
SIGKILL would: no cleanup, no ack) at those points of the message path with those
probabilities. `poison` makes a task whose payload text contains `/poison-fail` fail
retryably every time, and one containing `/poison-crash` kill its worker every time.
Nothing else changes: with the variable unset, `hit()` is one dict lookup.
"""

import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from taskfleet.core.errors import RetryableError

POINTS = (
    "after_handler", "after_commit", "before_ack", "after_ack", "after_side_effect",
    "after_notification", "poison",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Faults:
    rates: dict[str, float]

    @classmethod
    def parse(cls, spec: str) -> "Faults":
        """Read a TASKFLEET_FAULTS spec (`point:rate,...`; a missing rate is 1.0).

        Raises ValueError on an unknown point or a rate outside 0..1, so a typo fails at start.
        """
        rates: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            point, _, rate = part.partition(":")
            if point not in POINTS:
                raise ValueError(f"unknown fault point {point!r}: one of {', '.join(POINTS)}")
            rates[point] = float(rate or 1.0)
            if not 0 <= rates[point] <= 1:
                raise ValueError(f"fault rate of {point} must be within 0..1")
        return cls(rates)

    def hit(self, point: str) -> None:
        """Exit the process at once (code 137, no cleanup) with the probability set for `point`."""
        rate = self.rates.get(point)
        if rate and random.random() < rate:
            _die(point)

    def poison(self, payload: Any) -> None:
        """Called before a handler runs: the poison messages of the fault suite."""
        if "poison" not in self.rates:
            return
        text = orjson.dumps(payload)
        if b"/poison-crash" in text:
            _die("poison")
        if b"/poison-fail" in text:
            raise RetryableError("poisoned on purpose", code="poison")


def _die(point: str) -> None:
    sys.stdout.write(f'{{"event": "fault_injected", "point": "{point}"}}\n')
    sys.stdout.flush()
    os._exit(137)
