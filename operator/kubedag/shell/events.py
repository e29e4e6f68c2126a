"""Post a run's Events in order, folding bursts of list-events into one.

On a fast pipeline stages finish every few tens of milliseconds; one Event per transition
would be most of the operator's API writes. Events wait here up to FLUSH_DELAY, and
consecutive "Started ..." / "Succeeded ..." Events of a run merge into one - the way kubectl's
event recorder aggregates, but before the write instead of after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kubedag.core.plan import Event
from kubedag.shell.kube import RunRef

FLUSH_DELAY = 1.0
Poster = Callable[[RunRef, Event], Awaitable[None]]


class EventBuffer:
    def __init__(self, post: Poster, delay: float = FLUSH_DELAY) -> None:
        self._post = post
        self._delay = delay
        self._pending: dict[str, tuple[RunRef, list[Event]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, run: RunRef, events: list[Event]) -> None:
        if not events:
            return
        if run.uid in self._pending:
            queued = self._pending[run.uid][1]
            for event in events:
                _fold(queued, event)
            return
        self._pending[run.uid] = (run, list(events))
        task = asyncio.ensure_future(self._flush_later(run.uid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, uid: str) -> None:
        await asyncio.sleep(self._delay)
        run, events = self._pending.pop(uid)
        for event in events:
            await self._post(run, event)

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
