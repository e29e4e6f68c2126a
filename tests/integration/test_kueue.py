"""kubedag with real Kueue: PipelineRuns with a queueName, on kwok GPU nodes (2 x 4 GPUs).

Each test gets two LocalQueues in its namespace, on ClusterQueues `small` (4 GPUs) and `big`
(8 GPUs) in one cohort of its own. Stage Jobs are created suspended with the queue label; the
operator reads Kueue's Workloads for why a stage waits. The session's operator may have started
before Kueue's CRDs existed (the fixtures start it first on purpose): it starts watching Workloads
when they appear, and the fixtures wait until it says so, since the tests read Kueue's own
message in stages' checkpoints.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubedag.testbed.kueue import GPU, GROUP, KueueHandle, Queues, create_queues, delete_queues
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import create_run, get_run, patch_run, pipeline, stage, wait_phase
from tests.integration.support import Cluster, wait_for

API_VERSION = "v1beta2"


@dataclass(frozen=True)
class Cohort:
    small: Queues  # 4 GPUs nominal
    big: Queues  # 8 GPUs nominal


def _cohort(cluster: Cluster, operator: OperatorProcess, namespace: str, *,
            small_borrows: bool) -> Iterator[Cohort]:
    # Kueue's messages reach a checkpoint only once the operator watches Workloads.
    wait_for(lambda: operator.logged("Kueue: watching Workloads"), timeout=90,
             what="the operator to watch Kueue's Workloads")
    small = create_queues(cluster.api_client, namespace, f"{namespace}-small", gpus=4,
                          cohort=namespace, gpu_borrowing_limit=None if small_borrows else 0)
    big = create_queues(cluster.api_client, namespace, f"{namespace}-big", gpus=8,
                        cohort=namespace)
    try:
        yield Cohort(small, big)
    finally:
        for queues in (small, big):
            delete_queues(cluster.api_client, queues)


@pytest.fixture
def cohort(cluster: Cluster, running_operator: OperatorProcess, kueue: KueueHandle,
           namespace: str) -> Iterator[Cohort]:
    """LocalQueues `small` and `big` (ClusterQueues named after the namespace) in a cohort of
    their own: `small` may borrow big's idle GPUs."""
    yield from _cohort(cluster, running_operator, namespace, small_borrows=True)


@pytest.fixture
def strict_cohort(cluster: Cluster, running_operator: OperatorProcess, kueue: KueueHandle,
                  namespace: str) -> Iterator[Cohort]:
    """The same, but `small` may not borrow (borrowingLimit 0): 4 GPUs is all it gets."""
    yield from _cohort(cluster, running_operator, namespace, small_borrows=False)


