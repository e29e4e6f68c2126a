"""What the chaos tests share: a run that takes a while, an observer of its Jobs and of its
Succeeded stages, and the checks that nothing was lost or done twice."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.runs import get_run, jobs_by_stage, stage, wait_phase
from tests.integration.support import Cluster


def layered(rows: int, width: int, durations: list[str]) -> list[dict[str, Any]]:
    """rows x width stages, each depending on every stage of the row before."""
    stages, previous = [], []
    for r in range(rows):
        row = [f"r{r}-{c}" for c in range(width)]
        for c, name in enumerate(row):
            stages.append(stage(name, *previous, duration=durations[r * width + c]))
        previous = row
    return stages


class Observer(threading.Thread):
    """Polls the run and its Jobs; records every shrink of the Succeeded set and every stage
    that ever had two Jobs (two names or one name with two UIDs)."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.stop = threading.Event()
        self.succeeded: set[str] = set()
        self.lost: list[str] = []
        self.jobs: dict[str, set[tuple[str, str]]] = {}
        self.observations = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stop.wait(0.25):
            try:
                self.observe()
            except Exception:  # the API server may be restarting
                self.errors += 1

    def observe(self) -> None:
        run = get_run(self.cluster, self.namespace, self.name)
        stages = (run.get("status") or {}).get("stages") or {}
        now = {n for n, s in stages.items() if s.get("phase") == "Succeeded"}
        if self.succeeded - now:
            self.lost.append(f"lost {sorted(self.succeeded - now)} at observation "
                             f"{self.observations}")
        self.succeeded = now
        for name, jobs in jobs_by_stage(self.cluster, self.namespace).items():
            for job in jobs:
                self.jobs.setdefault(name, set()).add((job.metadata.name, job.metadata.uid))
        self.observations += 1

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        self.observe()


def assert_once_each(observer: Observer, cluster: Cluster, namespace: str,
                      stage_names: list[str]) -> None:
    assert not observer.lost, observer.lost
    twice = {s: sorted(j) for s, j in observer.jobs.items() if len(j) != 1}
    assert not twice, f"stages whose Job was created more than once: {twice}"
    jobs = jobs_by_stage(cluster, namespace)
    assert sorted(jobs) == sorted(stage_names)
    attempts = {s: [j.metadata.labels["kubedag.io/attempt"] for j in js] for s, js in jobs.items()}
    assert all(a == ["1"] for a in attempts.values()), attempts


def wait_phase_through_errors(cluster: Cluster, namespace: str, name: str,
                               timeout: float) -> dict[str, Any]:
    """wait_phase, tolerating connection errors while clients reconnect."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            left = max(1.0, deadline - time.monotonic())
            return wait_phase(cluster, namespace, name, timeout=left)
        except AssertionError:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
