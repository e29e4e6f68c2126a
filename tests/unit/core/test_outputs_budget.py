"""A stage's outputs must fit its share of the run's status, or the stage fails saying so."""

from __future__ import annotations

from kubedag.api import StagePhase
from kubedag.core.decide import decide
from tests.unit.core.factories import at, facts, job, phases, pipeline, pod, stage, step


def _finish_with(outputs: dict[str, object], stages: int) -> tuple[StagePhase, str | None]:
    spec = pipeline(stage("big"), *(stage(f"s{i}") for i in range(stages - 1)))
    first = facts(spec)
    plan = decide(first, at(0))
    second = step(first, plan, now=at(1), jobs=[job("big")], pods=[pod("big", outputs=outputs)])
    result = decide(second, at(1))
    checkpoint = (result.status.stages or {})["big"]
    return phases(result)["big"], checkpoint.message


def test_small_outputs_are_kept() -> None:
    assert _finish_with({"pages": 3}, stages=3) == (StagePhase.SUCCEEDED, None)


def test_outputs_over_the_per_stage_share_fail_the_stage_with_the_sizes() -> None:
    # 1,000 stages share 512 KiB: 524 bytes each.
    phase, message = _finish_with({"blob": "x" * 600}, stages=1000)
    assert phase == StagePhase.FAILED
    assert message is not None and "may report at most 524 bytes" in message


def test_a_small_pipeline_still_allows_the_full_termination_message() -> None:
    phase, _ = _finish_with({"blob": "x" * 3000}, stages=2)
    assert phase == StagePhase.SUCCEEDED
