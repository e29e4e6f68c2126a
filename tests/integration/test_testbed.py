"""The test bed itself behaves like a cluster: Jobs run, fail, get collected, pods schedule."""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes import client as k8s

from kubedag.testbed import (
    ANNOTATION_DURATION,
    ANNOTATION_EXIT_CODE,
    ANNOTATION_MESSAGE,
    processes,
    start_control_plane,
)
from tests.integration.support import Cluster, wait_for


def _job(
    cluster: Cluster,
    name: str,
    *,
    completions: int = 1,
    annotations: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    **cluster.pod_placement(),
                },
            },
        },
    }


def _job_condition(cluster: Cluster, namespace: str, name: str) -> str | None:
    job = cluster.batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def _pods_of(cluster: Cluster, namespace: str, job: str) -> list[k8s.V1Pod]:
    return list(
        cluster.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    )


def test_job_with_two_completions_completes(cluster: Cluster, namespace: str) -> None:
    message = json.dumps({"pages": 3})
    cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "two", completions=2, annotations={ANNOTATION_MESSAGE: message})
    )
    outcome = wait_for(lambda: _job_condition(cluster, namespace, "two"), what="Job done")
    assert outcome == "Complete"
    pods = _pods_of(cluster, namespace, "two")
    assert [p.status.phase for p in pods] == ["Succeeded", "Succeeded"]
    # The termination message is how a worker reports its outputs.
    assert pods[0].status.container_statuses[0].state.terminated.message == message


def test_pod_made_to_fail_fails_its_job_with_the_exit_code(
    cluster: Cluster, namespace: str
) -> None:
    cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "fails", annotations={ANNOTATION_EXIT_CODE: "3"})
    )
    outcome = wait_for(lambda: _job_condition(cluster, namespace, "fails"), what="Job done")
    assert outcome == "Failed"
    (pod,) = _pods_of(cluster, namespace, "fails")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")


def test_duration_annotation_keeps_a_pod_running(cluster: Cluster, namespace: str) -> None:
    cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "slow", annotations={ANNOTATION_DURATION: "3s"})
    )
    started = time.monotonic()
    wait_for(lambda: [p for p in _pods_of(cluster, namespace, "slow")
                      if p.status.phase == "Running"], what="pod Running")
    assert _job_condition(cluster, namespace, "slow") is None
    wait_for(lambda: _job_condition(cluster, namespace, "slow"), what="Job done")
    assert time.monotonic() - started >= 2.5


def test_deleting_a_job_garbage_collects_its_pods(cluster: Cluster, namespace: str) -> None:
    cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "gc", annotations={ANNOTATION_DURATION: "60s"})
    )
    wait_for(lambda: _pods_of(cluster, namespace, "gc"), what="the Job's pod")
    cluster.batch.delete_namespaced_job("gc", namespace, propagation_policy="Background")
    wait_for(lambda: not _pods_of(cluster, namespace, "gc"), what="pods garbage-collected")


def test_gpu_pod_lands_on_a_gpu_node(cluster: Cluster, namespace: str) -> None:
    one_gpu = {"limits": {"nvidia.com/gpu": "1"}}
    cluster.batch.create_namespaced_job(
        namespace, _job(cluster, "gpu", resources=one_gpu, annotations={ANNOTATION_DURATION: "30s"})
    )
    pod = wait_for(lambda: [p for p in _pods_of(cluster, namespace, "gpu") if p.spec.node_name],
                   what="GPU pod scheduled")[0]
    node = cluster.core.read_node(pod.spec.node_name)
    assert int(node.status.allocatable.get("nvidia.com/gpu", "0")) >= 1


def test_pod_asking_more_gpus_than_any_node_has_stays_unschedulable(
    cluster: Cluster, namespace: str
) -> None:
    too_many = {"limits": {"nvidia.com/gpu": "16"}}
    cluster.batch.create_namespaced_job(namespace, _job(cluster, "greedy", resources=too_many))

    def unschedulable() -> str | None:
        for pod in _pods_of(cluster, namespace, "greedy"):
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return str(condition.message)
        return None

    message = wait_for(unschedulable, what="PodScheduled=False/Unschedulable")
    assert "nvidia.com/gpu" in message
    assert _pods_of(cluster, namespace, "greedy")[0].status.phase == "Pending"


def test_kubectl_and_helm_work_with_the_kubeconfig(cluster: Cluster, namespace: str) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert cluster.kubectl("get", "namespace", namespace, "-o", "name").stdout.strip() == (
        f"namespace/{namespace}"
    )
    assert "v3." in cluster.helm("version", "--short").stdout
    assert cluster.helm("list", "-n", namespace).returncode == 0


def test_a_second_control_plane_starts_and_stops_without_leftovers() -> None:
    """Teardown must leave no process behind; the test bed is started here on its own."""
    plane = start_control_plane()
    pids = list(plane.pids.values())
    try:
        assert len(pids) == 5
        assert all(processes.alive(p) for p in pids)
    finally:
        plane.stop()
    assert not [p for p in pids if processes.alive(p)]
