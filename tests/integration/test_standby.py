"""Two operator replicas under kopf peering: the leader SIGKILLed mid-run, again and again, and
the standby takes over - the run Succeeds, no stage's Job is created twice, and the takeover
time (kill -> the new leader's first Job) is measured and printed. A standby that takes over
works from the cluster as it is then, not as it was when the standby started.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes import watch

from kubedag.contract import API_GROUP, API_VERSION
from kubedag.shell.standby import ACTIVATION_MESSAGE, DEMOTED_EXIT_CODE
from tests.integration.chaos import Observer, assert_once_each
from tests.integration.chart_support import CHART
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import create_run, get_run, pipeline, stage, stages_of, wait_phase
from tests.integration.support import Cluster, wait_for
from tests.integration.test_cache import cached_pipeline, entries, run_to_end

PEERING = "kubedag-standby-test"
LIFETIME_SECONDS = 10
KILLS = 5
CHAIN = 50
# New Jobs the new leader creates before it is killed in turn: kills spread over the run.
JOBS_BETWEEN_KILLS = 3


@pytest.fixture
def peering(cluster: Cluster, crds: None) -> Iterator[str]:
    """kopf's peering CRDs and a fresh ClusterKopfPeering (what the chart creates); no other
    operator running (the session's standalone one would fight the peers)."""
    OperatorProcess.stop_all()
    cluster.kubectl("apply", "--server-side", "-f", str(CHART / "crds" / "kopf-peering.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                    "crd/clusterkopfpeerings.kopf.dev")
    cluster.kubectl("delete", "clusterkopfpeering", PEERING, "--ignore-not-found")
    cluster.kubectl("create", "-f", "-", input=(
        f"apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata:\n  name: {PEERING}\n"))
    try:
        yield PEERING
    finally:
        OperatorProcess.stop_all()
        cluster.kubectl("delete", "clusterkopfpeering", PEERING, "--ignore-not-found")


class Replicas:
    """Two operator processes under one peering name, as the chart's replicaCount=2 runs them."""

    def __init__(self, cluster: Cluster, peering: str) -> None:
        env = {"KUBEDAG_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS)}
        self.processes = [OperatorProcess(cluster, env, args=("--peering", peering),
                                          name=f"kubedag-peer-{i}") for i in range(2)]

    def leaders(self) -> list[OperatorProcess]:
        """The live replicas that have activated (kopf delivered them events) since their start."""
        return [p for p in self.processes
                if p.process is not None and p.process.poll() is None
                and p.logged(ACTIVATION_MESSAGE)]

    def wait_leader(self, timeout: float = 60) -> OperatorProcess:
        (leader,) = wait_for(lambda: self.leaders() or None, timeout=timeout,
                             what="a replica to lead")
        return leader

    def other(self, process: OperatorProcess) -> OperatorProcess:
        return next(p for p in self.processes if p is not process)


def activated_at(process: OperatorProcess) -> float:
    """Epoch seconds of the replica's activation, from its log line's timestamp."""
    line = next(line for line in process.log_since_start().splitlines()
                if ACTIVATION_MESSAGE in line)
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


class JobClock(threading.Thread):
    """When each Job of the namespace was first seen (a watch: milliseconds after creation)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.seen: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                for event in watch.Watch().stream(self.cluster.batch.list_namespaced_job,
                                                  self.namespace, timeout_seconds=5):
                    self.seen.setdefault(event["object"].metadata.name, time.time())
            except Exception:  # a broken watch: list and watch again
                time.sleep(0.1)

    def first_after(self, moment: float) -> float | None:
        later = [t for t in self.seen.values() if t > moment]
        return min(later) if later else None


def test_the_standby_takes_over_when_the_leader_is_killed_mid_run(
    cluster: Cluster, namespace: str, peering: str
) -> None:
    replicas = Replicas(cluster, peering)
    first, second = replicas.processes
    first.start()
    assert replicas.wait_leader() is first
    second.start()
    time.sleep(2)
    assert replicas.leaders() == [first], "the younger replica must stand by"

    stages = [stage(f"s{i:02d}", *([f"s{i - 1:02d}"] if i else []), duration="1s")
              for i in range(CHAIN)]
    names = [s["name"] for s in stages]
    clock = JobClock(cluster, namespace)
    clock.start()
    create_run(cluster, namespace, "chain", {"pipelineSpec": pipeline(cluster, stages)})
    observer = Observer(cluster, namespace, "chain")
    observer.start()
    takeovers: list[tuple[float, float]] = []  # (kill -> activation, kill -> first Job), s
    leader = first
    try:
        for _ in range(KILLS):
            wanted = len(clock.seen) + JOBS_BETWEEN_KILLS
            wait_for(lambda wanted=wanted: len(clock.seen) >= wanted,  # type: ignore[misc]
                     timeout=60, what=f"{JOBS_BETWEEN_KILLS} Jobs by the leader")
            time.sleep(0.3)  # between two Jobs of the chain: the next comes ~1 s later
            phase = (get_run(cluster, namespace, "chain").get("status") or {}).get("phase")
            assert phase == "Running", f"the run is {phase} before kill {len(takeovers) + 1}"
            killed, killed_at = leader, time.time()
            killed.kill()
            killed.start()  # back at once, as a Deployment would: the standby now
            leader = replicas.wait_leader(timeout=LIFETIME_SECONDS * 3)
            assert leader is not killed, "the restarted replica took the lead back"
            first_job = wait_for(lambda moment=killed_at: clock.first_after(moment),  # type: ignore[misc]
                                 timeout=30, what="the new leader's first Job")
            takeovers.append((activated_at(leader) - killed_at, first_job - killed_at))
            print(f"kill {len(takeovers)}: the standby led after "
                  f"{takeovers[-1][0]:.1f} s, created its first Job after {takeovers[-1][1]:.1f} s")
        run = wait_phase(cluster, namespace, "chain", timeout=240)
    finally:
        observer.finish()
        clock.stopped.set()
    first_jobs = [job for _, job in takeovers]
    print(f"takeover (kill -> first Job of the new leader), lifetime {LIFETIME_SECONDS} s, "
          f"{KILLS} kills: median {statistics.median(first_jobs):.1f} s, "
          f"max {max(first_jobs):.1f} s; kill -> leading: median "
          f"{statistics.median(a for a, _ in takeovers):.1f} s")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert len(takeovers) == KILLS
    # The dead leader's record counts for LIFETIME_SECONDS: no takeover before, none much after.
    assert all(0 < job < LIFETIME_SECONDS + 20 for job in first_jobs), takeovers
    assert observer.succeeded == set(names)
    assert_once_each(observer, cluster, namespace, names)
    attempts = {n: s.get("attempts") for n, s in stages_of(run).items()}
    assert set(attempts.values()) == {1}, attempts


def _breaker(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cluster.custom.get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "circuitbreakers", name)
    return found


def test_a_standby_that_takes_over_sees_what_changed_while_it_stood_by(
    cluster: Cluster, namespace: str, peering: str
) -> None:
    """A cache entry deleted and a breaker forced closed while the standby stood by: after the
    takeover, the stage runs (no stale cache hit) and is not held (no stale Open breaker)."""
    replicas = Replicas(cluster, peering)
    first, second = replicas.processes
    first.start()
    assert replicas.wait_leader() is first
    run_to_end(cluster, namespace, "before", cached_pipeline(cluster))
    wait_for(lambda: entries(cluster, namespace) or None, what="the cache entry")
    body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "CircuitBreaker",
            "metadata": {"name": "manual"}, "spec": {"key": "manual", "forceState": "Open"}}
    cluster.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                   "circuitbreakers", body)
    wait_for(lambda: (_breaker(cluster, namespace, "manual").get("status") or {}).get(
        "state") == "Open", timeout=20, what="the forced breaker open")

    second.start()  # the standby: what it would load now goes stale below
    time.sleep(2)
    assert replicas.leaders() == [first]
    cluster.kubectl("delete", "stagecacheentries", "--all", "-n", namespace)
    cluster.custom.patch_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                  "circuitbreakers", "manual",
                                                  {"spec": {"forceState": "Closed"}})
    first.kill()
    assert replicas.wait_leader(timeout=LIFETIME_SECONDS * 3) is second

    after = run_to_end(cluster, namespace, "after", cached_pipeline(cluster))
    extract = stages_of(after)["extract"]
    assert extract.get("reason") != "Cached" and not extract["cache"].get("hit"), extract
    create_run(cluster, namespace, "guarded", {"pipelineSpec": pipeline(
        cluster, [stage("a", breaker={"key": "manual"})])})
    run = wait_phase(cluster, namespace, "guarded", timeout=30)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert stages_of(run)["a"].get("reason") != "CircuitOpen"


def test_a_replica_that_led_and_is_paused_exits(cluster: Cluster, peering: str) -> None:
    """The leader frozen (SIGSTOP) past its record's lifetime: the standby takes over. The
    leader comes back (SIGCONT), older, so kopf pauses the replica that took over - which has
    acted, and would keep what it holds while paused: it exits, to restart as a standby."""
    replicas = Replicas(cluster, peering)
    first, second = replicas.processes
    first.start()
    assert replicas.wait_leader() is first
    second.start()
    assert first.process is not None and second.process is not None
    os.killpg(first.process.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: second.logged(ACTIVATION_MESSAGE), timeout=LIFETIME_SECONDS * 3,
                 what="the standby to take over from the frozen leader")
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
    code = wait_for(lambda: second.process.poll() if second.process else None,
                    timeout=LIFETIME_SECONDS * 3, what="the replica that took over to exit")
    assert code == DEMOTED_EXIT_CODE
    assert second.logged("exiting, to restart as a standby")
    assert first.process.poll() is None
