"""Resource usage of the whole process tree, reported with the outputs for right-sizing stages.

Requests in a Pipeline are guesses until someone measures; the worker measures what the attempt
actually used so the operator can put it in the run's status. A command stage may fork helpers,
so the tree is sampled, not just this process. Sampling can miss a short peak, so the kernel's
own high-water marks (getrusage) are folded in as a lower bound.
"""

from __future__ import annotations

import logging
import os
import resource
import threading
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

DEFAULT_PERIOD = 0.1  # seconds between samples


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_bytes: int

    def to_json(self) -> dict[str, float | int]:
        """The termination message's ``usage`` field, in the API's camelCase."""
        return {"cpuSeconds": round(self.cpu_seconds, 3), "peakRssBytes": self.peak_rss_bytes}


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def sample(root: psutil.Process) -> tuple[float, int]:
    """CPU seconds and RSS of the live tree right now.

    A process's ``children_*`` times hold the CPU of descendants it has already reaped, which are
    no longer in the tree, so adding them to every live process's own time counts each second
    once. Processes that vanish mid-sample are skipped.
    """
    cpu, rss = 0.0, 0
    for process in _tree(root):
        try:
            with process.oneshot():
                times = process.cpu_times()
                rss += process.memory_info().rss
        except psutil.Error:
            continue
        cpu += times.user + times.system + times.children_user + times.children_system
    return cpu, rss


def _kernel_peak_rss() -> int:
    """The largest RSS of this process or any reaped child, in bytes (Linux reports KiB)."""
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return int(peak) * 1024


class UsageSampler:
    """Samples the tree rooted at this process from a daemon thread until ``stop``.

    CPU time only grows, but an orphaned grandchild reaped by init takes its seconds with it,
    so the result is the largest total seen rather than the last one.
    """

    def __init__(self, period: float = DEFAULT_PERIOD, pid: int | None = None) -> None:
        self._root = psutil.Process(pid or os.getpid())
        self._period = period
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._cpu = 0.0
        self._rss = 0
        self._thread = threading.Thread(target=self._loop, name="kubedag-usage", daemon=True)

    def start(self) -> UsageSampler:
        self._take()
        self._thread.start()
        return self

    def _take(self) -> None:
        cpu, rss = sample(self._root)
        with self._lock:
            self._cpu = max(self._cpu, cpu)
            self._rss = max(self._rss, rss)

    def _loop(self) -> None:
        while not self._stopped.wait(self._period):
            try:
                self._take()
            except Exception as error:  # usage is informative; never let it kill the stage
                log.debug("usage sample failed: %s", error)

    def stop(self) -> Usage:
        """Stop sampling and return the totals, including a last sample taken now."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        self._take()
        with self._lock:
            return Usage(self._cpu, max(self._rss, _kernel_peak_rss()))
