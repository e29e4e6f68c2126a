"""Start and stop control-plane processes so that nothing outlives the test bed.

Each component runs in its own session (process group), so stopping kills it and any child it
forked. When the test bed belongs to a test session, the kernel also kills each component if the
Python process that started it dies (PR_SET_PDEATHSIG), so even a SIGKILLed pytest leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Popen objects of the components this process started: holding them keeps Python from warning
# about a running child being garbage-collected, and lets `alive` reap them.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(args: Sequence[str | Path], log: Path, *, tie_to_parent: bool) -> int:
    """Start a component with output to ``log``; return its pid (which is also its pgid)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = _die_with_parent if tie_to_parent else None
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509 - prctl only, no locks taken
        )
    _children[process.pid] = process
    return process.pid


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        # Reap it if it is our child and already dead, so a zombie does not look alive.
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(pids: Sequence[int], grace_seconds: float = 1.0) -> None:
    """SIGTERM every group, then SIGKILL what is left after the grace period.

    kube-apiserver takes about 10 s to exit on SIGTERM; the test bed's etcd data is throwaway, so
    a short grace and SIGKILL is the right trade.
    """
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
