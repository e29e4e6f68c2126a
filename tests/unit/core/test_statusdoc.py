"""status_document is to_k8s(status), with the parts that did not change shared, not redone."""

from __future__ import annotations

from kubedag.api import PipelineRunStatus, StageCheckpoint, StagePhase, to_k8s
from kubedag.core.decide import decide
from kubedag.core.mergepatch import merge_patch
from kubedag.core.statusdoc import status_document
from tests.unit.core.factories import at, facts, pipeline, pod, stage, step


def test_it_equals_the_plain_serialisation_and_shares_unchanged_parts() -> None:
    spec = pipeline(stage("a"), stage("b", "a"), stage("c", "a"))
    f = facts(spec)
    first = decide(f, at(0))
    f = step(f, first, now=at(5), pods=[pod("a", outputs={"n": 1})])
    second = decide(f, at(5))
    before, after = status_document(first.status), status_document(second.status)
    assert before == to_k8s(first.status) and after == to_k8s(second.status)
    # The snapshot did not change: one document for both passes; a changed stage is new.
    assert after["pipelineSpec"] is before["pipelineSpec"]
    assert after["stages"]["a"] is not before["stages"]["a"]
    patch = merge_patch(before, after)
    assert "pipelineSpec" not in patch and set(patch["stages"]) == {"a", "b", "c"}


def test_a_checkpoint_keeps_its_document_while_it_is_the_same_object() -> None:
    cp = StageCheckpoint(phase=StagePhase.SUCCEEDED, outputs={"k": "v"})
    one = status_document(PipelineRunStatus(stages={"x": cp}))
    two = status_document(PipelineRunStatus(stages={"x": cp, "y": StageCheckpoint()}))
    assert two["stages"]["x"] is one["stages"]["x"]
    assert merge_patch(one, two) == {"stages": {"y": {"phase": "Pending"}}}
