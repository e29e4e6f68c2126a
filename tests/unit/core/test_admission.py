"""The operator-wide stage budget: room is handed out by priority, then age."""

from __future__ import annotations

from dataclasses import replace

from kubedag.core.admission import Claim, room_for
from kubedag.core.decide import decide
from tests.unit.core.factories import T0, at, facts, pipeline, stage

LOW_OLD = Claim(("ns", "low-old"), priority=0, created=at(0), waiting=3)
LOW_NEW = Claim(("ns", "low-new"), priority=0, created=at(10), waiting=2)
HIGH_NEW = Claim(("ns", "high"), priority=5, created=at(20), waiting=2)


def test_no_limit_means_no_budget() -> None:
    assert room_for(None, 100, LOW_OLD, [HIGH_NEW]) is None


def test_higher_priority_claims_are_served_first() -> None:
    claims = [LOW_OLD, LOW_NEW, HIGH_NEW]
    # 4 free slots: the high-priority run's 2 come first, then 2 of the oldest low run's 3.
    assert room_for(10, 6, HIGH_NEW, claims) == 4
    assert room_for(10, 6, LOW_OLD, claims) == 2
    assert room_for(10, 6, LOW_NEW, claims) == 0


def test_a_full_budget_leaves_no_room() -> None:
    assert room_for(4, 4, HIGH_NEW, [LOW_OLD]) == 0
    assert room_for(4, 9, HIGH_NEW, []) == 0


def test_decide_starts_only_the_room_and_reports_the_rest_as_waiting() -> None:
    spec = pipeline(stage("a"), stage("b"), stage("c", priority=5), stage("d"))
    plan = decide(replace(facts(spec), stage_room=2), T0)
    started = [m["metadata"]["labels"]["kubedag.io/stage"] for m in plan.create_jobs]
    assert started == ["c", "a"]  # stage priority first, then declaration order
    assert plan.waiting_for_room == 2
    message = plan.status.conditions[0].message  # type: ignore[index]
    assert "2 ready stage(s) waiting" in message
