"""record_create_results and decide_invalid_spec: verdicts that arrive after decide()."""

from __future__ import annotations

from typing import Any

from kubedag.api import (
    CONDITION_SUCCEEDED,
    ConditionStatus,
    PipelineRunStatus,
    RunPhase,
    StagePhase,
    find_condition,
    to_k8s,
)
from kubedag.core import reasons
from kubedag.core.decide import decide
from kubedag.core.feedback import decide_invalid_spec, record_create_results
from tests.unit.core.factories import T0, at, facts, phases, pipeline, reasons_of, stage, step

S, F, R, P, SKIP = (StagePhase.SUCCEEDED, StagePhase.FAILED, StagePhase.RUNNING,
                    StagePhase.PENDING, StagePhase.SKIPPED)


DIAMOND = pipeline(stage("a"), stage("b", "a"), stage("c", "a"), stage("d", "b", "c"))


def condition(status: PipelineRunStatus) -> Any:
    return find_condition(status.conditions, CONDITION_SUCCEEDED)


def test_dry_run_all_accepted_succeeds() -> None:
    plan = decide(facts(DIAMOND, run_spec={"dryRun": True}), T0)
    record_create_results(plan, {s: None for s in "abcd"}, at(1))
    assert plan.status.phase == RunPhase.SUCCEEDED
    cond = condition(plan.status)
    assert (cond.status, cond.reason) == (ConditionStatus.TRUE, reasons.DRY_RUN_SUCCEEDED)
    assert "all 4 stage Jobs accepted" in cond.message
    assert set(phases(plan).values()) == {P}
    assert all("accepted" in (cp.message or "") for cp in (plan.status.stages or {}).values())
    assert reasons_of(plan) == [reasons.DRY_RUN_SUCCEEDED]
    assert plan.status.completion_time == at(1)


def test_dry_run_rejections_fail_the_run_naming_each_stage() -> None:
    plan = decide(facts(DIAMOND, run_spec={"dryRun": True}), T0)
    record_create_results(plan, {"a": None, "b": "quota exceeded", "c": None,
                                 "d": "invalid image"}, at(1))
    assert plan.status.phase == RunPhase.FAILED
    cond = condition(plan.status)
    assert (cond.status, cond.reason) == (ConditionStatus.FALSE, reasons.DRY_RUN_FAILED)
    assert cond.message == "b: quota exceeded; d: invalid image"
    assert phases(plan) == {"a": P, "b": F, "c": P, "d": F}
    assert "quota exceeded" in ((plan.status.stages or {})["b"].message or "")
    assert reasons_of(plan) == [reasons.DRY_RUN_FAILED]


def test_a_finished_dry_run_is_left_alone() -> None:
    f = facts(DIAMOND, run_spec={"dryRun": True})
    plan = decide(f, T0)
    record_create_results(plan, {s: None for s in "abcd"}, at(1))
    again = decide(step(f, plan, now=at(5)), at(5))
    assert again.create_jobs == [] and not again.dry_run
    assert to_k8s(again.status) == to_k8s(plan.status)


def test_rejected_job_fails_the_stage_and_asks_for_another_pass() -> None:
    f = facts(DIAMOND)
    plan = decide(f, T0)
    record_create_results(plan, {"a": "admission webhook denied"}, at(1))
    cp = (plan.status.stages or {})["a"]
    assert cp.phase == F and "admission webhook denied" in (cp.message or "")
    assert cp.finish_time == at(1)
    assert plan.requeue_after == 0.0
    assert reasons.STAGE_FAILED in reasons_of(plan)
    # The next pass settles the run: the dependants are skipped, the run fails.
    nxt = decide(step(f, plan, now=at(2)), at(2))
    assert nxt.status.phase == RunPhase.FAILED
    assert phases(nxt) == {"a": F, "b": SKIP, "c": SKIP, "d": SKIP}


def test_all_accepted_changes_nothing() -> None:
    plan = decide(facts(DIAMOND), T0)
    before = to_k8s(plan.status)
    record_create_results(plan, {"a": None}, at(1))
    assert to_k8s(plan.status) == before
    assert plan.requeue_after is None


def test_invalid_spec_fails_the_run_naming_the_field() -> None:
    body = {"metadata": {"name": "r", "generation": 4}, "spec": {}}
    plan = decide_invalid_spec(body, "spec.params.n: bad", T0)
    assert plan.status.phase == RunPhase.FAILED
    cond = condition(plan.status)
    assert (cond.reason, cond.message, cond.observed_generation) == \
        (reasons.INVALID_PIPELINE, "spec.params.n: bad", 4)
    assert reasons_of(plan) == [reasons.INVALID_PIPELINE]


def test_invalid_spec_of_a_finished_run_is_ignored() -> None:
    status = {"phase": "Succeeded"}
    plan = decide_invalid_spec({"metadata": {"name": "r"}, "status": status}, "bad", T0)
    assert plan.status.phase == RunPhase.SUCCEEDED and plan.events == []
