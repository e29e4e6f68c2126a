"""resumeFrom reuses a stage only when its cache key is unchanged: a new image, new args, a
param it reads or upstream outputs that may change make it run again, and an Event says why."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubedag.api import StageCheckpoint, StagePhase
from kubedag.core import reasons
from kubedag.core.decide import decide
from kubedag.core.plan import Plan
from tests.unit.core.factories import T0, at, facts, pipeline, stage, started

DONE = {name: StageCheckpoint(phase=StagePhase.SUCCEEDED, attempts=1, job=f"old-{name}-1",
                              start_time=T0, finish_time=at(5), outputs={"n": 1})
        for name in ("a", "b", "c")}
BEFORE = pipeline(stage("a", args=["--lang", "$(params.lang)"]), stage("b", "a"),
                  stage("c", args=["$(stages.b.outputs.n)"], dependsOn=["b"]),
                  params=[{"name": "lang", "default": "en"}])


def resume(after: Any, *, params: dict[str, Any] | None = None) -> Plan:
    f = facts(after, run_spec={"resumeFrom": "old", **({"params": params} if params else {})},
              resume_checkpoints=DONE)
    return decide(replace(f, resume_pipeline=BEFORE, resume_params={"lang": "en"}), at(100))


def changed(plan: Plan) -> list[str]:
    return [e.message for e in plan.events if e.reason == reasons.STAGE_CHANGED]


def test_an_unchanged_pipeline_reuses_every_stage() -> None:
    plan = resume(BEFORE)
    assert started(plan) == [] and changed(plan) == []
    assert {cp.reason for cp in (plan.status.stages or {}).values()} == {reasons.STAGE_REUSED}


def test_a_new_image_runs_the_stage_and_what_reads_its_outputs_again() -> None:
    after = pipeline(stage("a", args=["--lang", "$(params.lang)"]),
                     stage("b", "a", image="busybox:1.37"),
                     stage("c", args=["$(stages.b.outputs.n)"], dependsOn=["b"]),
                     params=[{"name": "lang", "default": "en"}])
    plan = resume(after)
    assert started(plan) == ["b"]
    assert (plan.status.stages or {})["a"].reason == reasons.STAGE_REUSED
    assert "c" not in (plan.status.stages or {})
    [b, c] = changed(plan)
    assert b.startswith("Stage b runs again although it succeeded in run old: image changed: "
                        "'busybox' → 'busybox:1.37'")
    assert c.endswith("upstream b runs again")


def test_a_changed_param_runs_the_stage_that_reads_it() -> None:
    plan = resume(BEFORE, params={"lang": "de"})
    assert started(plan) == ["a"]
    [a, *_] = changed(plan)
    assert "param 'lang' changed: 'en' → 'de'" in a and "args changed" in a


def test_changed_args_and_a_new_stage_run() -> None:
    after = pipeline(stage("a", args=["--lang", "$(params.lang)", "--fast"]), stage("b", "a"),
                     stage("c", args=["$(stages.b.outputs.n)"], dependsOn=["b"]),
                     stage("d"), params=[{"name": "lang", "default": "en"}])
    plan = resume(after)
    assert sorted(started(plan)) == ["a", "d"]
    assert any("args changed" in m for m in changed(plan))


def test_without_the_old_pipeline_stages_are_reused_by_name_as_before() -> None:
    f = facts(pipeline(stage("a", image="other")), run_spec={"resumeFrom": "old"},
              resume_checkpoints=DONE)
    plan = decide(f, at(100))
    assert started(plan) == [] and (plan.status.stages or {})["a"].reason == reasons.STAGE_REUSED
