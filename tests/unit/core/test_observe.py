"""Job and pod summaries, the termination message, and one attempt's verdict."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from kubedag.api import ResourceUsage, to_k8s
from kubedag.core.observe import (
    MAX_FANOUT_OUTPUT_BYTES,
    Outcome,
    attempt_outcome,
    is_urgent,
    parse_termination_message,
    summarize_job,
    summarize_pod,
)
from tests.unit.core.factories import T0, at, job, pod

# --- summarize_job / summarize_pod ------------------------------------------------------------


def job_body(conditions: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "run-a-2", "creationTimestamp": "2024-06-01T12:00:00Z",
                     "labels": {"kubedag.io/stage": "a", "kubedag.io/attempt": "2"}, **meta},
        "spec": {"completions": 4},
        "status": {"conditions": conditions} if conditions is not None else None,
    }


@pytest.mark.parametrize(("conditions", "finished", "reason"), [
    (None, None, None),
    ([], None, None),
    ([{"type": "Complete", "status": "True", "reason": "CompletionsReached"}],
     "Complete", "CompletionsReached"),
    ([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "late"}],
     "Failed", "DeadlineExceeded"),
    ([{"type": "Failed", "status": "False", "reason": "X"}], None, None),
    ([{"type": "Suspended", "status": "True", "reason": "JobSuspended"}], None, None),
    # Newer controllers add FailureTarget/SuccessCriteriaMet before the terminal condition.
    ([{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
      {"type": "Complete", "status": "True", "reason": "CompletionsReached"}],
     "Complete", "CompletionsReached"),
])
def test_summarize_job(conditions: list[dict[str, Any]] | None, finished: str | None,
                       reason: str | None) -> None:
    summary = summarize_job(job_body(conditions))
    assert (summary.name, summary.stage, summary.attempt) == ("run-a-2", "a", 2)
    assert summary.created == T0
    assert summary.completions == 4
    assert not summary.deleting
    assert (summary.finished, summary.reason) == (finished, reason)


def test_summarize_job_being_deleted_and_without_labels() -> None:
    body = {"metadata": {"name": "x", "deletionTimestamp": "2024-06-01T12:00:00Z"},
            "spec": {}}
    summary = summarize_job(body)
    assert summary.deleting
    assert (summary.stage, summary.attempt, summary.completions, summary.created) == \
        ("", 0, 1, None)


def pod_body(*, phase: str = "Succeeded", terminated: dict[str, Any] | None = None,
             annotations: dict[str, str] | None = None,
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "stage", "state": {}}
    if terminated is not None:
        container["state"]["terminated"] = terminated
    return {
        "metadata": {"name": "run-a-1-xyz", "annotations": annotations or {},
                     "labels": {"job-name": "run-a-1", "kubedag.io/stage": "a",
                                "kubedag.io/attempt": "1", **(labels or {})}},
        "status": {"phase": phase, "startTime": "2024-06-01T12:00:00Z",
                   "containerStatuses": [container]},
    }


def test_summarize_pod_reads_the_terminated_container() -> None:
    summary = summarize_pod(pod_body(
        phase="Failed",
        terminated={"exitCode": 75, "reason": "Error", "message": '{"error": "net"}',
                    "finishedAt": "2024-06-01T12:00:30Z"},
        annotations={"batch.kubernetes.io/job-completion-index": "3"}))
    assert (summary.job, summary.stage, summary.attempt, summary.phase) == \
        ("run-a-1", "a", 1, "Failed")
    assert (summary.exit_code, summary.terminated_reason) == (75, "Error")
    assert summary.termination_message == '{"error": "net"}'
    assert (summary.started, summary.finished) == (T0, at(30))
    assert summary.index == 3


def test_summarize_pod_index_from_label_and_new_job_name_label() -> None:
    body = pod_body(phase="Running")
    del body["metadata"]["labels"]["job-name"]
    body["metadata"]["labels"].update({"batch.kubernetes.io/job-name": "run-a-1",
                                       "batch.kubernetes.io/job-completion-index": "0"})
    summary = summarize_pod(body)
    assert (summary.job, summary.index, summary.exit_code) == ("run-a-1", 0, None)


@pytest.mark.parametrize(("annotation", "fraction", "message"), [
    (None, None, None),
    ('{"fraction": 0.5, "message": "page 5/10"}', 0.5, "page 5/10"),
    ('{"fraction": 7}', 1.0, None),  # clamped
    ('{"fraction": -1}', 0.0, None),
    ("not json", None, None),  # malformed: ignored, never fatal
    ('["a list"]', None, None),
    ('{"fraction": "lots"}', None, None),
])
def test_summarize_pod_progress(annotation: str | None, fraction: float | None,
                                message: str | None) -> None:
    annotations = {"kubedag.io/progress": annotation} if annotation else {}
    summary = summarize_pod(pod_body(phase="Running", annotations=annotations))
    assert (summary.progress, summary.progress_message) == (fraction, message)


def test_summarize_pod_with_no_status_yet() -> None:
    summary = summarize_pod({"metadata": {"name": "p"}})
    assert (summary.phase, summary.job, summary.exit_code, summary.index) == \
        ("Pending", "", None, None)


# --- parse_termination_message ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    (None, (None, None, None)),
    ("", (None, None, None)),
    ('{"outputs": {"n": 1}, "usage": {"cpuSeconds": 2}}', ({"n": 1}, {"cpuSeconds": 2}, None)),
    ('{"error": "boom"}', (None, None, "boom")),
    ('{"outputs": [1, 2], "usage": "x"}', (None, None, None)),  # wrong shapes dropped
    ("[1, 2]", (None, None, None)),
    ("Segmentation fault", (None, None, "Segmentation fault")),  # not the worker: the error
    ('{"error": ""}', (None, None, None)),
])
def test_parse_termination_message(text: str | None, expected: tuple[Any, ...]) -> None:
    assert parse_termination_message(text) == expected


def test_long_errors_are_truncated() -> None:
    assert len(parse_termination_message("x" * 5000)[2] or "") == 1024
    assert len(parse_termination_message(json.dumps({"error": "y" * 5000}))[2] or "") == 1024


# --- attempt_outcome --------------------------------------------------------------------------


def test_no_job_no_pods_is_running() -> None:
    result = attempt_outcome(None, [])
    assert result.outcome is Outcome.RUNNING and result.progress is None


def test_running_pod_reports_progress() -> None:
    result = attempt_outcome(job("a"), [pod("a", phase="Running", progress=0.4)])
    assert (result.outcome, result.progress) == (Outcome.RUNNING, 0.4)


def test_pod_success_is_trusted_before_the_job_condition() -> None:
    result = attempt_outcome(job("a"), [pod("a", outputs={"n": 2}, usage={"cpuSeconds": 1.25},
                                            finished=at(9))])
    assert result.outcome is Outcome.SUCCEEDED
    assert (result.exit_code, result.outputs, result.progress, result.finished) == \
        (0, {"n": 2}, 1.0, at(9))
    assert result.usage == {"cpuSeconds": 1.25, "peakRssBytes": 0}


def test_pod_failure_is_trusted_before_the_job_condition() -> None:
    # The Job says only "BackoffLimitExceeded"; the pod knows the exit code and the error.
    result = attempt_outcome(
        job("a", finished="Failed", reason="BackoffLimitExceeded"),
        [pod("a", phase="Failed", exit_code=65, message='{"error": "bad input"}')])
    assert (result.outcome, result.exit_code, result.message) == (Outcome.FAILED, 65, "bad input")


def test_pod_failure_without_a_message_names_the_exit_code() -> None:
    result = attempt_outcome(job("a"), [pod("a", phase="Failed", exit_code=137)])
    assert result.message == "exit code 137 (Error)"


def test_complete_job_whose_pods_are_gone_succeeds_without_outputs() -> None:
    result = attempt_outcome(job("a", finished="Complete"), [])
    assert (result.outcome, result.outputs, result.exit_code) == (Outcome.SUCCEEDED, None, 0)


@pytest.mark.parametrize(("reason", "message", "timed_out", "text"), [
    ("DeadlineExceeded", "Job was active longer than specified deadline", True,
     "stage timed out (Job was active longer than specified deadline)"),
    ("DeadlineExceeded", None, True, "stage timed out (DeadlineExceeded)"),
    ("PodFailurePolicy", "container failed", False,
     "Job failed: PodFailurePolicy: container failed"),
])
def test_failed_job_without_failed_pods(reason: str, message: str | None, timed_out: bool,
                                        text: str) -> None:
    result = attempt_outcome(job("a", finished="Failed", reason=reason, message=message), [])
    assert (result.outcome, result.timed_out, result.message) == (Outcome.FAILED, timed_out, text)
    assert result.exit_code is None  # an infrastructure failure: retryable by default


def test_fan_out_in_progress_counts_indexes_and_averages_progress() -> None:
    pods = [pod("a", index=0, outputs={"n": 0}), pod("a", index=1, phase="Running",
                                                      progress=0.5)]
    result = attempt_outcome(job("a", completions=4), pods)
    assert result.outcome is Outcome.RUNNING
    assert (result.succeeded_indexes, result.failed_indexes, result.total_indexes) == (1, 0, 4)
    assert result.progress == pytest.approx(0.5 / 4)


def test_fan_out_success_merges_outputs_and_usage_in_index_order() -> None:
    pods = [pod("a", index=i, outputs={"i": i}, usage={"cpuSeconds": 1, "peakRssBytes": 10 * i},
                finished=at(i)) for i in (2, 0, 1)]
    result = attempt_outcome(job("a", completions=3), pods)
    assert result.outcome is Outcome.SUCCEEDED
    assert result.outputs == {"i": 3, "count": 3, "results": [{"i": 0}, {"i": 1}, {"i": 2}]}
    assert result.usage == {"cpuSeconds": 3.0, "peakRssBytes": 20}
    assert result.finished == at(2)


def test_fan_out_without_outputs_and_with_huge_outputs() -> None:
    quiet = attempt_outcome(job("a", completions=2), [pod("a", index=i) for i in range(2)])
    assert quiet.outputs == {"count": 2}
    big = "x" * (MAX_FANOUT_OUTPUT_BYTES // 2)
    loud = attempt_outcome(job("a", completions=3),
                           [pod("a", index=i, outputs={"blob": big}) for i in range(3)])
    assert loud.outputs == {"count": 3, "truncated": True}


def test_fan_out_totals_the_numbers_every_index_reports() -> None:
    """`stages.extract.outputs.pages` of a fan-out stage is the total over its pods; keys that
    are missing somewhere, or not numbers everywhere, stay in `results` only."""
    reports = [{"pages": 3, "ratio": 0.5, "doc": "a", "ok": True, "count": 9},
               {"pages": 4, "ratio": 0.25, "doc": "b", "ok": True, "count": 9, "extra": 1}]
    result = attempt_outcome(job("a", completions=2),
                             [pod("a", index=i, outputs=o) for i, o in enumerate(reports)])
    assert result.outputs == {"pages": 7, "ratio": 0.75, "count": 2, "results": reports}
    big = "x" * MAX_FANOUT_OUTPUT_BYTES
    truncated = attempt_outcome(job("a", completions=2), [
        pod("a", index=i, outputs={"pages": i + 1, "blob": big}) for i in range(2)])
    assert truncated.outputs == {"pages": 3, "count": 2, "truncated": True}


def test_fan_out_one_failed_index_fails_the_attempt() -> None:
    pods = [pod("a", index=0), pod("a", index=1, phase="Failed", exit_code=1),
            pod("a", index=2, phase="Running")]
    result = attempt_outcome(job("a", completions=3), pods)
    assert (result.outcome, result.succeeded_indexes, result.failed_indexes,
            result.total_indexes) == (Outcome.FAILED, 1, 1, 3)


def test_duplicate_pods_of_one_index_count_once() -> None:
    pods = [pod("a", index=0), pod("a", index=0)]
    result = attempt_outcome(job("a", completions=2), pods)
    assert result.outcome is Outcome.RUNNING and result.succeeded_indexes == 1


# --- why a pod cannot start or did not finish ------------------------------------------------


def test_summarize_pod_reads_the_waiting_container_and_since_when_it_tries() -> None:
    body = pod_body(phase="Pending")
    body["status"]["containerStatuses"][0]["state"] = {"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope:1"'}}
    body["status"]["conditions"] = [
        {"type": "PodReadyToStartContainers", "status": "True",
         "lastTransitionTime": "2024-06-01T12:00:05Z"}]
    summary = summarize_pod(body)
    assert (summary.waiting_reason, summary.waiting_message) == (
        "ImagePullBackOff", 'Back-off pulling image "nope:1"')
    assert summary.waiting_since == at(5)
    del body["status"]["conditions"]
    assert summarize_pod(body).waiting_since == T0  # startTime
    assert summarize_pod(pod_body(phase="Running")).waiting_since is None


def test_summarize_pod_reads_deletion_and_disruption() -> None:
    body = pod_body(phase="Failed", terminated={"exitCode": 137, "reason": "Error"})
    body["metadata"]["deletionTimestamp"] = "2024-06-01T12:01:00Z"
    body["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                     "reason": "EvictionByEvictionAPI",
                                     "message": "Eviction API: evicting"}]
    summary = summarize_pod(body)
    assert summary.deleting
    assert (summary.disruption, summary.disruption_message) == (
        "EvictionByEvictionAPI", "Eviction API: evicting")
    evicted = pod_body(phase="Failed")
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    assert summarize_pod(evicted).disruption == "Evicted"
    assert summarize_pod(pod_body()).disruption is None


def test_summarize_job_failure_target_counts_as_failed() -> None:
    summary = summarize_job(job_body([{"type": "FailureTarget", "status": "True",
                                       "reason": "DeadlineExceeded", "message": "late"}]))
    assert (summary.finished, summary.reason) == ("Failed", "DeadlineExceeded")


@pytest.mark.parametrize(("pods", "job_", "outcome", "reason"), [
    ([pod("a", phase="Failed", exit_code=2)], None, Outcome.FAILED, "ExitCode"),
    ([replace(pod("a", phase="Failed", exit_code=137), terminated_reason="OOMKilled")], None,
     Outcome.FAILED, "OOMKilled"),
    ([replace(pod("a", phase="Failed"), exit_code=None)], None, Outcome.FAILED, "PodLost"),
    ([replace(pod("a", phase="Running"), disruption="PreemptionByScheduler", deleting=True)],
     None, Outcome.FAILED, "PodLost"),
    # Killed while being deleted: the Job's verdict decides.
    ([replace(pod("a", phase="Failed", exit_code=143), deleting=True)], None,
     Outcome.RUNNING, None),
    ([replace(pod("a", phase="Failed", exit_code=143), deleting=True)],
     job("a", finished="Failed", reason="DeadlineExceeded"), Outcome.FAILED, "DeadlineExceeded"),
    ([], job("a", finished="Failed", reason="BackoffLimitExceeded"), Outcome.FAILED, "PodLost"),
    ([], job("a", finished="Failed", reason="Other"), Outcome.FAILED, "JobFailed"),
])
def test_every_failure_has_a_reason(pods: list[Any], job_: Any, outcome: Outcome,
                                    reason: str | None) -> None:
    result = attempt_outcome(job_, pods)
    assert (result.outcome, result.reason) == (outcome, reason)


def test_a_container_that_cannot_start_fails_only_after_the_grace_period() -> None:
    stuck = replace(pod("a", phase="Pending"), waiting_reason="CreateContainerConfigError",
                    waiting_message='secret "x" not found', waiting_since=at(10))
    grace = timedelta(seconds=30)
    waiting = attempt_outcome(None, [stuck], now=at(39), start_grace=grace)
    assert (waiting.outcome, waiting.recheck_at, waiting.stop_job) == (
        Outcome.RUNNING, at(40), False)
    assert waiting.message == 'CreateContainerConfigError: secret "x" not found'
    failed = attempt_outcome(None, [stuck], now=at(40), start_grace=grace)
    assert (failed.outcome, failed.reason, failed.stop_job) == (
        Outcome.FAILED, "ContainerConfigError", True)
    # Without a clock (or for a reason that is just slow, like ContainerCreating): waiting.
    assert attempt_outcome(None, [stuck]).outcome == Outcome.RUNNING
    creating = replace(stuck, waiting_reason="ContainerCreating")
    result = attempt_outcome(None, [creating], now=at(1000), start_grace=grace)
    assert (result.outcome, result.message) == (Outcome.RUNNING, None)


# --- usage: GPU fields and the fan-out merge --------------------------------------------------

GPU = {"gpuDevices": 1, "gpuMemoryPeakBytes": 9 * 2**30, "gpuUtilizationMean": 0.8,
       "gpuUtilizationPeak": 1.0}


def test_one_pods_gpu_usage_is_kept_and_fits_the_status_model() -> None:
    result = attempt_outcome(job("a"), [pod("a", outputs={}, usage={
        "cpuSeconds": 3, "peakRssBytes": 100, **GPU}, finished=at(9))])
    assert result.usage == {"cpuSeconds": 3.0, "peakRssBytes": 100, **GPU}
    usage = ResourceUsage.model_validate(result.usage)
    assert (usage.gpu_devices, usage.gpu_memory_peak_bytes, usage.gpu_utilization_mean,
            usage.gpu_utilization_peak) == (1, 9 * 2**30, 0.8, 1.0)
    assert to_k8s(usage) == result.usage


def test_without_gpu_reports_the_gpu_fields_are_absent_not_zero() -> None:
    result = attempt_outcome(job("a", completions=2), [
        pod("a", index=i, usage={"cpuSeconds": 1, "peakRssBytes": 5}) for i in range(2)])
    assert result.usage == {"cpuSeconds": 2.0, "peakRssBytes": 5}
    assert ResourceUsage.model_validate(result.usage).gpu_memory_peak_bytes is None


def test_fan_out_gpu_usage_is_what_one_pod_needed() -> None:
    reports = [
        {"cpuSeconds": 1, "peakRssBytes": 10, "gpuDevices": 2, "gpuMemoryPeakBytes": 4000,
         "gpuUtilizationMean": 0.9, "gpuUtilizationPeak": 1.0},
        {"cpuSeconds": 2, "peakRssBytes": 30, "gpuDevices": 2, "gpuMemoryPeakBytes": 7000,
         "gpuUtilizationMean": 0.5, "gpuUtilizationPeak": 0.75},
        # A pod whose worker could not read its GPUs (NVML failed) reports none: no zero.
        {"cpuSeconds": 3, "peakRssBytes": 20},
    ]
    result = attempt_outcome(job("a", completions=3), [
        pod("a", index=i, usage=u) for i, u in enumerate(reports)])
    assert result.usage == {"cpuSeconds": 6.0, "peakRssBytes": 30, "gpuDevices": 2,
                            "gpuMemoryPeakBytes": 7000, "gpuUtilizationMean": 0.7,
                            "gpuUtilizationPeak": 1.0}


def test_unknown_or_malformed_usage_keys_never_fail_the_status() -> None:
    # A newer worker's field, a string, a bool and an out-of-range ratio: the status model
    # (which forbids unknown fields) must still accept what the operator keeps.
    odd = {"cpuSeconds": 1, "peakRssBytes": 2, "gpuTemperature": 70, "gpuDevices": "two",
           "gpuMemoryPeakBytes": True, "gpuUtilizationMean": -1, "gpuUtilizationPeak": 1.5}
    failed = attempt_outcome(job("a"), [pod("a", phase="Failed", exit_code=1,
                                            message=json.dumps({"error": "x", "usage": odd}))])
    assert failed.usage == {"cpuSeconds": 1.0, "peakRssBytes": 2, "gpuUtilizationPeak": 1.0}
    ResourceUsage.model_validate(failed.usage)


def test_only_changes_that_may_end_an_attempt_are_urgent() -> None:
    running = replace(pod("a", phase="Running"), started=T0)
    # Appearing, running, progress and the Job controller's bookkeeping can wait.
    assert not is_urgent(None, pod("a", phase="Pending"))
    assert not is_urgent(pod("a", phase="Pending"), running)
    assert not is_urgent(running, replace(running, progress=0.5))
    assert not is_urgent(None, job("a"))
    assert not is_urgent(job("a"), job("a", started=T0))
    assert not is_urgent(job("a"), job("a", finished="Complete"))  # its pods said so first
    # The end of an attempt, and what keeps one from starting, cannot.
    assert is_urgent(running, pod("a", phase="Succeeded"))
    assert is_urgent(running, pod("a", phase="Failed", exit_code=75))
    assert is_urgent(running, replace(running, deleting=True))
    assert is_urgent(running, replace(running, disruption="Evicted"))
    assert is_urgent(pod("a", phase="Pending"), replace(pod("a", phase="Pending"),
                                                        waiting_reason="ErrImagePull"))
    assert is_urgent(pod("a", phase="Pending"), replace(pod("a", phase="Pending"),
                                                        unschedulable_since=T0))
    assert is_urgent(job("a"), job("a", finished="Failed", reason="DeadlineExceeded"))
    assert is_urgent(job("a", suspended=True), job("a"))  # Kueue admitted it
    assert is_urgent(job("a"), job("a", deleting=True))
    assert is_urgent(running, None) and is_urgent(job("a"), None)
    # Seen first when it has already ended (a list after a restart): at once.
    assert is_urgent(None, pod("a", phase="Succeeded"))
    assert is_urgent(None, job("a", finished="Failed", reason="BackoffLimitExceeded"))
