"""The stage budget's bookkeeping: who waits, and who is woken when room frees up."""

from __future__ import annotations

from datetime import UTC, datetime

from kubedag.shell.budget import StageBudget

T = datetime(2024, 1, 1, tzinfo=UTC)
LOW, HIGH = ("ns", "low"), ("ns", "high")


def test_without_a_limit_nothing_is_tracked() -> None:
    budget = StageBudget(None)
    assert budget.room(LOW, 0, T) is None
    assert budget.settle(LOW, 0, T, running=5, waiting=3) == []


def test_freed_room_goes_to_the_run_first_in_line() -> None:
    budget = StageBudget(2)
    assert budget.room(LOW, 0, T) == 2
    assert budget.settle(LOW, 0, T, running=2, waiting=2) == []
    assert budget.room(HIGH, 9, T) == 0
    assert budget.settle(HIGH, 9, T, running=0, waiting=2) == []
    # One of LOW's stages finishes: both waiting runs are woken, HIGH first...
    assert budget.settle(LOW, 0, T, running=1, waiting=2) == [HIGH]
    # ...and HIGH's claim keeps LOW from taking the freed slot.
    assert budget.room(LOW, 0, T) == 0
    assert budget.room(HIGH, 9, T) == 1


def test_a_deleted_run_frees_its_room() -> None:
    budget = StageBudget(1)
    budget.settle(LOW, 0, T, running=1, waiting=0)
    budget.settle(HIGH, 1, T, running=0, waiting=1)
    assert budget.forget(LOW) == [HIGH]
    assert budget.room(HIGH, 1, T) == 1
