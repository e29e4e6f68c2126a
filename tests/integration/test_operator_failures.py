"""Failures, retries, critical and non-critical stages, finally stages and timeouts."""

from __future__ import annotations

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    condition,
    create_run,
    event_messages,
    event_reasons,
    jobs_by_stage,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster, wait_for

FAST_RETRY = {"limit": 2, "strategy": "fixed", "initialDelaySeconds": 1}


def test_retryable_failure_is_retried_until_the_limit(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "flaky", {"pipelineSpec": pipeline(cluster, [
        stage("fetch", exit_code=75, retry=FAST_RETRY),
    ])})
    run = wait_phase(cluster, namespace, "flaky")
    assert run["status"]["phase"] == "Failed"
    fetch = stages_of(run)["fetch"]
    assert (fetch["phase"], fetch["attempts"], fetch["exitCode"]) == ("Failed", 3, 75)
    jobs = sorted(j.metadata.name for j in jobs_by_stage(cluster, namespace)["fetch"])
    assert jobs == ["flaky-fetch-1", "flaky-fetch-2", "flaky-fetch-3"]
    # A busy run's Events go out up to 5 s apart (kubedag.shell.events): wait for them.
    wait_for(lambda: "StageRetrying" in event_reasons(cluster, namespace, "flaky"),
             what="a StageRetrying Event")


def test_permanent_exit_code_fails_at_once(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "bad-input", {"pipelineSpec": pipeline(cluster, [
        stage("parse", exit_code=65, retry=FAST_RETRY),
    ])})
    run = wait_phase(cluster, namespace, "bad-input")
    parse = stages_of(run)["parse"]
    assert (run["status"]["phase"], parse["attempts"], parse["exitCode"]) == ("Failed", 1, 65)


