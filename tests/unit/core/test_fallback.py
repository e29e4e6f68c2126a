"""Stage fallbacks in decide(): Job and pod summaries in, plans out.

A stage with a `fallback` that fails for good (after its retries) keeps phase Failed; its
fallback runs in its place, dependants read the fallback's outputs, and the run ends Succeeded
and Degraded. A failed fallback fails the stage as before.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from kubedag.api import (
    CONDITION_SUCCEEDED,
    FallbackCheckpoint,
    RunPhase,
    StageCheckpoint,
    StagePhase,
    find_condition,
)
from kubedag.client.display import tree_rows
from kubedag.core import reasons
from kubedag.core.decide import RunFacts, decide
from kubedag.core.fallback import effective_phase, fallback_stage
from kubedag.core.feedback import record_create_results
from kubedag.core.naming import job_name
from kubedag.core.observe import JobSummary, PodSummary, summarize_job, summarize_pod
from kubedag.core.plan import Plan
from kubedag.core.runview import RunResult
from kubedag.core.validation import validate_pipeline
from tests.unit.core.factories import (
    RUN,
    at,
    facts,
    job,
    phases,
    pipeline,
    pod,
    stage,
    started,
    step,
)

S, F, R = StagePhase.SUCCEEDED, StagePhase.FAILED, StagePhase.RUNNING
FALLBACK = {"image": "backup", "command": ["recover"], "args": ["--fast"]}


def fb_job(stage_name: str, attempt: int = 1, **fields: Any) -> JobSummary:
    return replace(job(stage_name, attempt, **fields),
                   name=job_name(RUN, stage_name, attempt, fallback=True), fallback=True)


def fb_pod(stage_name: str, attempt: int = 1, **fields: Any) -> PodSummary:
    base = pod(stage_name, attempt, **fields)
    name = job_name(RUN, stage_name, attempt, fallback=True)
    return replace(base, name=f"{name}-xyz", job=name, fallback=True)


def checkpoint(plan: Plan, name: str) -> StageCheckpoint:
    return (plan.status.stages or {})[name]


def fallback_of(plan: Plan, name: str) -> FallbackCheckpoint:
    fallback = checkpoint(plan, name).fallback
    assert fallback is not None
    return fallback


def condition(plan: Plan, type_: str) -> Any:
    return find_condition(plan.status.conditions, type_)


def env_of(manifest: dict[str, Any]) -> dict[str, Any]:
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def first_failure(spec_stages: list[dict[str, Any]], **pipeline_fields: Any
                  ) -> tuple[RunFacts, Plan]:
    """Start the run, then let stage `a`'s first attempt fail with exit code 3."""
    f = facts(pipeline(*spec_stages, **pipeline_fields))
    plan = decide(f, at(0))
    f = step(f, plan, now=at(10), pods=[pod("a", phase="Failed", exit_code=3)])
    return f, decide(f, at(10))


def test_a_failed_stage_starts_its_fallback_and_stays_in_flight() -> None:
    _, plan = first_failure([stage("a", fallback=FALLBACK), stage("b", "a")])

    assert phases(plan) == {"a": F}
    cp = checkpoint(plan, "a")
    assert (cp.reason, cp.exit_code) == (reasons.EXIT_CODE, 3)
    fallback = fallback_of(plan, "a")
    assert fallback.phase == R and fallback.attempts == 1
    [manifest] = plan.create_jobs
    assert manifest["metadata"]["name"] == fallback.job == "run-a-fb1"
    labels = manifest["metadata"]["labels"]
    assert (labels["kubedag.io/stage"], labels["kubedag.io/attempt"],
            labels["kubedag.io/fallback"]) == ("a", "1", "true")
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["command"], container["args"]) == (
        "backup", ["recover"], ["--fast"])
    assert summarize_job(manifest).fallback
    assert reasons.FALLBACK_STARTED in [e.reason for e in plan.events]
    # In flight: not finished, the run goes on, b waits.
    assert plan.status.phase == RunPhase.RUNNING
    assert plan.status.progress is not None and plan.status.progress.completed == 0
    assert effective_phase(cp) == R


def test_dependants_read_the_fallbacks_outputs_and_the_run_ends_degraded() -> None:
    f, plan = first_failure([
        stage("a", fallback=FALLBACK),
        stage("b", "a", args=["$(stages.a.outputs.rows)"]),
    ])
    f = step(f, plan, now=at(20), pods=[fb_pod("a", outputs={"rows": 42})])
    plan = decide(f, at(20))

    assert fallback_of(plan, "a").phase == S
    assert fallback_of(plan, "a").outputs == {"rows": 42}
    assert checkpoint(plan, "a").phase == F  # the cause stays on record
    [manifest] = plan.create_jobs
    assert manifest["spec"]["template"]["spec"]["containers"][0]["args"] == ["42"]
    assert json.loads(env_of(manifest)["KUBEDAG_INPUTS"]) == {"a": {"rows": 42}}
    assert reasons.FALLBACK_SUCCEEDED in [e.reason for e in plan.events]

    f = step(f, plan, now=at(30), pods=[pod("b")])
    plan = decide(f, at(30))
    assert plan.status.phase == RunPhase.SUCCEEDED
    degraded = condition(plan, reasons.CONDITION_DEGRADED)
    assert degraded.reason == reasons.RECOVERED_BY_FALLBACK
    assert "recovered by fallback: a (primary failed: ExitCode)" in degraded.message
    assert any("recovered by fallback" in e.message for e in plan.events
               if e.reason == reasons.CONDITION_DEGRADED)


