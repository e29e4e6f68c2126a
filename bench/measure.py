"""What a scenario measures: when Jobs appear and pods succeed (one watch each), when runs end,
and the operator process's CPU and memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client as k8s

from bench.dags import Dag
from bench.kube import Watch

LABEL_RUN, LABEL_STAGE = "kubedag.io/run", "kubedag.io/stage"
Key = tuple[str, str]  # (run, stage)


def _key(obj: dict[str, Any]) -> Key | None:
    labels = obj["metadata"].get("labels") or {}
    if LABEL_STAGE not in labels:
        return None
    return labels.get(LABEL_RUN, ""), labels[LABEL_STAGE]


class Recorder:
    """Arrival times (time.monotonic) of Jobs, pod successes and run phases in one namespace."""

    def __init__(self, api: k8s.ApiClient, namespace: str, *, runs: bool) -> None:
        self.job_seen: dict[Key, float] = {}
        self.jobs_created: Counter[Key] = Counter()
        self.pod_done: dict[Key, float] = {}
        self.run_done: dict[str, tuple[str, float]] = {}
        self.succeeded_history: list[int] = []
        base = f"/api/v1/namespaces/{namespace}"
        self.watches = [
            Watch(api, f"/apis/batch/v1/namespaces/{namespace}/jobs", self._job, LABEL_STAGE),
            Watch(api, f"{base}/pods", self._pod, LABEL_STAGE),
        ]
        if runs:
            self.watches.append(Watch(
                api, f"/apis/kubedag.io/v1alpha1/namespaces/{namespace}/pipelineruns", self._run))

    def stop(self) -> list[str]:
        for watch in self.watches:
            watch.stop()
        return [e for w in self.watches for e in w.errors]

    def _job(self, kind: str, obj: dict[str, Any], at: float) -> None:
        key = _key(obj)
        if key is not None and kind == "ADDED":
            self.jobs_created[key] += 1
            self.job_seen.setdefault(key, at)

    def _pod(self, kind: str, obj: dict[str, Any], at: float) -> None:
        key = _key(obj)
        if key is not None and (obj.get("status") or {}).get("phase") == "Succeeded":
            self.pod_done.setdefault(key, at)

    def _run(self, kind: str, obj: dict[str, Any], at: float) -> None:
        phase = (obj.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Cancelled"):
            self.run_done.setdefault(obj["metadata"]["name"], (phase, at))

    def latencies(self, dags: dict[str, Dag]) -> list[float]:
        """Seconds from a stage's last dependency's pod Succeeded to the stage's Job appearing."""
        return [latency for _, latency in self.timed_latencies(dags)]

    def timed_latencies(self, dags: dict[str, Dag]) -> list[tuple[float, float]]:
        """(when the Job appeared, latency) of each stage with dependencies."""
        out = []
        for run, dag in dags.items():
            for stage, deps in dag.items():
                job = self.job_seen.get((run, stage))
                done = [self.pod_done.get((run, d)) for d in deps]
                if deps and job is not None and all(t is not None for t in done):
                    out.append((job, job - max(t for t in done if t is not None)))
        return out


    def job_to_pod(self) -> list[float]:
        """Seconds from a Job appearing to its pod Succeeded (Job controller, scheduler, kwok)."""
        return [self.pod_done[k] - t for k, t in self.job_seen.items() if k in self.pod_done]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


class ProcessSampler:
    """Samples a process's RSS every 50 ms; reports CPU seconds and peak RSS per window."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.lifetime_peak = 0
        self._stop = threading.Event()
        self._cpu0 = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.lifetime_peak = max(self.lifetime_peak, rss)

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def begin(self) -> None:
        self.peak = self.process.memory_info().rss
        self._cpu0 = self.cpu()

    def end(self) -> dict[str, float]:
        return {"cpu_seconds": round(self.cpu() - self._cpu0, 2),
                "peak_rss_mib": round(self.peak / 2**20, 1),
                "rss_now_mib": round(self.process.memory_info().rss / 2**20, 1)}

    def stop(self) -> None:
        self._stop.set()


class CpuLedger:
    """CPU seconds of each test-bed process, of the bench itself (the floor's script runs in
    it) and of the whole machine over one measured window: where the cores went, so that a
    scenario slower than its floor shows which process took the difference."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes: dict[str, psutil.Process] = {}
        for name, pid in {**pids, "bench": os.getpid()}.items():
            try:
                self._processes[name] = psutil.Process(pid)
            except psutil.Error:
                continue
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        seconds: dict[str, float] = {}
        for name, process in self._processes.items():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            seconds[name] = times.user + times.system
        machine = psutil.cpu_times()
        seconds["machine busy"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        seconds["machine idle"] = machine.idle
        return seconds

    def begin(self) -> None:
        self._start = self._now()

    def end(self) -> dict[str, float]:
        return {name: round(value - self._start[name], 2)
                for name, value in self._now().items() if name in self._start}


class Daemon:
    """A long-running process (an operator, a controller) writing to a log, in its own session;
    ready once ``ready_line`` appears in the log. Fails, naming the log, if it exits first or
    stays silent for ``timeout`` seconds."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, ready_line: str,
                 timeout: float = 60) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while ready_line not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{Path(args[0]).name} did not start; log: {log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Profiler:
    """py-spy attached to the operator for one scenario (collapsed stacks, one line a stack).

    Only samples of the thread holding the GIL: the operator's API calls run on a thread
    pool, and a thread waiting for the GIL would otherwise be charged to the line it waits at.
    """

    def __init__(self, py_spy: Path, pid: int, output: Path) -> None:
        self.output = output
        self.process = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
             "--nonblocking", "--gil", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self) -> None:
        self.process.send_signal(2)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
