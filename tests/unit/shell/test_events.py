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
        buffer = EventBuffer(post, delay=0.01, spacing=0.01)
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


def test_a_busy_run_posts_at_most_once_a_spacing_and_a_quiet_one_at_once() -> None:
    posted: list[tuple[float, str]] = []
    remembered: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def post(_run: RunRef, event: Event) -> None:
            posted.append((loop.time() - start, event.message))

        buffer = EventBuffer(post, delay=0.02, spacing=0.3)
        buffer.add(RUN, [Event.listing("StageStarted", "Started", ["a"])])
        await asyncio.sleep(0.05)  # posted at 0.02: nothing was posted before
        buffer.add(RUN, [Event.listing("StageSucceeded", "Succeeded", ["a"])])
        await asyncio.sleep(0.05)
        buffer.add(RUN, [Event.listing("StageSucceeded", "Succeeded", ["b"])])
        await buffer.drain()  # both wait for 0.32 and fold
        await asyncio.sleep(0.4)  # a whole spacing quiet: the run is forgotten
        remembered.append(len(buffer._flushed))

    asyncio.run(main())
    times, messages = zip(*posted, strict=True)
    assert messages == ("Started a", "Succeeded a, b")
    assert times[0] < 0.25
    assert times[1] >= 0.3
    assert remembered == [0]
