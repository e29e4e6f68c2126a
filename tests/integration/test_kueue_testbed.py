"""Real Kueue in the test bed, shown with plain batch/v1 Jobs (no kubedag operator involved).

A Job within its ClusterQueue's GPU quota gets a Workload that Kueue admits; Kueue unsuspends
the Job and kwok runs it to completion. A Job asking more GPUs than the queue can ever give stays
suspended with Kueue's own reason. A Job created running with the queue label comes back
suspended: the API server called Kueue's mutating webhook on 127.0.0.1, which is the wiring the
kubedag operator relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from kubedag.testbed.kueue import (
    GPU,
    GROUP,
    MUTATING_WEBHOOKS,
    QUEUE_NAME_LABEL,
    VALIDATING_WEBHOOKS,
    KueueHandle,
    Queues,
    condition,
    create_queues,
    delete_queues,
    job_workload,
)
from tests.integration.support import Cluster, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kueue" / "queues.yaml"


@pytest.fixture
def queues(cluster: Cluster, kueue: KueueHandle, namespace: str) -> Iterator[Queues]:
    """A ClusterQueue with 4 GPUs of quota and a LocalQueue in the test's namespace."""
    made = create_queues(cluster.api_client, namespace, namespace, gpus=4)
    try:
        yield made
    finally:
        delete_queues(cluster.api_client, made)


def _job(cluster: Cluster, name: str, *, gpus: int, queue: str | None,
         suspend: bool, pods: int = 1) -> dict[str, Any]:
    labels = {QUEUE_NAME_LABEL: queue} if queue else {}
    resources = {"cpu": "100m", "memory": "64Mi", GPU: str(gpus)}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "suspend": suspend,
            "parallelism": pods,
            "completions": pods,
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox",
                                "resources": {"requests": resources, "limits": resources}}],
                **cluster.pod_placement(),
            }},
        },
    }


def _read_job(cluster: Cluster, namespace: str, name: str) -> k8s.V1Job:
    job: k8s.V1Job = cluster.batch.read_namespaced_job(name, namespace)
    return job


def _job_complete(cluster: Cluster, namespace: str, name: str) -> bool:
    conditions = _read_job(cluster, namespace, name).status.conditions or []
    return any(c.type == "Complete" and c.status == "True" for c in conditions)


def _pods_of(cluster: Cluster, namespace: str, job: str) -> list[k8s.V1Pod]:
    pods: list[k8s.V1Pod] = cluster.core.list_namespaced_pod(
        namespace, label_selector=f"job-name={job}").items
    return pods


def test_a_job_within_quota_is_admitted_and_completes_one_beyond_it_waits(
        cluster: Cluster, namespace: str, queues: Queues) -> None:
    fits, too_big = "fits-2-gpus", "wants-8-gpus"
    for name, gpus in ((fits, 2), (too_big, 8)):
        cluster.batch.create_namespaced_job(
            namespace, _job(cluster, name, gpus=gpus, queue=queues.local_queue, suspend=True))

    # Within quota: a Workload Kueue admitted to our ClusterQueue, and the Job run to the end.
    admitted = wait_for(lambda: (w := job_workload(cluster.api_client, namespace, fits)) and
                        (condition(w, "Admitted") or {}).get("status") == "True" and w,
                        timeout=30, what="the 2-GPU Job's Workload to be admitted")
    assert admitted["status"]["admission"]["clusterQueue"] == queues.cluster_queue
    assert admitted["spec"]["queueName"] == queues.local_queue
    wait_for(lambda: _job_complete(cluster, namespace, fits), timeout=30,
             what="the admitted Job to complete")
    assert _read_job(cluster, namespace, fits).spec.suspend is False
    (pod,) = _pods_of(cluster, namespace, fits)
    assert pod.spec.node_name.startswith("kwok-gpu")  # scheduled where the GPUs are

    # Beyond quota: Kueue's reason on the Workload; the Job never unsuspended, no pod ever made.
    held = wait_for(lambda: (w := job_workload(cluster.api_client, namespace, too_big)) and
                    (condition(w, "QuotaReserved") or {}).get("message") and w,
                    timeout=30, what="Kueue's verdict on the 8-GPU Job's Workload")
    quota_reserved = condition(held, "QuotaReserved") or {}
    assert quota_reserved["status"] == "False"
    assert f"insufficient quota for {GPU}" in quota_reserved["message"], quota_reserved
    assert (condition(held, "Admitted") or {}).get("status") != "True"
    assert _read_job(cluster, namespace, too_big).spec.suspend is True
    assert _pods_of(cluster, namespace, too_big) == []

    # The ClusterQueue reads back through the older API version too: the API server converts it
    # through Kueue's conversion webhook (registered by URL, like the admission webhooks).
    old = cluster.custom.get_cluster_custom_object(
        GROUP, "v1beta1", "clusterqueues", queues.cluster_queue)
    assert old["apiVersion"] == f"{GROUP}/v1beta1"
    assert old["spec"]["resourceGroups"][0]["flavors"][0]["name"] == queues.flavor


