"""Chaos: the operator SIGKILLed again and again during a run; the API server, and etcd,
restarted.

A run must still complete; a finished stage is never lost (the set of Succeeded stages in the
run's status never shrinks) and no stage's Job is ever created twice (each stage has one Job,
with one UID, for attempt 1, through every restart).
"""

from __future__ import annotations

import random
import time

import pytest

from tests.integration.chaos import (
    Observer,
    assert_once_each,
    layered,
    wait_phase_through_errors,
)
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import create_run, get_run, pipeline, wait_phase
from tests.integration.support import Cluster

KILLS = 20
SEED = 20261124


def test_operator_killed_at_random_moments_loses_nothing(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    rng = random.Random(SEED)
    durations = [f"{rng.choice((1, 2, 3, 4))}s" for _ in range(50)]
    stages = layered(10, 5, durations)
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
    assert_once_each(observer, cluster, namespace, names)


def _restart_mid_run(cluster: Cluster, namespace: str, operator: OperatorProcess,
                     component: str, timeout: float, **restart: float) -> None:
    """A run of 18 two-second stages; once 6 have succeeded, ``component`` of the control plane
    is restarted. The run must succeed with every stage run exactly once, and the operator
    must still be up."""
    assert component in cluster.plane.commands, f"needs the local test bed's {component}"
    stages = layered(6, 3, ["2s"] * 18)
    names = [s["name"] for s in stages]
    create_run(cluster, namespace, component, {"pipelineSpec": pipeline(cluster, stages)})
    observer = Observer(cluster, namespace, component)
    observer.start()
    try:
        deadline = time.monotonic() + 60
        while len(observer.succeeded) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(observer.succeeded) >= 6, "the run did not get going"
        assert len(observer.succeeded) < len(names)
        down = cluster.plane.restart_component(component, **restart)
        print(f"{component} back after {down:.1f} s")
        run = wait_phase_through_errors(cluster, namespace, component, timeout=timeout)
    finally:
        observer.finish()
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert operator.process is not None and operator.process.poll() is None
    print(f"{observer.errors} of the observer's requests failed meanwhile")
    assert observer.succeeded == set(names)
    assert_once_each(observer, cluster, namespace, names)


@pytest.mark.owns_control_plane
def test_run_completes_across_an_api_server_restart(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    _restart_mid_run(cluster, namespace, running_operator, "kube-apiserver", timeout=120)


@pytest.mark.owns_control_plane
def test_run_completes_across_an_etcd_restart(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """etcd SIGKILLed mid-run and started again on the same data directory after 5 s down:
    the API server fails every request meanwhile, its watches break, and the operator must
    pick up where it was (the run's status, its Jobs) without running a stage again."""
    _restart_mid_run(cluster, namespace, running_operator, "etcd", timeout=180,
                     down_seconds=5)
