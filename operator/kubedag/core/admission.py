"""A cluster-wide budget of running stages, handed out by run priority (Kueue's idea, small).

With `KUBEDAG_MAX_RUNNING_STAGES` set, ready stages of all runs compete for the free room: a run
may start only what is left after every run ahead of it in line (higher `spec.priority`, then
older) has been served. Runs ahead that are waiting keep their claim, so a stream of small
low-priority runs cannot starve a big high-priority one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Claim:
    """A run's place in line and how many ready stages it has waiting for room."""

    run: tuple[str, str]
    priority: int
    created: datetime
    waiting: int = 0

    def ahead_of(self, other: Claim) -> bool:
        return (-self.priority, self.created, self.run) < (-other.priority, other.created,
                                                           other.run)


def room_for(limit: int | None, running: int, claim: Claim, others: Iterable[Claim]) -> int | None:
    """How many stages the claim's run may start now; None when there is no budget at all."""
    if limit is None:
        return None
    free = max(limit - running, 0)
    reserved = sum(o.waiting for o in others if o.run != claim.run and o.ahead_of(claim))
    return max(free - reserved, 0)