def test_kueues_webhook_suspends_a_queued_job_created_running(
        cluster: Cluster, kueue: KueueHandle, namespace: str) -> None:
    # No LocalQueue of that name exists: nothing will admit it, so it must stay suspended.
    queued = cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "queued", gpus=1, queue="no-such-queue", suspend=False))
    assert queued.spec.suspend is True  # set by Kueue's mutating webhook at creation
    # A Job without the queue label is not Kueue's (manageJobsWithoutQueueName: false).
    plain = cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "plain", gpus=1, queue=None, suspend=False))
    assert plain.spec.suspend is False
    wait_for(lambda: _job_complete(cluster, namespace, "plain"), timeout=30,
             what="the Job without a queue to run as usual")
    workload = wait_for(lambda: job_workload(cluster.api_client, namespace, "queued"),
                        timeout=30, what="a Workload for the queued Job")
    assert workload["spec"]["queueName"] == "no-such-queue"
    assert _read_job(cluster, namespace, "queued").spec.suspend is True
    assert _pods_of(cluster, namespace, "queued") == []

    # Only the webhooks of what this Kueue manages are registered: Pods, Deployments and the
    # other frameworks' kinds never pass through it.
    registered = k8s.AdmissionregistrationV1Api(cluster.api_client)
    mutating = registered.read_mutating_webhook_configuration(MUTATING_WEBHOOKS).webhooks
    validating = registered.read_validating_webhook_configuration(VALIDATING_WEBHOOKS).webhooks
    targets = {(group, resource) for hook in [*mutating, *validating] for rule in hook.rules
               for group in rule.api_groups for resource in rule.resources}
    assert ("batch", "jobs") in targets
    assert {group for group, _ in targets} == {"batch", GROUP}, targets
    assert all(hook.client_config.url.startswith(kueue.webhook_url) and
               hook.failure_policy == "Fail" for hook in [*mutating, *validating])


def test_the_example_queues_lend_gpus_within_their_cohort(
        cluster: Cluster, kueue: KueueHandle) -> None:
    """examples/kueue/queues.yaml as users apply it: team-a's 4 GPUs plus 2 lent by team-b."""
    objects = [doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc]
    cluster.kubectl("apply", "--server-side", "-f", str(EXAMPLE))
    try:
        job = _job(cluster, "six-gpus", gpus=3, pods=2, queue="gpu", suspend=True)
        cluster.batch.create_namespaced_job("team-a", job)
        admitted = wait_for(
            lambda: (w := job_workload(cluster.api_client, "team-a", "six-gpus")) and
            (condition(w, "Admitted") or {}).get("status") == "True" and w,
            timeout=30, what="the 6-GPU Job in team-a (nominal quota 4) to be admitted")
        assert admitted["status"]["admission"]["clusterQueue"] == "team-a"

        def borrowed() -> int:
            queue = cluster.custom.get_cluster_custom_object(
                GROUP, "v1beta2", "clusterqueues", "team-a")
            return sum(int(r.get("borrowed", 0))
                       for usage in queue["status"].get("flavorsReservation", [])
                       for r in usage["resources"] if r["name"] == GPU)

        assert wait_for(borrowed, timeout=10, what="team-a to borrow GPUs from team-b") == 2
        wait_for(lambda: _job_complete(cluster, "team-a", "six-gpus"), timeout=30,
                 what="the borrowing Job to complete")
    finally:
        # Everything but the ResourceFlavor, which create_queues shares (deleting it would
        # leave other tests' ClusterQueues without a flavor).
        rest = [obj for obj in objects if obj["kind"] != "ResourceFlavor"]
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                        input=yaml.safe_dump_all(rest))
