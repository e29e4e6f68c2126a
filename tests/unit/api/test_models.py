"""Model behaviour the operator relies on: aliases, defaults, cross-field rules, retry maths."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from kubedag.api import (
    Condition,
    ConditionStatus,
    FanOut,
    ParamSpec,
    PipelineRunSpec,
    PipelineSpec,
    RetryPolicy,
    RetryStrategy,
    RunPhase,
    RunProgress,
    Stage,
    StagePhase,
    StageType,
    Toleration,
    set_condition,
    to_k8s,
)
from kubedag.contract import EXIT_PERMANENT, EXIT_RETRYABLE

WORKER = "ghcr.io/kubedag/worker:0.1.0"


def test_camel_case_in_and_out() -> None:
    spec = PipelineSpec.model_validate(
        {
            "stages": [{"name": "a", "image": WORKER, "dependsOn": [], "timeoutSeconds": 5}],
            "finally": [{"name": "z", "processor": "pkg.mod:fn"}],
            "maxParallelStages": 2,
        }
    )
    assert spec.stages[0].timeout_seconds == 5
    assert spec.finally_ is not None and spec.finally_[0].processor == "pkg.mod:fn"
    dumped = to_k8s(spec)
    assert dumped["maxParallelStages"] == 2
    assert dumped["finally"][0]["name"] == "z"
    assert "params" not in dumped  # None fields are omitted
    assert [s.name for s in spec.all_stages()] == ["a", "z"]


def test_snake_case_construction_works_too() -> None:
    stage = Stage(name="a", image=WORKER, depends_on=["b"])
    assert stage.type is StageType.PROCESSOR and stage.critical is True
    assert to_k8s(stage)["dependsOn"] == ["b"]


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="dependson"):
        Stage.model_validate({"name": "a", "image": WORKER, "dependson": ["b"]})


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"name": "a", "image": WORKER, "command": ["x"], "processor": "m:f"}, "not both"),
        ({"name": "a", "command": ["x"]}, "needs an image"),
        ({"name": "a"}, "set processor, or image"),
        ({"name": "Bad_Name", "image": WORKER}, "pattern"),
        ({"name": "a" * 64, "image": WORKER}, "at most 63"),
        ({"name": "a", "processor": "not a callable"}, "pattern"),
        ({"name": "a", "image": WORKER, "resources": {"memory": "lots"}}, "pattern"),
    ],
)
def test_invalid_stages(stage: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Stage.model_validate(stage)


def test_quantities() -> None:
    for good in ["500m", "2", "1.5", "512Mi", "1Gi", "1e3", "100k"]:
        Stage.model_validate({"name": "a", "image": WORKER, "resources": {"cpu": good}})
    stage = Stage.model_validate({"name": "a", "image": WORKER, "resources": {"gpu": 1}})
    assert stage.resources is not None and stage.resources.gpu_resource_name == "nvidia.com/gpu"


def test_fan_out_needs_exactly_one_source() -> None:
    assert FanOut.model_validate({"itemsFrom": "$(params.files)"}).batch_size == 1
    with pytest.raises(ValidationError, match="exactly one"):
        FanOut.model_validate({})
    with pytest.raises(ValidationError, match="exactly one"):
        FanOut.model_validate({"items": [1], "itemsFrom": "$(params.files)"})
    with pytest.raises(ValidationError, match="pattern"):
        FanOut.model_validate({"itemsFrom": "params.files"})


def test_param_default_must_match_type() -> None:
    assert ParamSpec(name="n", type="int", default=3).required is False  # type: ignore[arg-type]
    assert ParamSpec(name="n").required is True
    with pytest.raises(ValidationError, match="not of type int"):
        ParamSpec.model_validate({"name": "n", "type": "int", "default": True})
    with pytest.raises(ValidationError, match="not of type array"):
        ParamSpec.model_validate({"name": "n", "type": "array", "default": "a"})


def test_toleration_exists_has_no_value() -> None:
    Toleration.model_validate({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"})
    with pytest.raises(ValidationError, match="Exists"):
        Toleration.model_validate({"key": "gpu", "operator": "Exists", "value": "x"})


def test_run_needs_exactly_one_pipeline() -> None:
    PipelineRunSpec.model_validate({"pipelineRef": {"name": "p"}, "params": {"x": [1]}})
    with pytest.raises(ValidationError, match="exactly one"):
        PipelineRunSpec.model_validate({})
    with pytest.raises(ValidationError, match="exactly one"):
        PipelineRunSpec.model_validate(
            {
                "pipelineRef": {"name": "p"},
                "pipelineSpec": {"stages": [{"name": "a", "image": WORKER}]},
            }
        )


def test_retryable_exit_codes() -> None:
    default = RetryPolicy(limit=3)
    assert default.is_retryable(1) and default.is_retryable(EXIT_RETRYABLE)
    assert not default.is_retryable(EXIT_PERMANENT) and not default.is_retryable(0)
    assert default.is_retryable(None)  # evicted or lost: no exit code
    only_75 = RetryPolicy(limit=3, retryable_exit_codes=[EXIT_RETRYABLE])
    assert only_75.is_retryable(75) and not only_75.is_retryable(1)


def test_retry_delays() -> None:
    exponential = RetryPolicy(initial_delay_seconds=10, factor=2, max_delay_seconds=60)
    assert [exponential.delay_seconds(n) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    linear = RetryPolicy(strategy=RetryStrategy.LINEAR, initial_delay_seconds=5)
    assert [linear.delay_seconds(n) for n in (1, 2, 3)] == [5, 10, 15]
    fixed = RetryPolicy(strategy=RetryStrategy.FIXED, initial_delay_seconds=7)
    assert fixed.delay_seconds(100) == 7
    assert exponential.delay_seconds(10_000) == 60  # no overflow


def test_phases() -> None:
    assert StagePhase.SKIPPED.done and not StagePhase.FAILED.done
    assert StagePhase.FAILED.finished and not StagePhase.RETRYING.finished
    assert RunPhase.CANCELLED.finished and not RunPhase.PAUSED.finished
    assert RunProgress.of(1, 3).percent == 33 and RunProgress.of(0, 0).percent == 0


def test_set_condition_keeps_transition_time_while_status_is_unchanged() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    t1 = datetime(2024, 1, 2, tzinfo=UTC)

    def succeeded(status: ConditionStatus, reason: str, at: datetime) -> Condition:
        return Condition(type="Succeeded", status=status, reason=reason, last_transition_time=at)

    conditions = set_condition([], succeeded(ConditionStatus.UNKNOWN, "Running", t0))
    conditions = set_condition(conditions, succeeded(ConditionStatus.UNKNOWN, "StageRetrying", t1))
    assert conditions[0].last_transition_time == t0 and conditions[0].reason == "StageRetrying"
    conditions = set_condition(conditions, succeeded(ConditionStatus.TRUE, "Succeeded", t1))
    assert len(conditions) == 1 and conditions[0].last_transition_time == t1
    assert to_k8s(conditions[0])["lastTransitionTime"] == "2024-01-02T00:00:00Z"
