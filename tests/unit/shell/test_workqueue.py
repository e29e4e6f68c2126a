"""The coalescing work queue: one worker per key, bursts become one more pass."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kubedag.shell.workqueue import URGENT_STREAK, WorkQueue


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), timeout=5))


async def drain(queue: WorkQueue) -> list[Any]:
    """Every key ready now, each marked done at once."""
    keys = []
    while len(queue):
        key = await queue.get()
        keys.append(key)
        queue.done(key)
    return keys


def test_keys_come_out_in_order() -> None:
    async def scenario() -> list[Any]:
        queue = WorkQueue()
        for key in ["a", "b", ("ns", "c")]:
            queue.add(key)
        return await drain(queue)

    assert run(scenario) == ["a", "b", ("ns", "c")]


def test_adding_a_queued_key_again_coalesces() -> None:
    async def scenario() -> tuple[int, list[Any]]:
        queue = WorkQueue()
        for _ in range(5):
            queue.add("a")
        queue.add("b")
        queue.add("a")
        return len(queue), await drain(queue)

    assert run(scenario) == (2, ["a", "b"])


def test_events_while_processing_cause_exactly_one_more_pass() -> None:
    async def scenario() -> list[Any]:
        queue = WorkQueue()
        queue.add("a")
        key = await queue.get()
        # Three events arrive while "a" is being processed: not handed to another worker.
        for _ in range(3):
            queue.add("a")
        assert len(queue) == 0
        queue.done(key)
        assert len(queue) == 1
        return await drain(queue)

    assert run(scenario) == ["a"]


def test_done_without_new_events_does_not_requeue() -> None:
    async def scenario() -> int:
        queue = WorkQueue()
        queue.add("a")
        queue.done(await queue.get())
        return len(queue)

    assert run(scenario) == 0


def test_get_waits_for_a_key() -> None:
    async def scenario() -> Any:
        queue = WorkQueue()
        waiter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        queue.add("late")
        return await waiter

    assert run(scenario) == "late"


def test_add_after_fires_later() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add_after("a", 0.05)
        assert len(queue) == 0
        await asyncio.sleep(0.1)
        assert len(queue) == 1
        assert await queue.get() == "a"

    run(scenario)


def test_add_after_zero_or_negative_is_immediate() -> None:
    async def scenario() -> int:
        queue = WorkQueue()
        queue.add_after("a", 0)
        queue.add_after("b", -3)
        return len(queue)

    assert run(scenario) == 2


def test_earlier_wake_up_wins() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add_after("a", 0.05)
        queue.add_after("a", 10)  # later: ignored
        await asyncio.sleep(0.1)
        assert len(queue) == 1
        queue.done(await queue.get())
        queue.add_after("b", 10)
        queue.add_after("b", 0.02)  # sooner: replaces the pending one
        await asyncio.sleep(0.06)
        assert await drain(queue) == ["b"]

    run(scenario)


def test_forget_cancels_a_pending_wake_up() -> None:
    async def scenario() -> int:
        queue = WorkQueue()
        queue.add_after("a", 0.02)
        queue.forget("a")
        queue.forget("never-added")
        await asyncio.sleep(0.05)
        return len(queue)

    assert run(scenario) == 0


def test_a_timer_firing_while_processing_coalesces_too() -> None:
    async def scenario() -> list[Any]:
        queue = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add_after("a", 0.01)
        await asyncio.sleep(0.03)
        assert len(queue) == 0  # still processing
        queue.done(key)
        return await drain(queue)

    assert run(scenario) == ["a"]


def test_news_for_soon_join_the_next_pass_or_come_on_their_own() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add_soon("a", 0.05)
        queue.add_soon("a", 0.05)  # coalesces
        assert len(queue) == 0
        await asyncio.sleep(0.1)
        assert await drain(queue) == ["a"]
        # A pass that starts sooner takes the news along: no second pass for them.
        queue.add_soon("b", 0.05)
        queue.add("b")
        assert await drain(queue) == ["b"]
        await asyncio.sleep(0.1)
        assert len(queue) == 0

    run(scenario)


def test_news_for_soon_during_a_pass_still_come() -> None:
    """The pass in progress may have read its facts before the news: a later one must come."""
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add_soon("a", 0.02)
        queue.done(key)
        await asyncio.sleep(0.05)
        assert await drain(queue) == ["a"]
        queue.add_soon("a", 0.02)
        queue.forget("a")
        await asyncio.sleep(0.05)
        assert len(queue) == 0

    run(scenario)


def test_urgent_news_go_ahead_of_ordinary_keys() -> None:
    """1,000 new runs' first passes must not delay the dependants of a finished stage."""
    async def scenario() -> list[Any]:
        queue = WorkQueue()
        for key in ["new-1", "new-2", "new-3"]:
            queue.add(key)
        queue.add("finished", urgent=True)
        queue.add("new-2", urgent=True)  # waiting already: moves up, keeps its one place
        return await drain(queue)

    assert run(scenario) == ["finished", "new-2", "new-1", "new-3"]


def test_urgency_outlives_a_pass_in_progress_and_a_rest() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add("busy")
        key = await queue.get()
        queue.add("busy", urgent=True)  # news during the pass
        queue.add("other")
        queue.done(key)
        assert await drain(queue) == ["busy", "other"]
        # News while the key rests come when the rest ends, still ahead of the others.
        queue.add("resting")
        key = await queue.get()
        queue.rest(key, 0.05)
        queue.done(key)
        queue.add("resting", urgent=True)
        assert len(queue) == 0
        await asyncio.sleep(0.02)
        queue.add("waiting")
        await asyncio.sleep(0.05)
        assert await drain(queue) == ["resting", "waiting"]

    run(scenario)


def test_a_stream_of_urgent_news_does_not_starve_ordinary_keys() -> None:
    async def scenario() -> list[Any]:
        queue = WorkQueue()
        queue.add("new")
        for number in range(URGENT_STREAK + 2):
            queue.add(number, urgent=True)
        return await drain(queue)

    assert run(scenario) == [*range(URGENT_STREAK), "new", URGENT_STREAK, URGENT_STREAK + 1]


def test_a_worker_cancelled_after_being_woken_hands_the_key_on() -> None:
    async def scenario() -> Any:
        queue = WorkQueue()
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await asyncio.sleep(0)  # both wait
        queue.add("a")  # wakes the first ...
        first.cancel()  # ... which is cancelled before it runs
        return await second

    assert run(scenario) == "a"
