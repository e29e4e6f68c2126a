"""`kubedag run --local`: kubedag.local's run, shown as `watch` shows a cluster run.

The run goes in a thread so that the main thread stays free for Ctrl-C, which cancels the run
(its processes are stopped as a cancelled pod's would be, and the run ends Cancelled) instead
of tearing the interpreter down around running processes.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from kubedag.api import PipelineRun, PipelineRunStatus
from kubedag.client.display import choose_display
from kubedag.core.runview import RunResult
from kubedag.local import run_local

_JOIN_SECONDS = 0.2  # how often the main thread wakes up to notice Ctrl-C


def run_locally(run: PipelineRun, *, workspace: Path | None, timeout: float | None,
                stream: IO[str]) -> tuple[RunResult, bool]:
    """(the result, whether `timeout` cancelled the run). Raises what run_local raises
    (ValueError for a run that cannot run locally)."""
    name = str(run.metadata.get("name") or "local")
    spec = run.spec.pipeline_spec
    display = choose_display(None, stream)
    cancel, timed_out = threading.Event(), threading.Event()
    finished: list[PipelineRunStatus] = []
    failure: list[BaseException] = []

    def show(status: PipelineRunStatus) -> None:
        display.update(RunResult.from_status(name, None, status, spec))

    def work() -> None:
        try:
            finished.append(run_local(run, workspace=workspace, on_status=show,
                                      cancel=cancel).status)
        except BaseException as error:  # raised again in the main thread
            failure.append(error)

    def expire() -> None:
        timed_out.set()
        cancel.set()

    worker = threading.Thread(target=work, name="kubedag-local-run")
    timer = threading.Timer(timeout, expire) if timeout is not None else None
    with _local_log_on_stderr():
        worker.start()
        if timer is not None:
            timer.start()
        try:
            while worker.is_alive():
                worker.join(_JOIN_SECONDS)
        except KeyboardInterrupt:
            print("interrupted: cancelling the local run", file=sys.stderr)
            cancel.set()
            worker.join()
        finally:
            if timer is not None:
                timer.cancel()
            display.close()
    if failure:
        raise failure[0]
    return RunResult.from_status(name, None, finished[0], spec), timed_out.is_set()


@contextmanager
def _local_log_on_stderr() -> Iterator[None]:
    """kubedag.local logs what the run ignores (resources, GPUs, node selectors) as it
    starts: shown on stderr as plain lines, whatever logging the caller configured."""
    log = logging.getLogger("kubedag.local")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
