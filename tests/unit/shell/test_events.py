"""Stage Events of fast passes fold into one Event per kind; Warnings keep their place."""

from __future__ import annotations

import asyncio

from kubedag.core.plan import Event
from kubedag.shell.events import EventBuffer
from kubedag.shell.kube import RunRef

RUN = RunRef("ns", "run", "uid")


def _post_all(batches: list[list[Event]]) -> list[Event]:
    posted: list[Event] = []

    async def post(_run: RunRef, event: Event) -> None:
        posted.append(event)

    async def main() -> None:
        buffer = EventBuffer(post, delay=0.01)
        for batch in batches:
            buffer.add(RUN, batch)
        await buffer.drain()

    asyncio.run(main())
    return posted


def test_a_chain_of_passes_folds_into_one_event_per_kind() -> None:
    passes = [[Event.listing("StageSucceeded", "Succeeded", [f"s{i}"]),
               Event.listing("StageStarted", "Started", [f"s{i + 1}"])] for i in range(5)]
    posted = _post_all(passes)
    assert [e.message for e in posted] == ["Succeeded s0, s1, s2, s3, s4",
                                           "Started s1, s2, s3, s4, s5"]


def test_nothing_folds_across_a_warning() -> None:
    warning = Event("Warning", "StageRetrying", "s1 failed; retrying")
    posted = _post_all([[Event.listing("StageStarted", "Started", ["a"])], [warning],
                        [Event.listing("StageStarted", "Started", ["b"])]])
    assert [e.message for e in posted] == ["Started a", "s1 failed; retrying", "Started b"]
