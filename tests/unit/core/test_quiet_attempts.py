"""A pass skips the attempts whose checkpoint, Job and pods are the very objects of an earlier
pass that found nothing to change (kubedag.core.decide._quiet_attempts); anything new about
them, or a verdict that depends on the clock, is judged again."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from kubedag.api import StagePhase
from kubedag.core import decide as decide_module
from kubedag.core import reasons
from kubedag.core.decide import decide
from kubedag.core.memo import SameInputs
from kubedag.core.observe import attempt_outcome

from .factories import T0, at, facts, job, phases, pipeline, pod, stage, step

WIDE = pipeline(stage("src"), *(stage(f"m{i}", "src") for i in range(5)))


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Jobs decide() passes to attempt_outcome, in order."""
    calls: list[str] = []

    def counting(job_: Any, pods: Any, **kwargs: Any) -> Any:
        calls.append(job_.name if job_ is not None else pods[0].job)
        return attempt_outcome(job_, pods, **kwargs)

    monkeypatch.setattr(decide_module, "attempt_outcome", counting)
    return calls


def running_wide() -> tuple[Any, Any]:
    """WIDE with its five middle stages running (Jobs seen, pods running)."""
    f = facts(WIDE)
    plan = decide(f, at(0))
    f = step(f, plan, now=at(1), pods=[pod("src")])
    plan = decide(f, at(1))
    jobs = [job(f"m{i}") for i in range(5)]
    pods = [pod(f"m{i}", phase="Running") for i in range(5)]
    f = step(f, plan, now=at(2), jobs=jobs, pods=pods)
    return f, decide(f, at(2))


def test_unchanged_attempts_are_not_judged_again(judged: list[str]) -> None:
    f, plan = running_wide()
    assert {phases(plan)[f"m{i}"] for i in range(5)} == {StagePhase.RUNNING}
    judged.clear()
    again = decide(step(f, plan, now=at(3), pods=f.pods), at(3))
    assert judged == []
    assert again.status.stages == plan.status.stages
    assert not again.create_jobs


def test_a_changed_pod_is_judged_and_ends_its_stage(judged: list[str]) -> None:
    f, plan = running_wide()
    judged.clear()
    pods = [*f.pods[:2], pod("m2"), *f.pods[3:]]  # m2's pod succeeded: a new object
    after = decide(step(f, plan, now=at(3), pods=pods), at(3))
    assert [name.rsplit("-", 2)[-2] for name in judged] == ["m2"]
    assert phases(after)["m2"] == StagePhase.SUCCEEDED
    assert {phases(after)[f"m{i}"] for i in (0, 1, 3, 4)} == {StagePhase.RUNNING}


def test_an_equal_but_new_summary_is_judged_again(judged: list[str]) -> None:
    f, plan = running_wide()
    judged.clear()
    pods = [replace(p) for p in f.pods]
    decide(step(f, plan, now=at(3), pods=pods), at(3))
    assert len(judged) == 5


def test_a_start_failure_is_judged_on_every_pass_and_fails_after_its_grace() -> None:
    grace = timedelta(seconds=10)
    f = replace(facts(pipeline(stage("a"))), start_failure_grace=grace)
    plan = decide(f, at(0))
    stuck = replace(pod("a", phase="Pending"), started=None, waiting_reason="ErrImagePull",
                    waiting_message="pull access denied", waiting_since=T0)
    f = step(f, plan, now=at(1), jobs=[job("a")], pods=[stuck])
    plan = decide(f, at(1))
    # Twice within the grace (the first pass records the kubelet's message, the second finds
    # nothing to change), then with the same objects after it: the clock alone changes the
    # verdict.
    f = step(f, plan, now=at(5), pods=[stuck])
    plan = decide(f, at(5))
    assert phases(plan)["a"] == StagePhase.RUNNING
    f = step(f, plan, now=at(11), pods=[stuck])
    plan = decide(f, at(11))
    checkpoint = (plan.status.stages or {})["a"]
    assert (checkpoint.phase, checkpoint.reason) == (StagePhase.FAILED, reasons.IMAGE_PULL_FAILED)


class Held:
    """Something weakly referable, as the checkpoints are."""


def test_same_inputs_compares_identity_and_forgets_dead_objects() -> None:
    memo: SameInputs[Held] = SameInputs()
    owner, first, second = Held(), Held(), Held()
    assert not memo.unchanged(owner, (first,))
    memo.note(owner, (first, second))
    assert memo.unchanged(owner, (first, second))
    assert not memo.unchanged(owner, (first,))
    assert not memo.unchanged(owner, (first, Held()))
    assert not memo.unchanged(Held(), (first, second))
    del owner
    gc.collect()
    assert len(memo) == 0
