"""Chaos: the operator SIGKILLed again and again during a run, and the API server restarted.

A run must still complete; a finished stage is never lost (the set of Succeeded stages in the
run's status never shrinks) and no stage's Job is ever created twice (each stage has one Job,
with one UID, for attempt 1, through every restart).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import create_run, get_run, jobs_by_stage, pipeline, stage, wait_phase
from tests.integration.support import Cluster

KILLS = 20
SEED = 20261124


def _layered(rows: int, width: int, durations: list[str]) -> list[dict[str, Any]]:
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


def _assert_once_each(observer: Observer, cluster: Cluster, namespace: str,
                      stage_names: list[str]) -> None:
    assert not observer.lost, observer.lost
    twice = {s: sorted(j) for s, j in observer.jobs.items() if len(j) != 1}
    assert not twice, f"stages whose Job was created more than once: {twice}"
    jobs = jobs_by_stage(cluster, namespace)
    assert sorted(jobs) == sorted(stage_names)
    attempts = {s: [j.metadata.labels["kubedag.io/attempt"] for j in js] for s, js in jobs.items()}
    assert all(a == ["1"] for a in attempts.values()), attempts


def test_operator_killed_at_random_moments_loses_nothing(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    rng = random.Random(SEED)
    durations = [f"{rng.choice((1, 2, 3, 4))}s" for _ in range(50)]
    stages = _layered(10, 5, durations)
    names = [s["name"] for s in stages]
    create_run(cluster, namespace, "chaos", {"pipelineSpec": pipeline(cluster, stages)})
    observer = Observer(cluster, namespace, "chaos")
    observer.start()
    kills_during_run = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.0, 1.5))
            phase = (get_run(cluster, namespace, "chaos").get("status") or {}).get("phase")
            kills_during_run += phase not in ("Succeeded", "Failed")
            running_operator.kill()
            running_operator.start()
        run = wait_phase(cluster, namespace, "chaos", timeout=120)
    finally:
        observer.finish()
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert kills_during_run == KILLS, f"the run ended after {kills_during_run} kills"
    assert observer.succeeded == set(names)
    assert observer.observations > 50
    _assert_once_each(observer, cluster, namespace, names)


@pytest.mark.owns_control_plane
def test_run_completes_across_an_api_server_restart(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    assert "kube-apiserver" in cluster.plane.commands, "needs the local test bed's API server"
    stages = _layered(6, 3, ["2s"] * 18)
    names = [s["name"] for s in stages]
    create_run(cluster, namespace, "apiserver", {"pipelineSpec": pipeline(cluster, stages)})
    observer = Observer(cluster, namespace, "apiserver")
    observer.start()
    try:
        deadline = time.monotonic() + 60
        while len(observer.succeeded) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(observer.succeeded) >= 6, "the run did not get going"
        assert len(observer.succeeded) < len(names)
        down = cluster.plane.restart_component("kube-apiserver")
        print(f"kube-apiserver back after {down:.1f} s")
        run = _wait_phase_through_errors(cluster, namespace, "apiserver", timeout=120)
    finally:
        observer.finish()
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert running_operator.process is not None and running_operator.process.poll() is None
    assert observer.succeeded == set(names)
    _assert_once_each(observer, cluster, namespace, names)


def _wait_phase_through_errors(cluster: Cluster, namespace: str, name: str,
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
