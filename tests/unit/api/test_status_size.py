"""A 1,000-stage run's status must stay far below etcd's 1.5 MiB object limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kubedag.api import (
    FanOutStatus,
    PipelineRunStatus,
    PipelineSpec,
    ResourceUsage,
    RunPhase,
    RunProgress,
    StageCheckpoint,
    StagePhase,
    to_k8s,
)

STAGES = 1000
KIB = 1024


def finished_checkpoint(i: int, start: datetime) -> StageCheckpoint:
    return StageCheckpoint(
        phase=StagePhase.SUCCEEDED,
        attempts=1,
        job=f"documents-2024-06-stage-{i:04d}-1-a1b2c",
        start_time=start,
        finish_time=start + timedelta(seconds=42),
        # Per the field docs, exitCode and progress are unset once a stage has succeeded.
        outputs={"pages": 12, "chunks": i},
        usage=ResourceUsage(cpu_seconds=12.5, peak_rss_bytes=123_456_789),
        fan_out=FanOutStatus(succeeded=4, failed=0, total=4) if i % 10 == 0 else None,
    )


def big_status() -> PipelineRunStatus:
    start = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    return PipelineRunStatus(
        phase=RunPhase.RUNNING,
        start_time=start,
        progress=RunProgress.of(STAGES, STAGES),
        stages={f"stage-{i:04d}": finished_checkpoint(i, start) for i in range(STAGES)},
    )


def test_unset_fields_are_not_serialised() -> None:
    assert to_k8s(StageCheckpoint()) == {"phase": "Pending"}


def test_thousand_stage_status_is_compact() -> None:
    size = len(json.dumps(to_k8s(big_status()), separators=(",", ":")))
    assert size <= 256 * KIB, f"{size / KIB:.0f} KiB"


def test_with_the_pipeline_snapshot_it_still_fits_etcd() -> None:
    spec = PipelineSpec.model_validate(
        {
            "defaults": {"image": "ghcr.io/kubedag/worker:0.1.0"},
            "stages": [
                {
                    "name": f"stage-{i:04d}",
                    "processor": "kubedag.worker.processors.documents:normalize",
                    "dependsOn": [f"stage-{i - 1:04d}"] if i else [],
                    "resources": {"cpu": "500m", "memory": "512Mi"},
                }
                for i in range(STAGES)
            ],
        }
    )
    status = big_status().model_copy(update={"pipeline_spec": spec})
    size = len(json.dumps(to_k8s(status), separators=(",", ":")))
    assert size <= 1024 * KIB, f"{size / KIB:.0f} KiB"
