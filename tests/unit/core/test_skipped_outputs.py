"""A stage that reads outputs of a skipped stage is skipped too (as in Tekton), not failed."""

from __future__ import annotations

from kubedag.api import StagePhase
from kubedag.core.decide import decide
from tests.unit.core.factories import at, facts, job, phases, pipeline, pod, stage, step


def _run(consumer: dict[str, object]) -> dict[str, StagePhase]:
    spec = pipeline(
        stage("scan"),
        stage("ocr", "scan", when="stages.scan.outputs.scanned > 0"),
        consumer,
        stage("report", consumer["name"]),  # type: ignore[arg-type]
    )
    first = facts(spec)
    plan = decide(first, at(0))
    f = step(first, plan, now=at(1), jobs=[job("scan")],
             pods=[pod("scan", outputs={"scanned": 0})])
    plan = decide(f, at(1))
    return phases(plan)


def test_consumer_of_a_skipped_stages_outputs_in_args_is_skipped() -> None:
    result = _run(stage("merge", "ocr", args=["$(stages.ocr.outputs.pages)"]))
    assert result["ocr"] == StagePhase.SKIPPED
    assert result["merge"] == StagePhase.SKIPPED
    # A consumer skipped this way does not cascade: its dependants still run.
    assert result["report"] == StagePhase.RUNNING


def test_consumer_of_a_skipped_stages_outputs_in_when_is_skipped() -> None:
    result = _run(stage("merge", "ocr", when="stages.ocr.outputs.pages > 1"))
    assert result["merge"] == StagePhase.SKIPPED


def test_stage_that_only_depends_on_a_skipped_stage_runs() -> None:
    result = _run(stage("merge", "ocr"))
    assert result["merge"] == StagePhase.RUNNING
