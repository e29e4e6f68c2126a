"""A local run of a pipeline that names a Kueue queue: there is no Kueue locally, so its
stages start at once, and the run says so up front."""

from __future__ import annotations

from kubedag.api import RunPhase
from tests.unit.local.support import local, reporting


def test_a_queued_pipeline_runs_locally_at_once_and_says_kueue_is_ignored() -> None:
    result = local([reporting("train", {"loss": 0.5}, resources={"gpu": 1})],
                   spec={"queueName": "team-a", "priorityClassName": "high"},
                   defaults={"queueName": "shared"})
    assert result.status.phase == RunPhase.SUCCEEDED
    train = (result.status.stages or {})["train"]
    assert train.outputs == {"loss": 0.5}
    assert train.queue_seconds is None and train.queued_time is None
    assert "defaults.queueName: there is no Kueue locally; stages start at once" in result.ignored
    assert "queueName team-a: there is no Kueue locally; stages start at once" in result.ignored
