"""core.estimate: critical path, replayed wall time, peaks, past-run medians and node fit."""

from __future__ import annotations

from typing import Any

import pytest

from kubedag.api import PipelineRunStatus, PipelineSpec, RunPhase
from kubedag.core.dag import DagError
from kubedag.core.estimate import (
    NodeCapacity,
    estimate,
    median_durations,
    stage_seconds,
    unschedulable_stages,
)

GI = 2.0**30


def stage(name: str, *deps: str, seconds: int | None = None, cpu: str | None = None,
          memory: str | None = None, gpu: int | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": "x", **fields}
    if deps:
        body["dependsOn"] = list(deps)
    if seconds is not None:
        body["estimatedSeconds"] = seconds
    resources = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("gpu", gpu)) if v}
    if resources:
        body["resources"] = resources
    return body


def spec(*stages: dict[str, Any], **fields: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"stages": list(stages), **fields})


DIAMOND = (
    stage("a", seconds=10, cpu="1", memory="1Gi"),
    stage("b", "a", seconds=30, cpu="2", memory="2Gi"),
    stage("c", "a", seconds=5, cpu="500m", memory="512Mi", gpu=1),
    stage("d", "b", "c", seconds=1),
)


def test_critical_path_and_peaks_of_a_diamond() -> None:
    result = estimate(spec(*DIAMOND))
    assert (result.critical_path_seconds, result.critical_path) == (41.0, ["a", "b", "d"])
    assert result.wall_seconds == 41.0
    assert (result.peak_cpu, result.peak_memory_bytes, result.peak_gpu, result.peak_pods) == (
        2.5, 2.5 * GI, 1.0, 2)
    assert result.widest == ["b", "c"]
    assert result.unknown == []


def test_max_parallel_stages_serialises_and_priority_goes_first() -> None:
    stages = [stage("root", seconds=1), stage("low", "root", seconds=10, cpu="1"),
              stage("high", "root", seconds=20, cpu="4", priority=5)]
    result = estimate(spec(*stages, maxParallelStages=1))
    assert result.critical_path_seconds == 21.0  # the lower bound ignores the limit
    assert result.wall_seconds == 31.0
    assert (result.peak_pods, result.peak_cpu) == (1, 4.0)
    unlimited = estimate(spec(*stages))
    assert (unlimited.wall_seconds, unlimited.peak_cpu) == (21.0, 5.0)


def test_unknown_durations_count_as_zero_and_are_listed() -> None:
    result = estimate(spec(stage("a", seconds=5), stage("b", "a"), stage("c", "a", cpu="1")))
    assert result.unknown == ["b", "c"]
    assert result.critical_path_seconds == 5.0
    assert result.peak_pods == 2  # b and c still overlap at the moment they start
    assert "no duration known (counted as 0 s): b, c" in str(result)


def test_history_wins_over_estimated_seconds_and_finally_comes_last() -> None:
    pipeline = spec(stage("a", seconds=5), stage("b", "a", seconds=5),
                    **{"finally": [stage("report", seconds=2)]})
    result = estimate(pipeline, history={"b": 60.0})
    assert result.sources == {"a": "estimatedSeconds", "b": "history",
                              "report": "estimatedSeconds"}
    assert (result.critical_path_seconds, result.critical_path) == (67.0, ["a", "b", "report"])
    assert result.wall_seconds == 67.0


def test_fan_out_counts_one_pod_per_batch_up_to_parallelism() -> None:
    items = stage("many", seconds=1, cpu="1", fanOut={"items": list(range(10)), "batchSize": 3})
    capped = stage("capped", seconds=1, cpu="1",
                   fanOut={"items": list(range(10)), "parallelism": 2})
    from_param = stage("param", seconds=1, fanOut={"itemsFrom": "$(params.files)"})
    result = estimate(spec(items, capped, from_param,
                           params=[{"name": "files", "type": "array"}]))
    assert (result.peak_pods, result.peak_cpu) == (4 + 2 + 1, 6.0)
    assert any("param 'files'" in note for note in result.notes)
    with_default = estimate(spec(from_param, params=[
        {"name": "files", "type": "array", "default": ["a", "b", "c"]}]))
    assert with_default.peak_pods == 3


def test_a_cycle_cannot_be_estimated() -> None:
    with pytest.raises(DagError, match="dependency cycle"):
        estimate(spec(stage("a", "b"), stage("b", "a")))


NODES = [
    NodeCapacity("small", {"pool": "cpu"}, {"cpu": 4.0, "memory": 16 * GI}),
    NodeCapacity("big", {"pool": "cpu"}, {"cpu": 32.0, "memory": 128 * GI}),
    NodeCapacity("gpu-node", {"pool": "gpu"},
                 {"cpu": 8.0, "memory": 64 * GI, "nvidia.com/gpu": 2.0}),
]


def test_stages_that_fit_no_node_name_the_largest_node() -> None:
    pipeline = spec(
        stage("fits", cpu="30", memory="100Gi"),
        stage("too-big", cpu="64", memory="1Gi"),
        stage("gpus", gpu=4),
        stage("pinned", cpu="6", nodeSelector={"pool": "cpu"}),
        stage("pinned-ok", cpu="6", nodeSelector={"pool": "gpu"}),
        stage("nowhere", nodeSelector={"pool": "tpu"}),
    )
    found = {u.stage: u for u in unschedulable_stages(pipeline, NODES)}
    assert sorted(found) == ["gpus", "nowhere", "too-big"]
    assert found["too-big"].largest_node == "big"
    assert str(found["too-big"]) == ("stage 'too-big' requests cpu 64, memory 1Gi, more than "
                                     "any node allocates; the largest node, big, has cpu 32, "
                                     "memory 128Gi")
    assert found["gpus"].largest_node == "gpu-node"
    assert "nvidia.com/gpu 2" in str(found["gpus"])
    assert str(found["nowhere"]) == ("stage 'nowhere' (requests nothing): no node has the labels "
                                     "{'pool': 'tpu'} of its nodeSelector")


def test_the_defaults_node_selector_applies_and_a_stage_overrides_it() -> None:
    pipeline = spec(stage("a", cpu="6"), stage("b", cpu="6", nodeSelector={"pool": "gpu"}),
                    defaults={"nodeSelector": {"pool": "cpu"}})
    assert [u.stage for u in unschedulable_stages(pipeline, NODES)] == []
    small_only = [NODES[0], NODES[2]]
    assert [u.stage for u in estimate(pipeline, nodes=small_only).unschedulable] == ["a"]


def _status(phase: str, stages: dict[str, tuple[str, int, int]]) -> PipelineRunStatus:
    return PipelineRunStatus.model_validate({"phase": phase, "stages": {
        name: {"phase": p, "startTime": f"2024-06-01T12:00:{start:02d}Z",
               "finishTime": f"2024-06-01T12:00:{end:02d}Z"}
        for name, (p, start, end) in stages.items()}})


def test_durations_of_past_runs_and_their_median() -> None:
    runs = [
        _status("Succeeded", {"a": ("Succeeded", 0, 10), "b": ("Succeeded", 10, 40)}),
        _status("Failed", {"a": ("Succeeded", 0, 20), "b": ("Failed", 20, 21)}),
        _status("Succeeded", {"a": ("Succeeded", 0, 12), "b": ("Skipped", 12, 12)}),
    ]
    assert runs[0].phase is RunPhase.SUCCEEDED
    per_run = [stage_seconds(s) for s in runs]
    assert per_run == [{"a": 10.0, "b": 30.0}, {"a": 20.0}, {"a": 12.0}]
    assert median_durations(per_run) == {"a": 12.0, "b": 30.0}
