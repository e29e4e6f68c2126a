"""A coalescing work queue, as client-go's: a key is processed by one worker at a time, and
any number of events that arrive meanwhile cause exactly one more pass."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._failures: dict[Hashable, int] = {}
        self._not_before: dict[Hashable, float] = {}
        self._soon: dict[Hashable, asyncio.TimerHandle] = {}

    def rest(self, key: Hashable, seconds: float) -> None:
        """Hold the key's next pass back this long after the current one: events meanwhile
        join it. Pacing a big run by the cost of its passes (as the Job controller batches
        pod events) keeps it from spending the operator's CPU on one pass per pod event."""
        if seconds > 0:
            self._not_before[key] = asyncio.get_running_loop().time() + seconds

    def add(self, key: Hashable) -> None:
        if key in self._dirty:
            return
        not_before = self._not_before.get(key)
        if not_before is not None:
            wait = not_before - asyncio.get_running_loop().time()
            if wait > 0:
                self.add_after(key, wait)
                return
            del self._not_before[key]
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add later; an earlier pending wake-up for the same key wins."""
        if delay <= 0:
            self.add(key)
            return
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
        self.add(key)

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
        for timers in (self._timers, self._soon):
            timer = timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._dirty.discard(key)
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
                self._dirty.discard(key)
                self.add_after(key, wait)
            else:
                self._queue.put_nowait(key)

    def __len__(self) -> int:
        return self._queue.qsize()
