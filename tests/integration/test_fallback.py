"""Stage fallbacks, run by the operator against a real API server (kwok pods).

A stage's pods fail through the testbed's exit-code annotation; its fallback has pod
annotations of its own (a fallback inherits none of the stage's), so its pods succeed and report
outputs through the message annotation, unless a test makes them fail too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubedag.testbed import ANNOTATION_EXIT_CODE, ANNOTATION_MESSAGE
from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    condition,
    create_run,
    event_reasons,
    jobs_by_stage,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for


def fallback(*, outputs: dict[str, Any] | None = None, exit_code: int | None = None,
             **fields: Any) -> dict[str, Any]:
    """A fallback whose kwok pods report these outputs, or fail with this exit code."""
    annotations = {}
    if outputs is not None:
        annotations[ANNOTATION_MESSAGE] = json.dumps({"outputs": outputs})
    if exit_code is not None:
        annotations[ANNOTATION_EXIT_CODE] = str(exit_code)
    return {"image": "busybox", "podAnnotations": annotations, **fields}


def container(job: Any) -> Any:
    return job.spec.template.spec.containers[0]


def events_written(cluster: Cluster, namespace: str, run: str, *wanted: str) -> None:
    """Events are written after the status: wait until those wanted are there."""
    wait_for(lambda: set(wanted) <= set(event_reasons(cluster, namespace, run)),
             what=f"events {wanted} of run {run}")


def job_names(cluster: Cluster, namespace: str, stage_name: str) -> list[str]:
    return sorted(j.metadata.name for j in jobs_by_stage(cluster, namespace)[stage_name])


def test_a_failed_critical_stage_is_recovered_and_dependants_read_the_fallbacks_outputs(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("extract", exit_code=3, fallback=fallback(outputs={"rows": 7})),
        stage("load", "extract", args=["--rows", "$(stages.extract.outputs.rows)"],
              env=[{"name": "ROWS", "value": "$(stages.extract.outputs.rows)"}]),
    ])}
    create_run(cluster, namespace, "recovered", spec)
    run = wait_phase(cluster, namespace, "recovered")

    assert run["status"]["phase"] == "Succeeded", run["status"]
    extract = stages_of(run)["extract"]
    assert (extract["phase"], extract["reason"], extract["exitCode"]) == ("Failed", "ExitCode", 3)
    assert extract["fallback"]["phase"] == "Succeeded", extract
    assert extract["fallback"]["outputs"] == {"rows": 7}
    assert extract["fallback"]["job"] == "recovered-extract-fb1"
    assert stages_of(run)["load"]["phase"] == "Succeeded"

    jobs = jobs_by_stage(cluster, namespace)
    assert sorted(j.metadata.name for j in jobs["extract"]) == [
        "recovered-extract-1", "recovered-extract-fb1"]
    fallback_job = next(j for j in jobs["extract"] if j.metadata.name.endswith("-fb1"))
    assert fallback_job.metadata.labels["kubedag.io/fallback"] == "true"
    [load] = jobs["load"]
    assert container(load).args == ["--rows", "7"]
    assert {e.name: e.value for e in container(load).env}["ROWS"] == "7"

    degraded = condition(run, "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert degraded["reason"] == "RecoveredByFallback"
    assert "recovered by fallback: extract (primary failed: ExitCode)" in degraded["message"]
    events_written(cluster, namespace, "recovered", "FallbackStarted", "FallbackSucceeded")


def test_a_failed_fallback_of_a_critical_stage_fails_the_run(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("extract", exit_code=3, fallback=fallback(exit_code=4)),
        stage("load", "extract"),
    ])}
    create_run(cluster, namespace, "unrecovered", spec)
    run = wait_phase(cluster, namespace, "unrecovered")

    assert run["status"]["phase"] == "Failed", run["status"]
    extract = stages_of(run)["extract"]
    assert extract["phase"] == "Failed" and extract["exitCode"] == 3
    assert (extract["fallback"]["phase"], extract["fallback"]["exitCode"]) == ("Failed", 4)
    assert stages_of(run)["load"]["phase"] == "Skipped"
    succeeded = condition(run, "Succeeded")
    assert succeeded is not None and "its fallback failed too" in succeeded["message"]
    events_written(cluster, namespace, "unrecovered", "FallbackStarted", "FallbackFailed")
    assert "load" not in jobs_by_stage(cluster, namespace)


def test_a_failed_fallback_of_a_non_critical_stage_only_skips_its_dependants(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("extract", exit_code=3, critical=False, fallback=fallback(exit_code=4)),
        stage("load", "extract"),
        stage("report"),
    ])}
    create_run(cluster, namespace, "optional", spec)
    run = wait_phase(cluster, namespace, "optional")

    assert run["status"]["phase"] == "Succeeded", run["status"]
    stages = stages_of(run)
    assert stages["extract"]["fallback"]["phase"] == "Failed"
    assert (stages["load"]["phase"], stages["load"]["reason"]) == ("Skipped", "UpstreamFailed")
    assert stages["report"]["phase"] == "Succeeded"
    degraded = condition(run, "Degraded")
    assert degraded is not None and degraded["reason"] == "NonCriticalStageFailed"


def test_a_fan_out_stage_is_recovered_by_a_fan_out_fallback(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    # The testbed fails every index of a Job alike: the primary's first failing index fails
    # it; its fallback goes over the items in batches of two, each pod reporting 5 pages.
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("ocr", exit_code=3, fanOut={"items": ["a", "b", "c"]},
              fallback=fallback(outputs={"pages": 5},
                                fanOut={"items": ["a", "b", "c"], "batchSize": 2})),
        stage("index", "ocr", args=["$(stages.ocr.outputs.pages)",
                                    "$(stages.ocr.outputs.count)"]),
    ])}
    create_run(cluster, namespace, "fanout", spec)
    run = wait_phase(cluster, namespace, "fanout")

    assert run["status"]["phase"] == "Succeeded", run["status"]
    ocr = stages_of(run)["ocr"]
    assert ocr["phase"] == "Failed" and ocr["fallback"]["phase"] == "Succeeded"
    assert ocr["fallback"]["outputs"]["pages"] == 10
    jobs = jobs_by_stage(cluster, namespace)
    fallback_job = next(j for j in jobs["ocr"] if j.metadata.name.endswith("-fb1"))
    assert (fallback_job.spec.completion_mode, fallback_job.spec.completions) == ("Indexed", 2)
    [index] = jobs["index"]
    assert container(index).args == ["10", "2"]


def test_the_stage_uses_its_retries_before_the_fallback_which_retries_under_its_own_policy(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    quick = {"limit": 1, "initialDelaySeconds": 0}
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("extract", exit_code=3, retry=quick, fallback=fallback(exit_code=1, retry=quick)),
    ])}
    create_run(cluster, namespace, "retries", spec)
    run = wait_phase(cluster, namespace, "retries")

    assert run["status"]["phase"] == "Failed", run["status"]
    extract = stages_of(run)["extract"]
    assert (extract["attempts"], extract["fallback"]["attempts"]) == (2, 2)
    assert job_names(cluster, namespace, "extract") == [
        "retries-extract-1", "retries-extract-2", "retries-extract-fb1", "retries-extract-fb2"]
    jobs = {j.metadata.name: j for j in jobs_by_stage(cluster, namespace)["extract"]}
    created = {name: job.metadata.creation_timestamp for name, job in jobs.items()}
    # Attempt by attempt: the fallback came after the stage's retry, its retry after it.
    assert (created["retries-extract-1"] <= created["retries-extract-2"]
            <= created["retries-extract-fb1"] <= created["retries-extract-fb2"])


@pytest.mark.usefixtures("crds")
def test_the_api_server_refuses_a_fallback_that_cannot_run(
    cluster: Cluster, namespace: str
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("extract", fallback={"command": ["recover"]}),
    ])}
    with pytest.raises(ApiException) as refused:
        create_run(cluster, namespace, "refused", spec)
    assert refused.value.status == 422
    assert "stage extract: fallback: a fallback with a command needs an image" in str(
        refused.value.body)
