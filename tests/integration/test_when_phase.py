"""A `when` that reads an upstream stage's phase: a clean-up branch after a non-critical failure,
run by the operator against a real API server (kwok pods)."""

from __future__ import annotations

from tests.integration.operator_process import OperatorProcess
from tests.integration.runs import (
    condition,
    create_run,
    jobs_by_stage,
    pipeline,
    stage,
    stages_of,
    wait_phase,
)
from tests.integration.support import Cluster


def test_a_branch_reading_a_failed_phase_runs_and_the_others_are_skipped(
    cluster: Cluster, namespace: str, running_operator: OperatorProcess
) -> None:
    spec = {"pipelineSpec": pipeline(cluster, [
        stage("a", exit_code=1, critical=False),
        stage("b", "a", when="stages.a.phase == 'Failed'"),
        stage("c", "a"),
    ])}
    create_run(cluster, namespace, "cleanup", spec)
    run = wait_phase(cluster, namespace, "cleanup")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    stages = stages_of(run)
    assert stages["a"]["phase"] == "Failed"
    assert stages["b"]["phase"] == "Succeeded", stages["b"]
    assert (stages["c"]["phase"], stages["c"]["reason"]) == ("Skipped", "UpstreamFailed")
    degraded = condition(run, "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert sorted(jobs_by_stage(cluster, namespace)) == ["a", "b"]
