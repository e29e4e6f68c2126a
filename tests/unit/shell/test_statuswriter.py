"""The background status writer: one write in flight per run, bursts coalesce, the patch is
computed against what the API server holds."""

from __future__ import annotations

import asyncio
from typing import Any

from kubedag.shell.kube import RunRef
from kubedag.shell.statuswriter import StatusWriter

RUN = RunRef("ns", "run", "uid")


class SlowServer:
    """Stands in for the status subresource: applies merge patches, slowly."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.patches: list[dict[str, Any]] = []
        self.fail = False

    async def patch_run_status(self, run: RunRef, patch: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.02)
        if self.fail:
            raise RuntimeError("server error")
        self.patches.append(patch)
        for key, value in patch.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value
        return {"metadata": {"name": run.name}, "status": dict(self.status)}


def _run(server: SlowServer, steps: list[dict[str, Any]], *, min_spacing: float = 0.0,
         pause: float = 0.005) -> tuple[list[str], list[str]]:
    """Submits ``steps``, pausing ``pause`` seconds after the first and between the others."""
    written: list[str] = []
    failed: list[str] = []

    async def main() -> None:
        writer = StatusWriter(server,  # type: ignore[arg-type]
                              lambda ref, old, new, patch, updated: written.append(new["phase"]),
                              lambda ref: failed.append(ref.name), min_spacing=min_spacing)
        for number, status in enumerate(steps):
            writer.submit(RUN, {}, status)
            if number == 0 or pause > 0.005:
                await asyncio.sleep(pause)  # the first write is now in flight
        await writer.flush()

    asyncio.run(main())
    return written, failed


def test_a_burst_of_decisions_becomes_two_writes_ending_with_the_last() -> None:
    server = SlowServer()
    written, _ = _run(server, [{"phase": p} for p in ("Pending", "Running", "Running2", "Done")])
    # The first write goes out; what is decided meanwhile coalesces into one write of the
    # latest status.
    assert written == ["Pending", "Done"]
    assert server.status == {"phase": "Done"}


def test_cheap_writes_of_one_run_are_spaced_so_that_a_burst_folds_into_one() -> None:
    server = SlowServer()
    # Each write takes 20 ms; decisions come every 60 ms. Without a minimum spacing each one
    # is written; with 0.3 s the three after the first fold into one write of the latest.
    steps = [{"phase": p} for p in ("Pending", "Running", "Running2", "Done")]
    assert _run(server, steps, pause=0.06)[0] == ["Pending", "Running", "Running2", "Done"]
    assert _run(SlowServer(), steps, pause=0.06, min_spacing=0.3)[0] == ["Pending", "Done"]


def test_patches_are_minimal_against_what_was_written() -> None:
    server = SlowServer()

    async def main() -> None:
        writer = StatusWriter(server, lambda *a: None, lambda ref: None,  # type: ignore[arg-type]
                              min_spacing=0.0)
        writer.submit(RUN, {}, {"phase": "Running", "stages": {"a": {"phase": "Running"}}})
        await writer.flush()
        writer.submit(RUN, {}, {"phase": "Running", "stages": {"a": {"phase": "Succeeded"}}})
        await writer.flush()

    asyncio.run(main())
    assert server.patches[-1] == {"stages": {"a": {"phase": "Succeeded"}}}


def test_a_failed_write_is_reported_so_the_run_is_re_derived() -> None:
    server = SlowServer()
    server.fail = True
    written, failed = _run(server, [{"phase": "Running"}])
    assert (written, failed) == ([], ["run"])


def test_the_write_that_ends_the_run_does_not_wait_out_the_spacing() -> None:
    """`kubectl wait` and the calling CI job wait for the end; nothing is left to fold into it.
    A write that does not end the run still rests."""
    server = SlowServer()
    written_at: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        writer = StatusWriter(
            server,  # type: ignore[arg-type]
            lambda ref, old, new, patch, updated: written_at.append(
                (new["phase"], loop.time() - began)),
            lambda ref: None, min_spacing=2.0)
        writer.submit(RUN, {}, {"phase": "Running", "progress": 1})
        await asyncio.sleep(0.1)  # written; the next write rests two seconds
        writer.submit(RUN, {}, {"phase": "Running", "progress": 2})
        await asyncio.sleep(0.1)  # resting
        writer.submit(RUN, {}, {"phase": "Succeeded", "progress": 3})
        await writer.flush()

    asyncio.run(main())
    assert [phase for phase, _ in written_at] == ["Running", "Succeeded"]
    assert written_at[1][1] < 1.0, written_at
    assert server.status == {"phase": "Succeeded", "progress": 3}


def test_a_finished_run_decided_before_its_rest_is_written_at_once() -> None:
    server = SlowServer()
    written_at: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        writer = StatusWriter(server,  # type: ignore[arg-type]
                              lambda *a: written_at.append(loop.time() - began),
                              lambda ref: None, min_spacing=2.0)
        writer.submit(RUN, {}, {"phase": "Running"})
        await asyncio.sleep(0.005)  # the first write is in flight
        writer.submit(RUN, {}, {"phase": "Failed"})
        await writer.flush()

    asyncio.run(main())
    assert len(written_at) == 2 and written_at[1] < 1.0, written_at
