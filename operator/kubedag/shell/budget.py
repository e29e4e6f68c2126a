"""The operator-wide stage budget's bookkeeping: who runs how much, who waits in line.

Decisions are `kubedag.core.admission`'s; this only remembers, between passes, each run's
running stages and its claim, and says which runs to wake when room frees up.
"""

from __future__ import annotations

from datetime import datetime

from kubedag.core.admission import Claim, room_for
from kubedag.shell.cache import RunKey


class StageBudget:
    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.running: dict[RunKey, int] = {}
        self.claims: dict[RunKey, Claim] = {}

    def room(self, key: RunKey, priority: int, created: datetime) -> int | None:
        if self.limit is None:
            return None
        claim = self.claims.get(key) or Claim(key, priority, created)
        return room_for(self.limit, sum(self.running.values()), claim, self.claims.values())

    def settle(self, key: RunKey, priority: int, created: datetime, running: int,
               waiting: int) -> list[RunKey]:
        """Record a pass's outcome; returns the waiting runs to wake, first in line first."""
        if self.limit is None:
            return []
        before = self.running.get(key, 0)
        if running:
            self.running[key] = running
        else:
            self.running.pop(key, None)
        if waiting:
            self.claims[key] = Claim(key, priority, created, waiting)
        else:
            self.claims.pop(key, None)
        return self._waiting_runs(exclude=key) if running < before else []

    def forget(self, key: RunKey) -> list[RunKey]:
        freed = self.running.pop(key, 0)
        self.claims.pop(key, None)
        return self._waiting_runs(exclude=key) if freed else []

    def _waiting_runs(self, exclude: RunKey) -> list[RunKey]:
        line = sorted(self.claims.values(), key=lambda c: (-c.priority, c.created, c.run))
        return [c.run for c in line if c.run != exclude]