def test_only_listed_exit_codes_are_retried(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    retry = {**FAST_RETRY, "retryableExitCodes": [42]}
    create_run(cluster, namespace, "picky", {"pipelineSpec": pipeline(cluster, [
        stage("a", exit_code=3, retry=retry, critical=False),
        stage("b", exit_code=42, retry=retry),
    ])})
    stages = stages_of(wait_phase(cluster, namespace, "picky"))
    assert stages["a"]["attempts"] == 1
    assert stages["b"]["attempts"] == 3


def test_non_critical_failure_skips_dependants_and_the_run_succeeds_degraded(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "soft", {"pipelineSpec": pipeline(cluster, [
        stage("extract"),
        stage("translate", "extract", exit_code=1, critical=False),
        stage("publish-translation", "translate"),
        stage("after-publish", "publish-translation"),
        stage("aggregate", "extract"),
    ], **{"finally": [stage("notify")]})})
    run = wait_phase(cluster, namespace, "soft")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    stages = stages_of(run)
    assert stages["translate"]["phase"] == "Failed"
    for skipped in ("publish-translation", "after-publish"):
        assert (stages[skipped]["phase"], stages[skipped]["reason"]) == ("Skipped",
                                                                        "UpstreamFailed")
    assert stages["aggregate"]["phase"] == "Succeeded"
    assert stages["notify"]["phase"] == "Succeeded"
    degraded = condition(run, "Degraded")
    assert degraded is not None and "translate" in degraded["message"]


def test_critical_failure_stops_new_work_runs_finally_and_fails_the_run(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "hard", {"pipelineSpec": pipeline(cluster, [
        stage("validate", exit_code=2),
        stage("slow-sibling", duration="2s"),
        stage("extract", "validate"),
        stage("after-sibling", "slow-sibling"),
    ], **{"finally": [stage("cleanup"), stage("report", "cleanup")]})})
    run = wait_phase(cluster, namespace, "hard")
    assert run["status"]["phase"] == "Failed"
    stages = stages_of(run)
    assert stages["validate"]["phase"] == "Failed"
    assert stages["extract"]["reason"] == "UpstreamFailed"
    # A running sibling finishes, but nothing new starts after a critical failure.
    assert stages["slow-sibling"]["phase"] == "Succeeded"
    assert stages["after-sibling"]["phase"] == "Skipped"
    assert stages["after-sibling"]["reason"] == "RunFailed"
    assert stages["cleanup"]["phase"] == "Succeeded" and stages["report"]["phase"] == "Succeeded"
    succeeded = condition(run, "Succeeded")
    assert succeeded is not None and succeeded["status"] == "False"
    assert succeeded["reason"] == "StageFailed"
    assert succeeded["message"].startswith("Stage validate (ExitCode: exit code 2")
    assert (stages["validate"]["reason"], stages["validate"]["exitCode"]) == ("ExitCode", 2)
    assert "after-sibling" not in jobs_by_stage(cluster, namespace)


def test_stage_past_its_deadline_fails(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "slowpoke", {"pipelineSpec": pipeline(cluster, [
        stage("hang", duration="60s", timeoutSeconds=2),
    ])})
    run = wait_phase(cluster, namespace, "slowpoke", timeout=60)
    hang = stages_of(run)["hang"]
    assert run["status"]["phase"] == "Failed"
    assert hang["phase"] == "Failed" and "timed out" in hang["message"]
    assert hang["reason"] == "DeadlineExceeded"


def test_run_past_its_timeout_fails_and_its_jobs_are_deleted(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "overdue", {"timeoutSeconds": 2, "pipelineSpec": pipeline(
        cluster, [stage("hang", duration="120s"), stage("never", "hang")])})
    run = wait_phase(cluster, namespace, "overdue", timeout=30)
    assert run["status"]["phase"] == "Failed"
    succeeded = condition(run, "Succeeded")
    assert succeeded is not None and succeeded["reason"] == "RunTimeout"
    stages = stages_of(run)
    assert (stages["hang"]["phase"], stages["hang"]["reason"]) == ("Cancelled", "RunTimedOut")
    assert (stages["never"]["phase"], stages["never"]["reason"]) == ("Skipped", "RunTimedOut")
    wait_for(lambda: not cluster.batch.list_namespaced_job(namespace).items,
             what="the run's Jobs deleted")


def test_invalid_pipeline_fails_the_run_naming_the_field(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    create_run(cluster, namespace, "cyclic", {"pipelineSpec": pipeline(cluster, [
        stage("a", "c"), stage("b", "a"), stage("c", "b"),
    ])})
    run = wait_phase(cluster, namespace, "cyclic")
    succeeded = condition(run, "Succeeded")
    assert run["status"]["phase"] == "Failed"
    assert succeeded is not None and succeeded["reason"] == "InvalidPipeline"
    assert "spec.stages" in succeeded["message"] and "cycle" in succeeded["message"]
    assert not cluster.batch.list_namespaced_job(namespace).items


def test_attempt_whose_pod_is_deleted_is_retried_and_the_stage_succeeds(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    """An evicted or deleted pod is an infrastructure failure: retried, then it succeeds."""
    create_run(cluster, namespace, "evicted", {"pipelineSpec": pipeline(cluster, [
        stage("train", duration="2s", retry=FAST_RETRY), stage("publish", "train"),
    ])})

    def first_pod() -> list:
        pods = cluster.core.list_namespaced_pod(
            namespace, label_selector="kubedag.io/stage=train,kubedag.io/attempt=1").items
        return [p for p in pods if p.status.phase == "Running"]

    (pod,) = wait_for(first_pod, what="attempt 1 running")
    cluster.core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    run = wait_phase(cluster, namespace, "evicted", timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    train = stages_of(run)["train"]
    assert (train["phase"], train["attempts"]) == ("Succeeded", 2)
    wait_for(lambda: any("(PodLost:" in message for message in event_messages(
        cluster, namespace, "evicted", "StageRetrying")), what="StageRetrying naming PodLost")
