"""Stages no node can take, on the kwok test bed with the real kube-scheduler: the scheduler's
verdict reaches the stage, the run's conditions, an Event and a metric; a timeout fails the
stage; dry runs and Pipelines check fit against the nodes; a node that joins lets it run.

The test bed's kwok GPU nodes have 4 GPUs each (kubedag.testbed.nodes.DEFAULT_NODES).
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from kubedag.testbed.nodes import DEFAULT_NODES, FakeNode
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    GROUP,
    VERSION,
    condition,
    create_run,
    event_messages,
    get_run,
    jobs_by_stage,
    patch_run,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for

MOST_GPUS = max(node.gpus for node in DEFAULT_NODES)
TOO_MANY_GPUS = 16
assert TOO_MANY_GPUS > MOST_GPUS


def gpu_stage(name: str, *deps: str, gpus: int = TOO_MANY_GPUS, **fields: Any) -> dict[str, Any]:
    return stage(name, *deps, resources={"gpu": gpus}, **fields)


def wait_stage(cluster: Cluster, namespace: str, run: str, name: str, phase: str,
               reason: str | None = None, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = get_run(cluster, namespace, run)
        checkpoint = (stages_of(body) if body.get("status") else {}).get(name) or {}
        ok = checkpoint.get("phase") == phase and (reason is None
                                                    or checkpoint.get("reason") == reason)
        return checkpoint if ok else None

    return wait_for(probe, timeout=timeout, what=f"stage {name} {phase} {reason or ''}")


def unschedulable_gauge(operator: OperatorProcess, namespace: str) -> float | None:
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "kubedag_stages_unschedulable"
                    and sample.labels.get("namespace") == namespace):
                return float(sample.value)
    return None


def test_a_stage_no_node_can_take_is_pending_with_the_schedulers_message(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "greedy", {"pipelineSpec": pipeline(cluster, [
        gpu_stage("train"), stage("report", "train")])})
    train = wait_stage(cluster, namespace, "greedy", "train", "Pending", "Unschedulable")
    assert train["job"] == "greedy-train-1"
    assert "nodes are available" in train["message"], train
    assert "Insufficient nvidia.com/gpu" in train["message"], train

    run = get_run(cluster, namespace, "greedy")
    assert run["status"]["phase"] == "Running"
    schedulable = condition(run, "Schedulable")
    assert schedulable is not None
    assert (schedulable["status"], schedulable["reason"]) == ("False", "StagesUnschedulable")
    assert "train: " in schedulable["message"] and "Insufficient" in schedulable["message"]
    assert wait_for(lambda: unschedulable_gauge(running_operator, namespace) == 1.0,
                    what="kubedag_stages_unschedulable 1")

    # More passes (a label change wakes the run) neither repeat the Event nor start a Job.
    messages = wait_for(lambda: event_messages(cluster, namespace, "greedy", "Unschedulable"),
                        what="the Unschedulable Warning Event")
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "pipelineruns", "greedy", {"metadata": {"labels": {"x": "1"}}})
    wait_stage(cluster, namespace, "greedy", "train", "Pending", "Unschedulable")
    events = cluster.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=greedy,reason=Unschedulable").items
    assert len(messages) == 1 and [e.count or 1 for e in events] == [1], events
    assert events[0].type == "Warning" and "Stage train cannot be scheduled" in messages[0]
    assert [j.metadata.name for j in jobs_by_stage(cluster, namespace)["train"]] == [
        "greedy-train-1"]

    patch_run(cluster, namespace, "greedy", {"cancel": True})
    run = wait_phase(cluster, namespace, "greedy")
    assert stages_of(run)["train"]["phase"] == "Cancelled"
    assert wait_for(lambda: unschedulable_gauge(running_operator, namespace) == 0.0,
                    what="kubedag_stages_unschedulable back to 0")


def test_the_unschedulable_timeout_fails_the_stage(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "impatient", {"pipelineSpec": pipeline(cluster, [
        gpu_stage("train", unschedulableTimeoutSeconds=2, retry={"limit": 2})])})
    run = wait_phase(cluster, namespace, "impatient", timeout=90)
    train = stages_of(run)["train"]
    assert (run["status"]["phase"], train["phase"], train["reason"], train["attempts"]) == (
        "Failed", "Failed", "Unschedulable", 1)
    assert "Insufficient nvidia.com/gpu" in train["message"]
    assert "unschedulableTimeoutSeconds" in train["message"]
    assert "Unschedulable" in condition(run, "Succeeded")["message"]  # type: ignore[index]

    def job_gone() -> bool:
        jobs = jobs_by_stage(cluster, namespace).get("train", [])
        return all(j.metadata.deletion_timestamp is not None for j in jobs)

    wait_for(job_gone, what="the stage's Job deleted")


def test_a_dry_run_and_a_pipeline_name_the_stage_that_fits_no_node(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = pipeline(cluster, [stage("prep"), gpu_stage("train", "prep")])
    create_run(cluster, namespace, "check", {"pipelineSpec": spec, "dryRun": True})
    run = wait_phase(cluster, namespace, "check")
    assert run["status"]["phase"] == "Failed"
    stages = stages_of(run)
    assert stages["prep"]["phase"] == "Pending"  # accepted by the API server, fits a node
    train = stages["train"]
    assert (train["phase"], train["reason"]) == ("Failed", "Unschedulable")
    assert f"nvidia.com/gpu {TOO_MANY_GPUS}" in train["message"]
    assert "the largest node, kwok-gpu-" in train["message"]
    assert f"nvidia.com/gpu {MOST_GPUS}" in train["message"]
    assert "train" in condition(run, "Succeeded")["message"]  # type: ignore[index]
    assert cluster.batch.list_namespaced_job(namespace).items == []

    create_pipeline(cluster, namespace, "greedy", spec)
    fits = wait_for(lambda: pipeline_condition(cluster, namespace, "greedy", "Fits"),
                    what="the Pipeline's Fits condition")
    assert (fits["status"], fits["reason"]) == ("False", "NoNodeFits")
    assert "stage 'train' requests" in fits["message"]
    assert f"nvidia.com/gpu {MOST_GPUS}" in fits["message"]
    valid = pipeline_condition(cluster, namespace, "greedy", "Valid")
    assert valid is not None and valid["status"] == "True"
    printed = cluster.kubectl("get", "kdp", "greedy", "-n", namespace).stdout
    assert printed.split("\n")[0].split()[:4] == ["NAME", "STAGES", "VALID", "FITS"], printed
    assert printed.split("\n")[1].split()[:4] == ["greedy", "2", "True", "False"], printed


def test_a_stage_runs_once_a_node_that_fits_it_joins(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    wanted = MOST_GPUS * 2
    create_pipeline(cluster, namespace, "grows",
                    pipeline(cluster, [gpu_stage("train", gpus=wanted)]))
    wait_for(lambda: _status_is(cluster, namespace, "grows", "Fits", "False"),
             what="Fits False before the node joins")
    create_run(cluster, namespace, "grows-1", {"pipelineRef": {"name": "grows"}})
    wait_stage(cluster, namespace, "grows-1", "train", "Pending", "Unschedulable")

    with extra_node(cluster, FakeNode(f"kwok-gpu-big-{uuid.uuid4().hex[:6]}", gpus=wanted)):
        run = wait_phase(cluster, namespace, "grows-1", timeout=90)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        train = stages_of(run)["train"]
        assert (train["phase"], train.get("reason"), train["attempts"]) == ("Succeeded", None, 1)
        schedulable = condition(run, "Schedulable")
        assert schedulable is not None
        assert (schedulable["status"], schedulable["reason"]) == ("True", "StagesScheduled")
        # The Pipeline's fit is checked again when nodes change.
        wait_for(lambda: _status_is(cluster, namespace, "grows", "Fits", "True"),
                 what="Fits True once the node joined", timeout=60)


# --- helpers ------------------------------------------------------------------------------------


def create_pipeline(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelines", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Pipeline", "metadata": {"name": name},
        "spec": spec})


def pipeline_condition(cluster: Cluster, namespace: str, name: str,
                       type_: str) -> dict[str, Any] | None:
    body = cast(dict[str, Any], cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "pipelines", name))
    return condition(body, type_) if body.get("status") else None


def _status_is(cluster: Cluster, namespace: str, name: str, type_: str, value: str) -> bool:
    found = pipeline_condition(cluster, namespace, name, type_)
    return found is not None and found["status"] == value


@contextmanager
def extra_node(cluster: Cluster, node: FakeNode) -> Iterator[None]:
    """A kwok node beside the test bed's, Ready while the block runs, then deleted."""
    manifest = node.manifest(tainted=cluster.plane.existing_cluster)
    cluster.core.create_node(cast(k8s.V1Node, manifest))
    try:
        def ready() -> bool:
            status = cluster.core.read_node(node.name).status
            conditions = (status.conditions if status is not None else None) or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        wait_for(ready, what=f"node {node.name} Ready", timeout=60)
        yield
    finally:
        try:
            cluster.core.delete_node(node.name)
        except ApiException as error:
            if error.status != 404:
                raise
