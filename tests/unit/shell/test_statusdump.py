"""The status serialised piecewise equals the status serialised whole, pass after pass."""

from __future__ import annotations

from datetime import timedelta

from kubedag.api import StagePhase, to_k8s
from kubedag.core.decide import decide
from kubedag.shell.statusdump import StatusDumps
from tests.unit.core.factories import T0, facts, pipeline, pod, stage, step


def test_each_pass_serialises_as_a_whole_dump_would() -> None:
    spec = pipeline(stage("a"), stage("b", "a"), stage("c", "a"), stage("d", "b", "c"),
                    stage("e", "d", retry={"limit": 1}))
    dumps, now = StatusDumps(), T0
    f = facts(spec)
    plan = decide(f, now)
    outcomes = {"e": pod("e", phase="Failed", exit_code=1)}
    passes = 0
    while not plan.status.phase.finished and passes < 30:
        assert dumps.dump("uid", plan.status) == to_k8s(plan.status)
        running = [(n, cp) for n, cp in (plan.status.stages or {}).items()
                   if cp.phase == StagePhase.RUNNING]
        ended = [outcomes.pop(n, None) or pod(n, cp.attempts or 1, outputs={"stage": n})
                 for n, cp in running]
        now += timedelta(seconds=10)
        f = step(f, plan, now=now, pods=ended)
        plan = decide(f, now)
        passes += 1
    assert plan.status.phase.finished and passes > 4
    assert dumps.dump("uid", plan.status) == to_k8s(plan.status)


def test_a_checkpoint_replaced_is_serialised_again_and_the_rest_reused() -> None:
    dumps = StatusDumps()
    plan = decide(facts(pipeline(stage("a"), stage("b"))), T0)
    first = dumps.dump("uid", plan.status)
    stages = dict(plan.status.stages or {})
    stages["a"] = stages["a"].model_copy(update={"message": "changed"})
    plan.status.stages = stages
    second = dumps.dump("uid", plan.status)
    assert second["stages"]["a"]["message"] == "changed"
    assert second["stages"]["b"] is first["stages"]["b"]
    assert second["pipelineSpec"] is first["pipelineSpec"]
    dumps.forget("uid")
    assert dumps.dump("uid", plan.status) == second
