"""Post a run's Events in order, folding bursts of list-events into one.

On a fast pipeline stages finish every few tens of milliseconds; one Event per transition
would be most of the operator's API writes. Events wait here up to FLUSH_DELAY, and
consecutive "Started ..." / "Succeeded ..." Events of a run merge into one - the way kubectl's
event recorder aggregates, but before the write instead of after.

A run's Events are also posted at most once every FLUSH_SPACING: after a quiet spell the first
news go out within FLUSH_DELAY, but a busy run's fold for longer. With 1,000 runs on a slow
control plane a run's stages end seconds apart, and one Event per stage end was 1.5 writes a
stage (`make bench ARGS='--only many'`: 14,663 Events for 10,000 stages).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kubedag.core.plan import Event
from kubedag.shell.kube import RunRef

FLUSH_DELAY = 1.0
FLUSH_SPACING = 5.0
Poster = Callable[[RunRef, Event], Awaitable[None]]


class EventBuffer:
    def __init__(self, post: Poster, delay: float = FLUSH_DELAY,
                 spacing: float = FLUSH_SPACING) -> None:
        self._post = post
        self._delay, self._spacing = delay, spacing
        self._pending: dict[str, tuple[RunRef, list[Event]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # When each run's Events were last posted, for runs posted within the last spacing.
        self._flushed: dict[str, float] = {}

    def add(self, run: RunRef, events: list[Event]) -> None:
        if not events:
            return
        if run.uid in self._pending:
            queued = self._pending[run.uid][1]
            for event in events:
                _fold(queued, event)
            return
        self._pending[run.uid] = (run, list(events))
        delay, last = self._delay, self._flushed.get(run.uid)
        if last is not None:
            delay = max(delay, last + self._spacing - asyncio.get_running_loop().time())
        task = asyncio.ensure_future(self._flush_later(run.uid, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, uid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        run, events = self._pending.pop(uid)
        loop = asyncio.get_running_loop()
        flushed = self._flushed[uid] = loop.time()
        loop.call_later(self._spacing, self._forget, uid, flushed)
        for event in events:
            await self._post(run, event)

    def _forget(self, uid: str, flushed: float) -> None:
        """A run quiet for a whole spacing needs no record: its next Events go out soon."""
        if self._flushed.get(uid) == flushed:
            del self._flushed[uid]

    async def drain(self) -> None:
        """Wait for everything queued so far to be posted (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _fold(queued: list[Event], event: Event) -> None:
    """Merge ``event`` into a queued list-event of its kind, else queue it.

    The search goes back only across list-events: on a chain, passes alternate "Succeeded a",
    "Started b", "Succeeded b", ... and each kind still folds into one Event; but nothing moves
    past a Warning or a run-level Event, so those keep their order.
    """
    for position in range(len(queued) - 1, -1, -1):
        candidate = queued[position]
        if candidate.verb is None:
            break
        merged = candidate.absorb(event)
        if merged is not None:
            queued[position] = merged
            return
    queued.append(event)