def test_a_failed_fallback_of_a_critical_stage_fails_the_run() -> None:
    f, plan = first_failure([stage("a", fallback=FALLBACK), stage("b", "a")])
    f = step(f, plan, now=at(20), pods=[fb_pod("a", phase="Failed", exit_code=7)])
    plan = decide(f, at(20))

    assert fallback_of(plan, "a").phase == F
    assert fallback_of(plan, "a").exit_code == 7
    assert plan.status.phase == RunPhase.FAILED
    assert phases(plan)["b"] == StagePhase.SKIPPED
    message = condition(plan, CONDITION_SUCCEEDED).message
    assert "its fallback failed too" in message
    assert reasons.FALLBACK_FAILED in [e.reason for e in plan.events]


def test_a_failed_fallback_of_a_non_critical_stage_skips_its_dependants() -> None:
    f, plan = first_failure([stage("a", fallback=FALLBACK, critical=False),
                             stage("b", "a"), stage("c")])
    f = step(f, plan, now=at(20), pods=[fb_pod("a", phase="Failed", exit_code=7), pod("c")])
    plan = decide(f, at(20))

    assert checkpoint(plan, "b").reason == reasons.UPSTREAM_FAILED
    assert plan.status.phase == RunPhase.SUCCEEDED
    assert condition(plan, reasons.CONDITION_DEGRADED).reason == \
        reasons.NON_CRITICAL_STAGE_FAILED


def test_the_stage_uses_its_retries_before_the_fallback_starts() -> None:
    retry = {"limit": 1, "initialDelaySeconds": 5}
    f, plan = first_failure([stage("a", retry=retry, fallback=FALLBACK)])
    assert phases(plan) == {"a": StagePhase.RETRYING}
    assert checkpoint(plan, "a").fallback is None and not plan.create_jobs

    f = step(f, plan, now=at(15))
    plan = decide(f, at(15))
    assert [m["metadata"]["name"] for m in plan.create_jobs] == ["run-a-2"]
    f = step(f, plan, now=at(25), pods=[pod("a", 2, phase="Failed", exit_code=3)])
    plan = decide(f, at(25))
    assert [m["metadata"]["name"] for m in plan.create_jobs] == ["run-a-fb1"]
    assert checkpoint(plan, "a").attempts == 2


def test_the_fallback_retries_under_its_own_policy() -> None:
    fallback = {**FALLBACK, "retry": {"limit": 1, "initialDelaySeconds": 5}}
    f, plan = first_failure([stage("a", fallback=fallback)])
    f = step(f, plan, now=at(20), pods=[fb_pod("a", phase="Failed", exit_code=1)])
    plan = decide(f, at(20))
    assert fallback_of(plan, "a").phase == StagePhase.RETRYING
    assert not plan.create_jobs and plan.requeue_after == 5
    assert plan.status.phase == RunPhase.RUNNING

    f = step(f, plan, now=at(25))
    plan = decide(f, at(25))
    assert [m["metadata"]["name"] for m in plan.create_jobs] == ["run-a-fb2"]
    f = step(f, plan, now=at(30), pods=[fb_pod("a", 2, outputs={"ok": True})])
    plan = decide(f, at(30))
    assert plan.status.phase == RunPhase.SUCCEEDED


def test_a_running_fallback_holds_a_place_in_max_parallel_stages() -> None:
    f, plan = first_failure([stage("a", fallback=FALLBACK), stage("b")], maxParallelStages=1)
    # a's fallback takes a's place: b waits until it has finished.
    assert [m["metadata"]["name"] for m in plan.create_jobs] == ["run-a-fb1"]
    f = step(f, plan, now=at(20))
    plan = decide(f, at(20))
    assert not plan.create_jobs
    f = step(f, plan, now=at(30), pods=[fb_pod("a")])
    plan = decide(f, at(30))
    assert started(plan) == ["b"]


def test_cancel_stops_a_running_fallback() -> None:
    f, plan = first_failure([stage("a", fallback=FALLBACK)])
    f = step(f, plan, now=at(20), spec=f.spec.model_copy(update={"cancel": True}))
    plan = decide(f, at(20))
    assert plan.delete_jobs == ["run-a-fb1"]
    assert fallback_of(plan, "a").phase == StagePhase.CANCELLED
    assert plan.status.phase == RunPhase.CANCELLED


