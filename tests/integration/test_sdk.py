"""The SDK against the test bed and the host operator: a pipeline written in Python is
submitted through the kubeconfig, runs, and reads back per stage; the estimate learns from the
run's durations and checks the stages against the kwok nodes' allocatable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubedag.api import RunPhase, StagePhase
from kubedag.client import Client
from kubedag.core.runview import EXIT_SUCCEEDED
from kubedag.sdk import Pipeline, PipelineDefinitionError
from kubedag.testbed import ANNOTATION_DURATION, ANNOTATION_MESSAGE
from tests.integration.operator_process import OperatorProcess
from tests.integration.support import Cluster


def kwok_pod(duration: str, outputs: dict[str, Any] | None = None) -> dict[str, str]:
    """Annotations that make a kwok pod run this long and report these outputs."""
    annotations = {ANNOTATION_DURATION: duration}
    if outputs is not None:
        annotations[ANNOTATION_MESSAGE] = json.dumps({"outputs": outputs})
    return annotations


def documents(cluster: Cluster) -> Pipeline:
    p = Pipeline("sdk-docs", params={"files": list, "language": "en"},
                 defaults=cluster.pod_placement(), max_parallel_stages=2)
    validate = p.add_step("validate", image="busybox", estimated_seconds=1,
                          pod_annotations=kwok_pod("1s", {"accepted": 2, "scanned": 0}))
    p.add_step("ocr", image="busybox", depends_on=[validate],
               when="stages.validate.outputs.scanned > 0", pod_annotations=kwok_pod("1s"))
    p.add_step("extract", image="busybox", args=["--lang=$(params.language)"],
               fan_out="$(params.files)", retry=2, resources={"cpu": "100m", "memory": "64Mi"},
               pod_annotations=kwok_pod("2s", {"pages": 5})).after(validate)
    p.add_step("aggregate", image="busybox", depends_on=["ocr", "extract"],
               pod_annotations=kwok_pod("1s", {"chunks": 12}))
    p.finally_step("report", image="busybox", pod_annotations=kwok_pod("0s", {"sent": True}))
    return p


@pytest.fixture
def client(cluster: Cluster, namespace: str) -> Client:
    return Client(kubeconfig=cluster.kubeconfig, namespace=namespace)


def test_a_python_pipeline_is_submitted_waited_on_and_read_per_stage(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    p = documents(cluster)
    assert p.validate().ok
    handle = p.submit(params={"files": ["a.pdf", "b.pdf"], "language": "de"}, client=client)
    assert handle.name.startswith("sdk-docs-") and handle.namespace == client.namespace
    result = handle.wait(timeout=90)
    assert result.phase is RunPhase.SUCCEEDED and result.exit_code == EXIT_SUCCEEDED, result
    phases = {name: stage.phase for name, stage in result.stages.items()}
    assert phases == {"validate": StagePhase.SUCCEEDED, "ocr": StagePhase.SKIPPED,
                      "extract": StagePhase.SUCCEEDED, "aggregate": StagePhase.SUCCEEDED,
                      "report": StagePhase.SUCCEEDED}
    assert result.outputs("validate") == {"accepted": 2, "scanned": 0}
    assert result.outputs("aggregate") == {"chunks": 12}
    assert result.outputs("report") == {"sent": True}
    assert (result.stages["extract"].fanout_done, result.stages["extract"].fanout_total) == (2, 2)
    assert result.stages["report"].is_finally
    # The run is labelled with the pipeline, and carries the spec the SDK built.
    run = handle.client.list_run_objects("sdk-docs")
    assert [r.metadata["name"] for r in run] == [handle.name]
    assert run[0].spec.pipeline_spec == p.build()
    assert run[0].spec.params == {"files": ["a.pdf", "b.pdf"], "language": "de"}

    # The estimate now uses the run's durations (kwok's pods ran 1-2 s) and the real nodes.
    estimate = p.estimate(client=client)
    assert estimate.sources["extract"] == "history"
    assert estimate.sources["ocr"] == "unknown"  # skipped: says nothing about its duration
    assert estimate.durations["extract"] >= 1.0
    assert estimate.unschedulable == []
    p.override_step("aggregate", resources={"cpu": "100000"})
    too_big = p.estimate(client=client).unschedulable
    assert [u.stage for u in too_big] == ["aggregate"]
    assert too_big[0].largest_node is not None
    assert f"the largest node, {too_big[0].largest_node}, has cpu" in str(too_big[0])


def test_submit_refuses_bad_params_before_the_cluster_sees_them(
    cluster: Cluster, client: Client, running_operator: OperatorProcess
) -> None:
    p = documents(cluster)
    with pytest.raises(PipelineDefinitionError, match=r"spec\.params\.files: required"):
        p.submit(params={"language": "de"}, client=client)
    assert client.list_run_objects("sdk-docs") == []


def test_validate_with_a_client_asks_the_api_server_too_and_stores_nothing(
    cluster: Cluster, crds: None, client: Client, namespace: str
) -> None:
    p = documents(cluster)
    assert p.validate(client=client).ok
    stored = client.custom.list_namespaced_custom_object(
        "kubedag.io", "v1alpha1", namespace, "pipelines")
    assert stored["items"] == []  # a dry run
    p.namespace = "no-such-namespace-sdk"
    report = p.validate(client=client)
    assert [e.path for e in report.errors] == ["(server)"]
    assert "not found" in report.errors[0].message
