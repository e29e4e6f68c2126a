"""A coalescing work queue, as client-go's: a key is processed by one worker at a time, and
any number of events that arrive meanwhile cause exactly one more pass.

Keys wait in two lanes. News that may start or end work (a pod that succeeded, a Job that
failed: `kubedag.core.observe.is_urgent`) put a key in the urgent lane; everything else (a
new run's first pass, a timer, a status echo) in the ordinary one. Workers take from the
urgent lane first, so when 1,000 runs arrive at once the dependants of a finished stage do
not wait behind 1,000 first passes (`make bench --only many` measured 18 s of that). Every
URGENT_STREAK-th pass in a row comes from the ordinary lane when it holds a key, so a steady
stream of urgent news cannot starve new runs and timers.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable

# At most this many passes in a row from the urgent lane while the ordinary one waits.
URGENT_STREAK = 4


class WorkQueue:
    def __init__(self) -> None:
        # Keys ready for a worker, oldest first: each dirty and not being processed, in
        # exactly one lane.
        self._urgent_lane: OrderedDict[Hashable, None] = OrderedDict()
        self._ordinary_lane: OrderedDict[Hashable, None] = OrderedDict()
        self._streak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dirty: set[Hashable] = set()
        # Dirty keys whose news were urgent (kept while a pass runs: its successor is urgent).
        self._urgent: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        # Keys whose pending timer adds them as urgent (news that came during a rest).
        self._urgent_later: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._not_before: dict[Hashable, float] = {}
        self._soon: dict[Hashable, asyncio.TimerHandle] = {}

    def rest(self, key: Hashable, seconds: float) -> None:
        """Hold the key's next pass back this long after the current one: events meanwhile
        join it. Pacing a big run by the cost of its passes (as the Job controller batches
        pod events) keeps it from spending the operator's CPU on one pass per pod event."""
        if seconds > 0:
            self._not_before[key] = asyncio.get_running_loop().time() + seconds

    def add(self, key: Hashable, urgent: bool = False) -> None:
        """Queue a pass of the key; ``urgent`` when its news may start or end work."""
        if key in self._dirty:
            if urgent and key not in self._urgent:
                self._urgent.add(key)
                if key in self._ordinary_lane:  # waiting already: move it up
                    del self._ordinary_lane[key]
                    self._urgent_lane[key] = None
            return
        not_before = self._not_before.get(key)
        if not_before is not None:
            wait = not_before - asyncio.get_running_loop().time()
            if wait > 0:
                self.add_after(key, wait, urgent)
                return
            del self._not_before[key]
        self._dirty.add(key)
        if urgent:
            self._urgent.add(key)
        if key not in self._processing:
            self._ready(key)

    def add_after(self, key: Hashable, delay: float, urgent: bool = False) -> None:
        """Add later; an earlier pending wake-up for the same key wins."""
        if delay <= 0:
            self.add(key, urgent)
            return
        if urgent:
            self._urgent_later.add(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def add_soon(self, key: Hashable, within: float) -> None:
        """Add within ``within`` seconds, unless a pass of the key starts sooner: that pass
        sees the news too. For news that need no pass of their own."""
        if key in self._dirty or key in self._soon:
            return
        self._soon[key] = asyncio.get_running_loop().call_later(within, self._fire_soon, key)

    def _fire_soon(self, key: Hashable) -> None:
        self._soon.pop(key, None)
        self.add(key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        urgent = key in self._urgent_later
        self._urgent_later.discard(key)
        self.add(key, urgent)

    def backoff(self, key: Hashable, base: float = 0.5, cap: float = 60.0) -> float:
        """Delay before retrying a key whose pass just failed: doubles per consecutive failure,
        so a run that always fails (a bug, a dead API) cannot spin the operator."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        return min(base * float(2**failures), cap)

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        self._urgent_later.discard(key)
        for timers in (self._timers, self._soon):
            timer = timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    async def get(self) -> Hashable:
        while (key := self._take()) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_a_worker()  # woken, then cancelled: pass the key on
                raise
        self._dirty.discard(key)
        self._urgent.discard(key)
        self._processing.add(key)
        soon = self._soon.pop(key, None)
        if soon is not None:
            soon.cancel()  # this pass reads what the news were about
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            not_before = self._not_before.get(key)
            wait = 0.0 if not_before is None else not_before - asyncio.get_running_loop().time()
            if wait > 0:
                urgent = key in self._urgent
                self._dirty.discard(key)
                self._urgent.discard(key)
                self.add_after(key, wait, urgent)
            else:
                self._ready(key)

    def _ready(self, key: Hashable) -> None:
        (self._urgent_lane if key in self._urgent else self._ordinary_lane)[key] = None
        self._wake_a_worker()

    def _wake_a_worker(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _take(self) -> Hashable | None:
        """The next key for a worker: urgent first, but never more than URGENT_STREAK of
        them in a row while an ordinary key waits."""
        if self._urgent_lane and (self._streak < URGENT_STREAK or not self._ordinary_lane):
            self._streak += 1
            return self._urgent_lane.popitem(last=False)[0]
        self._streak = 0
        if self._ordinary_lane:
            return self._ordinary_lane.popitem(last=False)[0]
        return None

    def __len__(self) -> int:
        return len(self._urgent_lane) + len(self._ordinary_lane)