def test_a_fallback_job_created_before_a_crash_is_adopted_not_created_again() -> None:
    f, plan = first_failure([stage("a", fallback=FALLBACK)])
    # The status write of that pass was lost: the checkpoint still says "about to start".
    lost = plan.status.model_copy(update={"stages": {"a": checkpoint(plan, "a").model_copy(
        update={"fallback": FallbackCheckpoint()})}})
    f = replace(f, status=lost, jobs={**f.jobs, "run-a-fb1": fb_job("a")},
                recently_created=frozenset())
    plan = decide(f, at(12))
    assert not plan.create_jobs
    assert fallback_of(plan, "a").job == "run-a-fb1"


def test_when_reads_a_recovered_stage_as_succeeded_with_its_reason() -> None:
    f, plan = first_failure([
        stage("a", fallback=FALLBACK),
        stage("b", "a", when="stages.a.reason == 'RecoveredByFallback'"),
        stage("c", "a", when="stages.a.outputs.rows > 1"),
    ])
    f = step(f, plan, now=at(20), pods=[fb_pod("a", outputs={"rows": 2})])
    plan = decide(f, at(20))
    assert sorted(started(plan)) == ["b", "c"]


def test_a_stage_recovered_in_the_earlier_run_is_reused_by_resume_from() -> None:
    recovered = StageCheckpoint(phase=F, reason=reasons.OOM_KILLED, fallback=FallbackCheckpoint(
        phase=S, outputs={"rows": 5}))
    spec = pipeline(stage("a", fallback=FALLBACK),
                    stage("b", "a", args=["$(stages.a.outputs.rows)"]))
    f = facts(spec, run_spec={"resumeFrom": "old"}, resume_checkpoints={"a": recovered})
    plan = decide(f, at(0))
    assert started(plan) == ["b"]
    assert plan.create_jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["5"]


def test_a_rejected_fallback_job_fails_the_fallback_not_the_stage_again() -> None:
    _, plan = first_failure([stage("a", fallback=FALLBACK)])
    record_create_results(plan, {"a": "forbidden: quota"}, at(10))
    cp = checkpoint(plan, "a")
    assert cp.reason == reasons.EXIT_CODE
    assert cp.fallback is not None and cp.fallback.reason == reasons.JOB_REJECTED


def test_primary_and_fallback_jobs_and_pods_are_told_apart() -> None:
    assert job_name("r", "x", 1, fallback=True) == "r-x-fb1"
    # A stage may be called x-fb: its Jobs still end in digits only.
    assert job_name("r", "x-fb", 1) == "r-x-fb-1" != job_name("r", "x", 1, fallback=True)
    long = job_name("r" * 40, "s" * 40, 3, fallback=True)
    assert len(long) <= 63 and long.endswith("-fb3")
    body = {"metadata": {"name": "p", "labels": {"kubedag.io/stage": "x",
                                                 "kubedag.io/attempt": "1",
                                                 "kubedag.io/fallback": "true",
                                                 "job-name": "r-x-fb1"}}}
    assert summarize_pod(body).fallback


def test_the_fallback_is_built_as_the_stage_with_its_own_way_to_run() -> None:
    spec = pipeline(stage("a"), stage("b", "a", priority=3, resources={"cpu": "2"},
                                      fallback={"processor": "pkg.mod:alt"}))
    built = fallback_stage(spec.stages[1])
    assert (built.name, built.depends_on, built.priority) == ("b", ["a"], 3)
    assert (built.image, built.processor, built.resources) == (None, "pkg.mod:alt", None)


def test_validation_names_the_fallbacks_fields() -> None:
    spec = {"stages": [
        stage("a"), stage("z"),
        stage("b", "a", fallback={"image": "i", "command": ["x"],
                                  "args": ["$(stages.z.outputs.k)", "$(params.nope)",
                                           "$(stages.a.outputs.k)"]}),
        stage("c", fallback={"command": ["x"]}),
    ]}
    errors = {(e.path, e.message) for e in validate_pipeline(spec)}
    assert ("spec.stages[2].fallback.args[0]",
            "stage 'z' is not upstream of 'b': add it to dependsOn (directly or through "
            "another stage) so its outputs exist in time") in errors
    assert ("spec.stages[2].fallback.args[1]", "unknown param 'nope'") in errors
    assert not any(path == "spec.stages[2].fallback.args[2]" for path, _ in errors)
    assert ("spec.stages[3].fallback", "a fallback with a command needs an image") in errors


def test_the_run_view_shows_a_recovered_stage_with_the_fallbacks_outputs() -> None:
    f, plan = first_failure([stage("a", fallback=FALLBACK)])
    f = step(f, plan, now=at(20), pods=[fb_pod("a", outputs={"rows": 42})])
    plan = decide(f, at(20))
    result = RunResult.from_status("run", "ns", plan.status, now=at(20))
    view = result.stages["a"]
    assert (view.phase, view.recovered, result.outputs("a")) == (F, True, {"rows": 42})
    [row] = [r for r in tree_rows(result) if r.name == "a"]
    assert (row.phase, row.message.split(" (")[0]) == ("Failed", "→ recovered by fallback")
