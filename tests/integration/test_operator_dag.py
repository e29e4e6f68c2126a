"""The operator runs a DAG as Jobs: order, parallelism, the Job's shape, outputs and `when`."""

from __future__ import annotations

import json
import time
from datetime import datetime

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    condition,
    create_run,
    event_reasons,
    get_run,
    jobs_by_stage,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_dag_runs_in_dependency_order_with_outputs_and_when(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"params": {"lang": "de"}, "pipelineSpec": pipeline(cluster, [
        stage("extract", outputs={"pages": 3, "scanned": 0}),
        stage("translate", "extract", args=["--lang=$(params.lang)",
                                             "--pages=$(stages.extract.outputs.pages)"]),
        stage("ocr", "extract", when="stages.extract.outputs.scanned > 0"),
        stage("aggregate", "translate", "ocr"),
    ], params=[{"name": "lang", "type": "string", "default": "en"}])}
    create_run(cluster, namespace, "docs", spec)
    run = wait_phase(cluster, namespace, "docs")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    stages = stages_of(run)
    assert stages["extract"]["outputs"] == {"pages": 3, "scanned": 0}
    assert stages["ocr"]["phase"] == "Skipped" and stages["ocr"]["reason"] == "WhenFalse"
    # A skipped stage satisfies its dependants.
    assert stages["aggregate"]["phase"] == "Succeeded"
    assert ts(stages["translate"]["startTime"]) >= ts(stages["extract"]["finishTime"])
    jobs = jobs_by_stage(cluster, namespace)
    assert sorted(jobs) == ["aggregate", "extract", "translate"]
    args = jobs["translate"][0].spec.template.spec.containers[0].args
    assert args == ["--lang=de", "--pages=3"]
    env = {e.name: e.value for e in jobs["translate"][0].spec.template.spec.containers[0].env}
    assert json.loads(env["KUBEDAG_INPUTS"]) == {"extract": {"pages": 3, "scanned": 0}}
    assert run["status"]["progress"] == {"completed": 4, "total": 4, "percent": 100}
    succeeded = condition(run, "Succeeded")
    assert succeeded is not None and succeeded["status"] == "True"
    assert succeeded["observedGeneration"] == run["metadata"]["generation"]
    reasons = set(wait_for(lambda: (r := event_reasons(cluster, namespace, "docs"))
                           and "Succeeded" in r and r, what="events"))
    assert {"RunStarted", "StageStarted", "StageSucceeded", "StageSkipped"} <= reasons


def test_job_carries_owner_labels_resources_and_placement(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("train", resources={"cpu": "500m", "memory": "1Gi", "gpu": 1},
              timeoutSeconds=100, tolerations=[{"key": "gpu", "operator": "Exists"}]),
    ], stageTimeoutMultiplier=1.5)}
    create_run(cluster, namespace, "shape", spec)
    run = wait_phase(cluster, namespace, "shape")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    (job,) = jobs_by_stage(cluster, namespace)["train"]
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("PipelineRun", "shape", run["metadata"]["uid"])
    assert owner.controller and owner.block_owner_deletion
    labels = job.metadata.labels
    assert labels["app.kubernetes.io/managed-by"] == "kubedag-operator"
    assert labels["app.kubernetes.io/instance"] == "shape"
    assert labels["kubedag.io/stage"] == "train" and labels["kubedag.io/attempt"] == "1"
    assert job.metadata.name == "shape-train-1"
    assert job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == 150
    assert job.spec.ttl_seconds_after_finished > 0
    pod = job.spec.template.spec
    resources = pod.containers[0].resources
    assert resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert resources.limits == {"memory": "1Gi", "nvidia.com/gpu": "1"}
    assert {"key": "gpu", "operator": "Exists"} in [
        {k: v for k, v in t.to_dict().items() if v is not None} for t in pod.tolerations]
    assert pod.node_selector == cluster.pod_placement()["nodeSelector"]
    # The GPU request put the pod on a GPU node.
    (stage_pod,) = cluster.core.list_namespaced_pod(
        namespace, label_selector="kubedag.io/stage=train").items
    node = cluster.core.read_node(stage_pod.spec.node_name)
    assert node.metadata.labels["kubedag.io/gpu"] == "true"


def test_independent_stages_run_in_parallel_and_the_limit_holds(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    fan = [stage(f"s{i}", "root", duration="2s") for i in range(4)]
    create_run(cluster, namespace, "wide", {"pipelineSpec": pipeline(
        cluster, [stage("root"), *fan])})
    create_run(cluster, namespace, "narrow", {"pipelineSpec": pipeline(
        cluster, [stage("root"), *fan], maxParallelStages=2)})
    wide = wait_phase(cluster, namespace, "wide")
    narrow = wait_phase(cluster, namespace, "narrow")
    for run in (wide, narrow):
        assert run["status"]["phase"] == "Succeeded"

    def max_overlap(run: dict) -> int:
        spans = [(ts(s["startTime"]), ts(s["finishTime"])) for n, s in stages_of(run).items()
                 if n != "root"]
        return max(sum(1 for a, b in spans if a <= start < b) for start, _ in spans)

    assert max_overlap(wide) == 4
    assert max_overlap(narrow) == 2


def test_pipeline_ref_runs_a_separately_applied_pipeline(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "later", {"pipelineRef": {"name": "shared"}})
    time.sleep(1)
    assert get_run(cluster, namespace, "later")["status"]["phase"] == "Pending"
    cluster.custom.create_namespaced_custom_object("kubedag.io", "v1alpha1", namespace,
                                                   "pipelines", {
        "apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": "shared"},
        "spec": pipeline(cluster, [stage("one"), stage("two", "one")]),
    })
    run = wait_phase(cluster, namespace, "later")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["metadata"]["labels"] if run["metadata"].get("labels") else True
    (job,) = jobs_by_stage(cluster, namespace)["two"]
    assert job.metadata.labels["kubedag.io/pipeline"] == "shared"


def test_kubectl_wait_for_succeeded_condition(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "waited", {"pipelineSpec": pipeline(
        cluster, [stage("a", duration="1s"), stage("b", "a")])})
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Succeeded", "--timeout=60s",
                    "pipelinerun/waited")
    printed = cluster.kubectl("get", "-n", namespace, "kdpr", "waited").stdout
    assert "Succeeded" in printed


def test_pipeline_status_says_whether_it_is_valid(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    for name, stages in (("good", [stage("a"), stage("b", "a")]),
                         ("loop", [stage("a", "b"), stage("b", "a")])):
        cluster.custom.create_namespaced_custom_object("kubedag.io", "v1alpha1", namespace,
                                                       "pipelines", {
            "apiVersion": "kubedag.io/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": name}, "spec": pipeline(cluster, stages)})

    def valid(name: str) -> dict | None:
        body = cluster.custom.get_namespaced_custom_object("kubedag.io", "v1alpha1", namespace,
                                                           "pipelines", name)
        return condition(body, "Valid") if body.get("status") else None

    good = wait_for(lambda: valid("good"), what="good pipeline's Valid condition")
    loop = wait_for(lambda: valid("loop"), what="cyclic pipeline's Valid condition")
    assert good["status"] == "True"
    assert loop["status"] == "False" and "cycle" in loop["message"]
    printed = cluster.kubectl("get", "kdp", "-n", namespace).stdout
    assert "good" in printed and "True" in printed and "False" in printed
