"""The /proc sampler agrees with psutil (the fallback elsewhere) on this process and on a tree."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kubedag.worker.usage import (
    Usage,
    UsageSampler,
    proc_sample,
    proc_tree,
    psutil_sample,
    sampler_for_platform,
)

MIB = 2**20
CPU_TOLERANCE = 0.1  # seconds: the two samplers read the clocks a moment apart
RSS_TOLERANCE = 2 * MIB  # a sample in between allocates a little

# A child that holds 40 MiB and burns CPU, after starting a grandchild that holds 30 MiB; each
# says "ready" once its memory is touched, then both wait for stdin to close.
TREE = """
import subprocess, sys, time
megabytes = int(sys.argv[1])
block = bytearray(megabytes * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
child = None
if len(sys.argv) > 2:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[3]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"ready\\n"
print("ready", flush=True)
sys.stdin.read()
if child:
    child.stdin.close()
    child.wait()
"""


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _agree(a: tuple[float, int], b: tuple[float, int]) -> None:
    assert abs(a[0] - b[0]) <= CPU_TOLERANCE, (a, b)
    assert abs(a[1] - b[1]) <= RSS_TOLERANCE, (a, b)


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        [sys.executable, "-c", TREE, "40", TREE, "30"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == b"ready\n"
    yield child
    child.stdin.close()
    child.wait(timeout=30)
    child.stdout.close()


def test_linux_samples_from_proc() -> None:
    assert sampler_for_platform() is proc_sample


def test_a_single_process_agrees_with_psutil() -> None:
    """One process with no children (not this one: a test session may have children of its
    own, such as a local control plane, and they would be part of its tree)."""
    child = subprocess.Popen([sys.executable, "-c", TREE, "40"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        assert proc_tree(child.pid) == [child.pid]
        ours, theirs = proc_sample(child.pid), psutil_sample(child.pid)
        _agree(ours, theirs)
        assert ours[0] >= 0.3
        assert ours[1] == pytest.approx(psutil.Process(child.pid).memory_info().rss,
                                        abs=RSS_TOLERANCE)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()


def test_a_tree_agrees_with_psutil(tree: subprocess.Popen[bytes]) -> None:
    root = psutil.Process(tree.pid)
    assert set(proc_tree(tree.pid)) == {tree.pid, *(p.pid for p in root.children(recursive=True))}
    assert len(proc_tree(tree.pid)) == 2
    ours, theirs = proc_sample(tree.pid), psutil_sample(tree.pid)
    _agree(ours, theirs)
    assert ours[0] >= 0.6  # both burnt 0.3 s
    assert ours[1] >= 70 * MIB


def test_the_tree_from_this_process_includes_children_forked_by_other_threads(
    tree: subprocess.Popen[bytes],
) -> None:
    """A child belongs to the thread that forked it: its children list is read too."""
    started: list[subprocess.Popen[bytes]] = []
    forked, done = threading.Event(), threading.Event()

    def fork() -> None:
        started.append(subprocess.Popen(["sleep", "30"]))
        forked.set()
        done.wait()  # alive while the tree is read: the child is still this thread's

    thread = threading.Thread(target=fork)
    thread.start()
    try:
        assert forked.wait(10)
        members = proc_tree(os.getpid())
        assert tree.pid in members and started[0].pid in members
        assert proc_sample(os.getpid())[1] >= 70 * MIB
    finally:
        done.set()
        thread.join()
        started[0].kill()
        started[0].wait()


def test_a_command_name_with_parentheses_and_spaces(tmp_path: Path) -> None:
    """/proc/<pid>/stat puts the command name in parentheses; the fields are read after it."""
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "30"])
    try:
        deadline = time.monotonic() + 10
        while "a) b" not in psutil.Process(child.pid).name():  # until the exec is done
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _agree(proc_sample(child.pid), psutil_sample(child.pid))
        assert proc_sample(child.pid)[1] > 0
    finally:
        child.kill()
        child.wait()


def test_a_vanished_process_samples_as_nothing() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert proc_sample(child.pid) == (0.0, 0)
    assert psutil_sample(child.pid) == (0.0, 0)
    assert proc_tree(child.pid) == [child.pid]


def test_the_sampler_sees_a_tree_it_did_not_start(tree: subprocess.Popen[bytes]) -> None:
    usage = UsageSampler(period=0.01, pid=tree.pid).start().stop()
    assert usage.cpu_seconds >= 0.6
    assert usage.peak_rss_bytes >= 70 * MIB


def test_the_psutil_fallback_samples_too(tree: subprocess.Popen[bytes]) -> None:
    usage = UsageSampler(period=0.01, pid=tree.pid, sample=psutil_sample).start().stop()
    assert usage.cpu_seconds >= 0.6
    assert usage.peak_rss_bytes >= 70 * MIB


def test_usage_json_is_camel_case() -> None:
    assert Usage(1.23456, 42).to_json() == {"cpuSeconds": 1.235, "peakRssBytes": 42}
