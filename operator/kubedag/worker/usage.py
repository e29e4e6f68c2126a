"""Resource usage of the whole process tree, reported with the outputs for right-sizing stages.

Requests in a Pipeline are guesses until someone measures; the worker measures what the attempt
actually used so the operator can put it in the run's status. A command stage may fork helpers,
so the tree is sampled, not just this process. Sampling can miss a short peak, so the kernel's
own high-water marks (getrusage) are folded in as a lower bound.

On Linux (every pod) the tree is read straight from /proc: psutil would add ~1.4 MiB of imports
(psutil, subprocess, datetime, ...) to the RSS the worker reports as the stage's. Elsewhere (a
local run on macOS) psutil does the sampling, imported only then.

GPUs are sampled in the same thread, less often (kubedag.worker.gpu): NVML's utilization is
itself an average over the last 1/6 to 1 s, so reading it ten times a second adds nothing.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from kubedag.worker.gpu import GpuSampler, GpuUsage

log = logging.getLogger(__name__)

DEFAULT_PERIOD = 0.1  # seconds between samples
GPU_PERIOD = 0.25  # seconds between GPU samples
PROC = "/proc"


class Usage(NamedTuple):
    cpu_seconds: float
    peak_rss_bytes: int
    gpu: GpuUsage | None = None  # None: no GPU visible, or none could be measured

    def to_json(self) -> dict[str, float | int]:
        """The termination message's ``usage`` field, in the API's camelCase."""
        measured = {"cpuSeconds": round(self.cpu_seconds, 3), "peakRssBytes": self.peak_rss_bytes}
        return measured if self.gpu is None else (measured | self.gpu.to_json())


def _read(path: str) -> bytes:
    """A /proc file's bytes (no buffered file object: this runs ten times a second)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def proc_children(pid: int) -> list[int]:
    """The direct children of ``pid``: those of each of its threads (a child belongs to the
    thread that forked it). Empty once the process is gone."""
    try:
        tids = os.listdir(f"{PROC}/{pid}/task")
    except OSError:
        return []
    children: list[int] = []
    for tid in tids:
        try:
            children.extend(int(c) for c in _read(f"{PROC}/{pid}/task/{tid}/children").split())
        except OSError:  # the thread exited meanwhile
            continue
    return children


def proc_tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents before children, each once (a child
    reparented between two reads of its parent's threads would show up twice)."""
    tree, seen, index = [root], {root}, 0
    while index < len(tree):
        for child in proc_children(tree[index]):
            if child not in seen:
                seen.add(child)
                tree.append(child)
        index += 1
    return tree


def proc_sample(root: int) -> tuple[float, int]:
    """CPU seconds and RSS of the live tree right now, from /proc (Linux).

    A process's ``cutime``/``cstime`` hold the CPU of descendants it has already reaped, which are
    no longer in the tree, so adding them to every live process's own time counts each second
    once. Processes that vanish mid-sample are skipped, as psutil would.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu_ticks, pages = 0, 0
    for pid in proc_tree(root):
        try:
            stat, statm = _read(f"{PROC}/{pid}/stat"), _read(f"{PROC}/{pid}/statm")
        except OSError:
            continue
        # After the command name, which may hold spaces and parentheses: fields 3 (state) on,
        # so utime, stime, cutime and cstime (14-17) are at 11-14.
        fields = stat[stat.rindex(b")") + 2 :].split()
        cpu_ticks += sum(int(f) for f in fields[11:15])
        pages += int(statm.split()[1])
    return cpu_ticks / ticks, pages * page


def psutil_sample(root: int) -> tuple[float, int]:
    """The same as ``proc_sample`` through psutil, where there is no /proc (macOS)."""
    import psutil  # noqa: PLC0415 - not imported on Linux, where it would only add to the RSS

    try:
        process = psutil.Process(root)
    except psutil.Error:
        return 0.0, 0
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        tree = [process]
    cpu, rss = 0.0, 0
    for member in tree:
        try:
            with member.oneshot():
                times = member.cpu_times()
                rss += member.memory_info().rss
        except psutil.Error:
            continue
        cpu += times.user + times.system + times.children_user + times.children_system
    return cpu, rss


def _proc_usable() -> bool:
    return sys.platform.startswith("linux") and os.path.exists(
        f"{PROC}/{os.getpid()}/task/{os.getpid()}/children"
    )


def sampler_for_platform() -> Callable[[int], tuple[float, int]]:
    """/proc where it has what is needed (children lists need CONFIG_PROC_CHILDREN), else psutil."""
    return proc_sample if _proc_usable() else psutil_sample


def _kernel_peak_rss() -> int:
    """The largest RSS of this process or any reaped child, in bytes.

    On Linux this process's own mark is VmHWM (per address space): getrusage's ru_maxrss
    survives exec, so a worker started from a big process (a test session, a local run from a
    notebook) would report its parent's size at fork as its own peak.
    """
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    own = _vm_hwm()
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return int(max(own, children))


def _vm_hwm() -> int | None:
    try:
        status = _read("/proc/self/status")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(b"VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


class UsageSampler:
    """Samples the tree rooted at this process from a daemon thread until ``stop``.

    CPU time only grows, but an orphaned grandchild reaped by init takes its seconds with it,
    so the result is the largest total seen rather than the last one. With a ``gpu`` sampler,
    its baseline is read in ``start`` (before the work begins) and its devices every
    ``gpu_period`` seconds; a GPU failure never stops the CPU and memory sampling.
    """

    def __init__(
        self,
        period: float = DEFAULT_PERIOD,
        pid: int | None = None,
        sample: Callable[[int], tuple[float, int]] | None = None,
        gpu: GpuSampler | None = None,
        gpu_period: float = GPU_PERIOD,
    ) -> None:
        self._root = pid or os.getpid()
        self._sample = sample or sampler_for_platform()
        self._period = period
        self._gpu = gpu
        self._gpu_period = gpu_period
        self._next_gpu_sample = 0.0
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._cpu = 0.0
        self._rss = 0
        self._thread = threading.Thread(target=self._loop, name="kubedag-usage", daemon=True)

    def start(self) -> UsageSampler:
        if self._gpu is not None and not self._gpu.start():
            self._gpu = None
        self._take()
        self._thread.start()
        return self

    def _take(self) -> None:
        cpu, rss = self._sample(self._root)
        with self._lock:
            self._cpu = max(self._cpu, cpu)
            self._rss = max(self._rss, rss)

    def _loop(self) -> None:
        while not self._stopped.wait(self._period):
            try:
                self._take()
            except Exception as error:  # usage is informative; never let it kill the stage
                log.debug("usage sample failed: %s", error)
            if self._gpu is not None and time.monotonic() >= self._next_gpu_sample:
                self._next_gpu_sample = time.monotonic() + self._gpu_period
                try:
                    self._gpu.sample()
                except Exception as error:
                    log.debug("GPU sample failed: %s", error)

    def stop(self) -> Usage:
        """Stop sampling and return the totals, including a last sample taken now."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
        self._take()
        gpu = self._gpu.stop() if self._gpu is not None else None
        with self._lock:
            return Usage(self._cpu, max(self._rss, _kernel_peak_rss()), gpu)