def gpu_stage(name: str, gpus: int, duration: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return stage(name, *deps, duration=duration, resources={"gpu": gpus}, **fields)


def queued_run(cluster: Cluster, namespace: str, name: str, queue: Queues,
               stages: list[dict[str, Any]], **spec: Any) -> None:
    create_run(cluster, namespace, name, {"queueName": queue.local_queue,
                                          "pipelineSpec": pipeline(cluster, stages), **spec})


def checkpoint(cluster: Cluster, namespace: str, run: str, stage_name: str) -> dict[str, Any]:
    stages: dict[str, dict[str, Any]] = (get_run(cluster, namespace, run).get("status")
                                         or {}).get("stages") or {}
    return stages.get(stage_name) or {}


def wait_stage(cluster: Cluster, namespace: str, run: str, stage_name: str, phase: str,
               reason: str | None = None, *, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        cp = checkpoint(cluster, namespace, run, stage_name)
        matches = cp.get("phase") == phase and (reason is None or cp.get("reason") == reason)
        return cp if matches else None

    return wait_for(probe, timeout=timeout,
                    what=f"stage {run}/{stage_name} to be {phase} {reason or ''}")


def stage_pods(cluster: Cluster, namespace: str, run: str, stage_name: str) -> list[Any]:
    pods: list[Any] = cluster.core.list_namespaced_pod(
        namespace, label_selector=f"kubedag.io/run={run},kubedag.io/stage={stage_name}").items
    return pods


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def kueue_says(message: str | None) -> bool:
    """Kueue's own words about GPU quota (not kubedag's "waiting for Kueue ..." placeholder)."""
    return bool(message) and f"for {GPU} in flavor" in str(message)


def test_a_gpu_stage_waits_queued_with_kueues_reason_never_runs_early_then_finishes(
        cluster: Cluster, namespace: str, strict_cohort: Cohort,
        running_operator: OperatorProcess) -> None:
    queue = strict_cohort.small
    # hold lasts long enough for train to be queued behind it even on a loaded machine
    # (prep's admission, pod and run, then train's Job and Kueue's verdict: 8 s was not).
    queued_run(cluster, namespace, "holder", queue, [gpu_stage("hold", 4, "20s")])
    wait_stage(cluster, namespace, "holder", "hold", "Running")
    queued_run(cluster, namespace, "trainer", queue, [
        stage("prep", duration="1s"),
        gpu_stage("train", 4, "2s", "prep", timeoutSeconds=5),
        stage("report", "train"),
    ])

    # prep asks for no GPU and is admitted at once; train waits for holder's 4 GPUs.
    def train_queued() -> dict[str, Any] | None:
        cp = checkpoint(cluster, namespace, "trainer", "train")
        hold = checkpoint(cluster, namespace, "holder", "hold")
        assert hold.get("phase") == "Running" or cp.get("reason") == "Queued", (
            f"holder's stage ended before train was seen queued: hold={hold}, train={cp}")
        return cp if cp.get("reason") == "Queued" and kueue_says(cp.get("message")) else None

    queued = wait_for(train_queued, timeout=60, what="train to be Queued with Kueue's reason")
    assert queued["phase"] == "Pending" and queued["attempts"] == 1
    assert "insufficient unused quota" in queued["message"], queued
    assert queued.get("startTime") is None and queued["queuedTime"]
    job = cluster.batch.read_namespaced_job(queued["job"], namespace)
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == queue.local_queue
    run = get_run(cluster, namespace, "trainer")
    assert run["status"]["phase"] == "Running"
    succeeded = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
    assert "1 stage(s) queued for Kueue's admission" in succeeded["message"]

    # Never early: while holder's pod holds the quota, train has no pod at all.
    while checkpoint(cluster, namespace, "holder", "hold").get("phase") == "Running":
        assert stage_pods(cluster, namespace, "trainer", "train") == []
        time.sleep(0.3)

    trainer = wait_phase(cluster, namespace, "trainer", timeout=90)
    assert trainer["status"]["phase"] == "Succeeded", trainer["status"]
    hold = checkpoint(cluster, namespace, "holder", "hold")
    train = trainer["status"]["stages"]["train"]
    # Admitted only once holder's stage had finished; its wait is queue time, apart from its
    # run time. Wait and run together exceed its 5 s timeout: it counted from admission.
    assert ts(train["startTime"]) >= ts(hold["finishTime"])
    assert train["queueSeconds"] >= 4, train
    assert (ts(train["finishTime"]) - ts(train["startTime"])).total_seconds() < 5
    assert "queuedTime" not in train and "reason" not in train
    (pod,) = stage_pods(cluster, namespace, "trainer", "train")
    assert pod.spec.node_name.startswith("kwok-gpu")
    assert pod.metadata.creation_timestamp >= ts(hold["finishTime"])

    # The wait reaches the operator's metrics.
    with urllib.request.urlopen(
            f"http://127.0.0.1:{running_operator.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    count = next(line for line in text.splitlines()
                 if line.startswith("kubedag_stage_queue_seconds_count")
                 and f'namespace="{namespace}"' in line and 'stage="train"' in line)
    assert float(count.split()[-1]) == 1


def test_admission_follows_kueue_priority_not_creation_order(
        cluster: Cluster, namespace: str, strict_cohort: Cohort) -> None:
    low, high = f"{namespace}-low", f"{namespace}-high"
    custom = cluster.custom
    for name, value in ((low, 10), (high, 1000)):
        custom.create_cluster_custom_object(GROUP, API_VERSION, "workloadpriorityclasses", {
            "apiVersion": f"{GROUP}/{API_VERSION}", "kind": "WorkloadPriorityClass",
            "metadata": {"name": name}, "value": value})
    try:
        queue = strict_cohort.small
        queued_run(cluster, namespace, "holder", queue, [gpu_stage("hold", 4, "6s")])
        wait_stage(cluster, namespace, "holder", "hold", "Running")
        queued_run(cluster, namespace, "low", queue, [gpu_stage("train", 4, "3s")],
                   priorityClassName=low)
        wait_stage(cluster, namespace, "low", "train", "Pending", "Queued")
        queued_run(cluster, namespace, "high", queue, [gpu_stage("train", 4, "3s")],
                   priorityClassName=high)
        cp = wait_stage(cluster, namespace, "high", "train", "Pending", "Queued")
        job = cluster.batch.read_namespaced_job(cp["job"], namespace)
        assert job.metadata.labels["kueue.x-k8s.io/priority-class"] == high

        low_run = wait_phase(cluster, namespace, "low", timeout=90)
        high_run = wait_phase(cluster, namespace, "high", timeout=90)
        low_train = low_run["status"]["stages"]["train"]
        high_train = high_run["status"]["stages"]["train"]
        assert low_run["status"]["phase"] == high_run["status"]["phase"] == "Succeeded"
        # The quota fits one at a time: high (created later) went first, low after it.
        assert ts(high_train["startTime"]) < ts(low_train["startTime"])
        assert ts(low_train["startTime"]) >= ts(high_train["finishTime"])
        assert low_train["queueSeconds"] > high_train["queueSeconds"]
    finally:
        for name in (low, high):
            try:
                custom.delete_cluster_custom_object(GROUP, API_VERSION,
                                                    "workloadpriorityclasses", name)
            except ApiException as error:
                if error.status != 404:
                    raise


def test_a_run_borrows_idle_gpus_within_its_cohort(
        cluster: Cluster, namespace: str, cohort: Cohort) -> None:
    # 8 GPUs at once on `small` (4 nominal): the other 4 are big's, idle, lent in the cohort.
    queued_run(cluster, namespace, "wide", cohort.small,
               [gpu_stage("left", 4, "4s"), gpu_stage("right", 4, "4s")])
    wide = wait_phase(cluster, namespace, "wide", timeout=60)
    assert wide["status"]["phase"] == "Succeeded", wide["status"]
    left, right = (wide["status"]["stages"][s] for s in ("left", "right"))
    # Both ran at once: neither waited for the other's quota.
    assert ts(left["startTime"]) < ts(right["finishTime"])
    assert ts(right["startTime"]) < ts(left["finishTime"])

    # Borrowed quota is the cohort's: while `small` borrows 4 of big's 8, a run on `big` that
    # needs all 8 waits (no preemption configured) and runs once they are given back.
    queued_run(cluster, namespace, "lender", cohort.small,
               [gpu_stage("a", 4, "6s"), gpu_stage("b", 4, "6s")])
    wait_stage(cluster, namespace, "lender", "a", "Running")
    wait_stage(cluster, namespace, "lender", "b", "Running")
    # 8 GPUs as two pods of 4 (a node has 4), one Workload.
    queued_run(cluster, namespace, "owner", cohort.big,
               [gpu_stage("all", 4, "1s", fanOut={"items": [1, 2]})])
    queued = wait_for(lambda: (cp := checkpoint(cluster, namespace, "owner", "all"))
                      and kueue_says(cp.get("message")) and cp,
                      timeout=30, what="big's 8-GPU stage to wait for its lent GPUs")
    assert queued["reason"] == "Queued"
    assert stage_pods(cluster, namespace, "owner", "all") == []
    owner = wait_phase(cluster, namespace, "owner", timeout=90)
    assert owner["status"]["phase"] == "Succeeded"
    lender = get_run(cluster, namespace, "lender")
    all_gpus = owner["status"]["stages"]["all"]
    assert ts(all_gpus["startTime"]) >= max(
        ts(s["finishTime"]) for s in lender["status"]["stages"].values())


def test_a_fan_out_is_admitted_whole_or_not_at_all(
        cluster: Cluster, namespace: str, strict_cohort: Cohort) -> None:
    # Three pods of 2 GPUs: 6 GPUs as one Workload, more than small's 4. Without gang admission
    # two pods would start and hold 4 GPUs waiting for the third.
    fan = gpu_stage("embed", 2, "1s", fanOut={"items": ["a", "b", "c"]})
    queued_run(cluster, namespace, "fan", strict_cohort.small, [fan])
    cp = wait_for(lambda: (c := checkpoint(cluster, namespace, "fan", "embed"))
                  and kueue_says(c.get("message")) and c,
                  timeout=30, what="the fan-out to be Queued with Kueue's reason")
    assert cp["phase"] == "Pending" and cp["reason"] == "Queued"
    assert "insufficient quota" in cp["message"], cp
    job = cluster.batch.read_namespaced_job(cp["job"], namespace)
    assert (job.spec.completion_mode, job.spec.parallelism, job.spec.suspend) == (
        "Indexed", 3, True)
    time.sleep(2)
    assert stage_pods(cluster, namespace, "fan", "embed") == []

    # Cancelling the run deletes the waiting Job.
    patch_run(cluster, namespace, "fan", {"cancel": True})
    run = wait_phase(cluster, namespace, "fan", timeout=30)
    assert run["status"]["phase"] == "Cancelled"
    assert run["status"]["stages"]["embed"]["phase"] == "Cancelled"
    wait_for(lambda: not cluster.batch.list_namespaced_job(
        namespace, label_selector="kubedag.io/run=fan").items, timeout=30,
        what="the queued Job to be deleted")


def test_runs_without_a_queue_are_not_suspended(cluster: Cluster, namespace: str,
                                                kueue: KueueHandle,
                                                running_operator: OperatorProcess) -> None:
    """Kueue installed changes nothing for a run that names no queue."""
    name = f"plain-{uuid.uuid4().hex[:6]}"
    create_run(cluster, namespace, name, {"pipelineSpec": pipeline(
        cluster, [gpu_stage("train", 1, "1s")])})
    run = wait_phase(cluster, namespace, name, timeout=60)
    assert run["status"]["phase"] == "Succeeded"
    train = run["status"]["stages"]["train"]
    assert "queueSeconds" not in train
    (job,) = cluster.batch.list_namespaced_job(
        namespace, label_selector=f"kubedag.io/run={name}").items
    assert not job.spec.suspend
    assert "kueue.x-k8s.io/queue-name" not in job.metadata.labels
