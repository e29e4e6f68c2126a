"""What the operator saw of a run's Jobs and pods, boiled down to what decisions need.

The shell turns each watched Job and Pod into a small frozen summary (kept in kopf indexes), and
`attempt_outcome` folds the summaries of one attempt into a verdict. Pods are read before Jobs on
purpose: a pod's phase, exit code and termination message are there the moment it ends, while the
Job controller writes the Job's `Complete` condition about a second later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from kubedag import contract
from kubedag.core import reasons

LABEL_RUN_UID = f"{contract.API_GROUP}/run-uid"
# On a fallback attempt's Job and pods ("true"): its `attempt` label counts the fallback's own
# attempts, so the stage and attempt labels alone would take it for the stage's own attempt.
LABEL_FALLBACK = f"{contract.API_GROUP}/fallback"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

# A container waiting for one of these reasons cannot start as things stand; after the
# operator's start-failure grace period the attempt fails with the mapped stage reason.
START_FAILURES: dict[str, str] = {
    "ErrImagePull": reasons.IMAGE_PULL_FAILED,
    "ImagePullBackOff": reasons.IMAGE_PULL_FAILED,
    "InvalidImageName": reasons.IMAGE_PULL_FAILED,
    "ErrImageNeverPull": reasons.IMAGE_PULL_FAILED,
    "RegistryUnavailable": reasons.IMAGE_PULL_FAILED,
    "SignatureValidationFailed": reasons.IMAGE_PULL_FAILED,
    "CreateContainerConfigError": reasons.CONTAINER_CONFIG_ERROR,
    "CreateContainerError": reasons.CONTAINER_CONFIG_ERROR,
}


@dataclass(frozen=True)
class JobSummary:
    name: str
    stage: str
    attempt: int
    created: datetime | None
    completions: int
    deleting: bool
    # "Complete", "Failed" or None, with the Job controller's reason (e.g. DeadlineExceeded).
    finished: str | None = None
    reason: str | None = None
    message: str | None = None
    # spec.suspend: created suspended for Kueue, not admitted yet (or evicted since).
    suspended: bool = False
    # status.startTime: the Job controller sets it when the Job starts or is unsuspended.
    started: datetime | None = None
    # A fallback attempt's Job (LABEL_FALLBACK), not one of the stage's own attempts.
    fallback: bool = False


@dataclass(frozen=True)
class WorkloadSummary:
    """What Kueue says about one stage Job's Workload (Kueue makes one per Job, owned by it):
    whether it is admitted, since when, and if not, why not, in Kueue's words."""

    name: str
    job: str  # the owning Job's name
    admitted: bool = False
    admitted_time: datetime | None = None
    # Why it is not admitted: the QuotaReserved condition's reason (Pending, Inadmissible,
    # or Preempted after an eviction) and message, e.g. "couldn't assign flavors to pod set
    # main: insufficient quota for nvidia.com/gpu in flavor default, 8 more needed".
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PodSummary:
    name: str
    job: str
    stage: str
    attempt: int
    phase: str
    index: int | None = None
    exit_code: int | None = None
    termination_message: str | None = None
    terminated_reason: str | None = None
    # The image the container ran, as the kubelet resolved it (containerStatuses[].imageID,
    # e.g. `docker.io/library/busybox@sha256:…`): what a cache entry's key is computed from.
    image_id: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    progress: float | None = None
    progress_message: str | None = None
    deleting: bool = False
    # Why the pod ended or is ending other than by its own exit: status.reason (Evicted) or
    # the DisruptionTarget condition's reason (EvictionByEvictionAPI, PreemptionByScheduler,
    # DeletionByTaintManager, TerminationByKubelet, DeletionByPodGC), with its message.
    disruption: str | None = None
    disruption_message: str | None = None
    # The container's waiting state (ErrImagePull, CreateContainerConfigError...) and since
    # when the pod has been trying to start it (ready to start containers, else startTime).
    waiting_reason: str | None = None
    waiting_message: str | None = None
    waiting_since: datetime | None = None
    # The scheduler's verdict while it finds no node for the pod (its PodScheduled condition
    # False with reason Unschedulable): the message ("0/3 nodes are available: 3 Insufficient
    # nvidia.com/gpu ...") and since when the condition has said so.
    unschedulable_message: str | None = None
    unschedulable_since: datetime | None = None
    # A pod of a fallback attempt (LABEL_FALLBACK).
    fallback: bool = False

    @property
    def unschedulable(self) -> bool:
        return self.unschedulable_since is not None


class Outcome(StrEnum):
    # Its Job exists but no pod of it has been placed on a node (reason says why).
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class AttemptResult:
    """The verdict on one attempt (one Job) of a stage."""

    outcome: Outcome
    exit_code: int | None = None
    message: str | None = None
    outputs: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    progress: float | None = None
    finished: datetime | None = None
    succeeded_indexes: int = 0
    failed_indexes: int = 0
    total_indexes: int = 1
    timed_out: bool = False
    reason: str | None = None  # CamelCase, from kubedag.core.reasons; set on every failure
    # The Job must be deleted (its pods cannot start and would wait forever).
    stop_job: bool = False
    # Succeeded: the image its pods ran, as resolved by the kubelet (None: not reported).
    image_id: str | None = None
    # Look again then (a start-failure grace period running out).
    recheck_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def summarize_job(body: dict[str, Any]) -> JobSummary:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status") or {}
    labels = meta.get("labels") or {}
    finished = reason = message = None
    for condition in status.get("conditions") or []:
        kind = condition.get("type")
        if condition.get("status") != "True":
            continue
        # FailureTarget: the Job controller decided the Job fails and is terminating its pods
        # (Kubernetes >= 1.31 writes Failed only after they are gone).
        if kind in ("Complete", "Failed") or (kind == "FailureTarget" and finished is None):
            finished, reason, message = (
                "Failed" if kind == "FailureTarget" else kind, condition.get("reason"),
                condition.get("message"))
    return JobSummary(
        name=meta["name"],
        stage=labels.get(contract.LABEL_STAGE, ""),
        attempt=int(labels.get(contract.LABEL_ATTEMPT, "0")),
        created=_parse_time(meta.get("creationTimestamp")),
        completions=int(spec.get("completions") or 1),
        deleting=bool(meta.get("deletionTimestamp")),
        finished=finished,
        reason=reason,
        message=message,
        suspended=bool(spec.get("suspend")),
        started=_parse_time(status.get("startTime")),
        fallback=labels.get(LABEL_FALLBACK) == "true",
    )


def workload_owner(body: dict[str, Any]) -> str | None:
    """The name of the batch/v1 Job that controls a Workload, if a Job does."""
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if (owner.get("controller") and owner.get("kind") == "Job"
                and owner.get("apiVersion") == "batch/v1"):
            return str(owner.get("name"))
    return None


def summarize_workload(body: dict[str, Any]) -> WorkloadSummary | None:
    """The summary of a Workload that belongs to a Job (None for any other Workload).

    The same in Kueue's v1beta1 and v1beta2 APIs: only metadata and conditions are read.
    """
    job = workload_owner(body)
    if job is None:
        return None
    conditions = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
    admitted = conditions.get("Admitted") or {}
    if admitted.get("status") == "True":
        return WorkloadSummary(name=body["metadata"]["name"], job=job, admitted=True,
                               admitted_time=_parse_time(admitted.get("lastTransitionTime")))
    reserved = conditions.get("QuotaReserved") or {}
    if reserved.get("status") == "True":
        # Quota is held; admission checks (e.g. a ProvisioningRequest) are still pending.
        reason = admitted.get("reason") or "QuotaReserved"
        message = admitted.get("message") or "quota reserved, waiting for admission checks"
    else:
        reason, message = reserved.get("reason"), reserved.get("message")
    return WorkloadSummary(name=body["metadata"]["name"], job=job, reason=reason,
                           message=message)


def summarize_pod(body: dict[str, Any]) -> PodSummary:
    meta, status = body.get("metadata", {}), body.get("status") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    exit_code = message = reason = image_id = None
    finished = None
    waiting_reason = waiting_message = None
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        terminated = state.get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            message = terminated.get("message")
            reason = terminated.get("reason")
            finished = _parse_time(terminated.get("finishedAt"))
            image_id = container.get("imageID") or None
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") and waiting_reason not in START_FAILURES:
            waiting_reason, waiting_message = waiting.get("reason"), waiting.get("message")
    disruption, disruption_message = status.get("reason"), status.get("message")
    ready_to_start = unschedulable_since = unschedulable_message = None
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "PodScheduled", "False", "Unschedulable"):
            unschedulable_message = condition.get("message")
            unschedulable_since = (_parse_time(condition.get("lastTransitionTime"))
                                   or _parse_time(meta.get("creationTimestamp")))
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "DisruptionTarget":
            disruption = condition.get("reason") or "DisruptionTarget"
            disruption_message = condition.get("message")
        elif condition.get("type") == "PodReadyToStartContainers":
            ready_to_start = _parse_time(condition.get("lastTransitionTime"))
    progress = progress_message = None
    raw_progress = annotations.get(contract.ANNOTATION_PROGRESS)
    if raw_progress:
        try:
            reported = json.loads(raw_progress)
            progress = min(max(float(reported.get("fraction", 0.0)), 0.0), 1.0)
            progress_message = reported.get("message")
        except (ValueError, TypeError, AttributeError):
            pass  # a malformed report is ignored, never fatal
    index = annotations.get(COMPLETION_INDEX_ANNOTATION, labels.get(COMPLETION_INDEX_ANNOTATION))
    return PodSummary(
        name=meta["name"],
        job=labels.get("job-name", labels.get("batch.kubernetes.io/job-name", "")),
        stage=labels.get(contract.LABEL_STAGE, ""),
        attempt=int(labels.get(contract.LABEL_ATTEMPT, "0")),
        phase=status.get("phase", "Pending"),
        index=int(index) if index is not None else None,
        exit_code=exit_code,
        termination_message=message,
        terminated_reason=reason,
        image_id=image_id,
        started=_parse_time(status.get("startTime")),
        finished=finished,
        progress=progress,
        progress_message=progress_message,
        deleting=bool(meta.get("deletionTimestamp")),
        disruption=disruption,
        disruption_message=disruption_message,
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        waiting_since=(ready_to_start or _parse_time(status.get("startTime"))
                       or _parse_time(meta.get("creationTimestamp"))) if waiting_reason else None,
        unschedulable_message=unschedulable_message,
        unschedulable_since=unschedulable_since,
        fallback=labels.get(LABEL_FALLBACK) == "true",
    )


def is_urgent(old: JobSummary | PodSummary | None, new: JobSummary | PodSummary | None) -> bool:
    """Whether a change of one of a run's Jobs or pods may end an attempt, or stop one from
    starting, so that its run's pass should come at once: dependants start on it.

    The rest - a Job or pod appearing, a pod starting to run, its progress, the Job
    controller's start time and its Complete condition (the pods said so first) - changes
    only what the status shows, and can join the run's next pass a moment later. In `make
    bench` four of a stage's six Job and pod changes are of that kind, and the passes they woke
    each decided nothing new.
    """
    if new is None:
        return True  # gone: a running attempt's Job or pod lost
    part = _urgent_part(new)
    if old is None:
        return any(value is not None and value is not False for value in part)
    return part != _urgent_part(old)


def _urgent_part(summary: JobSummary | PodSummary) -> tuple[object, ...]:
    """What of a summary may end an attempt or keep it from starting (None, False: nothing)."""
    if isinstance(summary, JobSummary):
        failed = summary.finished if summary.finished != "Complete" else None
        return (failed, summary.reason if failed else None, summary.deleting, summary.suspended)
    ended = summary.phase if summary.phase in ("Succeeded", "Failed") else None
    return (ended, summary.exit_code, summary.deleting, summary.disruption,
            summary.waiting_reason, summary.unschedulable)


def parse_termination_message(text: str | None) -> tuple[dict[str, Any] | None,
                                                         dict[str, Any] | None, str | None]:
    """(outputs, usage, error) from the worker's JSON termination message.

    A container that is not the kubedag worker may write anything there; non-JSON text becomes
    the error message of a failed attempt and is otherwise ignored.
    """
    if not text:
        return None, None, None
    try:
        data = json.loads(text)
    except ValueError:
        return None, None, text[:1024]
    if not isinstance(data, dict):
        return None, None, None
    outputs = data.get("outputs")
    usage = data.get("usage")
    error = data.get("error")
    return (
        outputs if isinstance(outputs, dict) else None,
        usage if isinstance(usage, dict) else None,
        str(error)[:1024] if error else None,
    )


def attempt_outcome(job: JobSummary | None, pods: list[PodSummary], *,
                    now: datetime | None = None,
                    start_grace: timedelta | None = None,
                    unschedulable_timeout: timedelta | None = None) -> AttemptResult:
    """Fold one attempt's Job and pods into a verdict, trusting pods first (they are faster).

    Every failure carries a reason from kubedag.core.reasons. With ``now`` and ``start_grace``,
    a pod whose container cannot start (image pull, configuration error) fails the attempt
    once it has tried for ``start_grace``; until then the attempt is Running with the
    kubelet's message. An attempt none of whose pods the scheduler could place is Pending
    (reason Unschedulable, the scheduler's message); with ``now`` and
    ``unschedulable_timeout`` it fails once that has lasted so long.
    """
    total = job.completions if job else 1
    succeeded = {p.index if p.index is not None else 0: p for p in pods if p.phase == "Succeeded"}
    # A pod that failed while being deleted was killed (Job deadline, pod deleted): the Job's
    # verdict says why. One evicted or preempted is lost, whatever its exit code says.
    lost = [p for p in pods if p.phase != "Succeeded" and p.disruption is not None
            and (p.phase == "Failed" or p.deleting)]
    failed = [p for p in pods if p.phase == "Failed" and not p.deleting and p not in lost]
    progress_values = [p.progress for p in pods if p.progress is not None]
    progress = sum(progress_values) / total if progress_values and total else None
    ok = len(succeeded)
    if job is not None and job.finished == "Failed" and job.reason == "DeadlineExceeded":
        return AttemptResult(
            Outcome.FAILED, message=f"stage timed out ({job.message or job.reason})",
            timed_out=True, reason=reasons.DEADLINE_EXCEEDED, succeeded_indexes=ok,
            total_indexes=total)
    if failed:
        pod = failed[0]
        outputs, usage, error = parse_termination_message(pod.termination_message)
        if pod.exit_code is None:
            reason = reasons.POD_LOST
            text = (f"pod {pod.name} failed without an exit code"
                    f"{_why(pod.disruption, pod.disruption_message)}")
        else:
            reason = (reasons.OOM_KILLED if pod.terminated_reason == "OOMKilled"
                      else reasons.EXIT_CODE)
            text = error or f"exit code {pod.exit_code} ({pod.terminated_reason or 'Error'})"
        return AttemptResult(
            Outcome.FAILED, exit_code=pod.exit_code, message=text, usage=merge_usage([usage]),
            finished=pod.finished, failed_indexes=len(failed), reason=reason,
            succeeded_indexes=ok, total_indexes=total)
    if lost:
        pod = lost[0]
        return AttemptResult(
            Outcome.FAILED, reason=reasons.POD_LOST, failed_indexes=len(lost),
            message=f"pod {pod.name} was lost{_why(pod.disruption, pod.disruption_message)}",
            succeeded_indexes=ok, total_indexes=total)
    if len(succeeded) >= total:
        outputs, usage, _ = _merge_index_reports(succeeded, total)
        last = max((p.finished for p in succeeded.values() if p.finished), default=None)
        return AttemptResult(
            Outcome.SUCCEEDED, exit_code=0, outputs=outputs, usage=usage, progress=1.0,
            finished=last, succeeded_indexes=len(succeeded), total_indexes=total,
            image_id=next((p.image_id for p in succeeded.values() if p.image_id), None),
        )
    if job is not None and job.finished == "Failed":
        if job.reason == "BackoffLimitExceeded":
            # The Job counts a pod that vanished before it ended as failed; one that failed by
            # itself was seen above. So: the pod was deleted (or its node lost).
            return AttemptResult(
                Outcome.FAILED, reason=reasons.POD_LOST,
                message=f"the stage's pod was deleted before it finished (Job: {job.reason})",
                succeeded_indexes=ok, total_indexes=total)
        return AttemptResult(
            Outcome.FAILED, reason=reasons.JOB_FAILED,
            message=f"Job failed: {job.reason}: {job.message or ''}".strip().rstrip(":"),
            succeeded_indexes=ok, total_indexes=total)
    if job is not None and job.finished == "Complete":
        # Pods already garbage-collected: the Job's word is all there is (no outputs).
        return AttemptResult(Outcome.SUCCEEDED, exit_code=0, progress=1.0,
                             succeeded_indexes=total, total_indexes=total)
    stuck = [p for p in pods if p.waiting_reason in START_FAILURES and not p.deleting]
    if not stuck:
        return _placement(pods, progress, ok, total, now, unschedulable_timeout)
    pod = stuck[0]
    if now is not None:
        pod = min(stuck, key=lambda p: p.waiting_since or now)
    text = (f"{pod.waiting_reason}: {pod.waiting_message}" if pod.waiting_message
            else str(pod.waiting_reason))
    deadline = None
    if now is not None and start_grace is not None:
        deadline = (pod.waiting_since or now) + start_grace
        if now >= deadline:
            return AttemptResult(
                Outcome.FAILED, reason=START_FAILURES[str(pod.waiting_reason)],
                message=f"{text} (container not started after "
                f"{int(start_grace.total_seconds())} s)",
                stop_job=True, succeeded_indexes=ok, total_indexes=total)
    return AttemptResult(Outcome.RUNNING, progress=progress, message=text, recheck_at=deadline,
                         succeeded_indexes=ok, total_indexes=total)


def _placement(pods: list[PodSummary], progress: float | None, ok: int, total: int,
               now: datetime | None, timeout: timedelta | None) -> AttemptResult:
    """An attempt that has not ended and whose containers are not stuck: Running once any of
    its pods has been placed (or succeeded); Pending while the scheduler can place none."""
    live = [p for p in pods if not p.deleting]
    waiting = [p for p in live if p.unschedulable]
    if not waiting:
        return AttemptResult(Outcome.RUNNING, progress=progress, succeeded_indexes=ok,
                             total_indexes=total)
    first = min(waiting, key=lambda p: p.unschedulable_since or datetime.max.replace(tzinfo=UTC))
    message = first.unschedulable_message or "no node can take the pod"
    if ok or len(waiting) < len(live):
        # Some pods run (a fan-out wider than the free room): progress, not a wait.
        return AttemptResult(
            Outcome.RUNNING, progress=progress, succeeded_indexes=ok, total_indexes=total,
            message=f"{len(waiting)} pod(s) unschedulable: {message}")
    deadline = None
    if now is not None and timeout is not None and first.unschedulable_since is not None:
        deadline = first.unschedulable_since + timeout
        if now >= deadline:
            return AttemptResult(
                Outcome.FAILED, reason=reasons.UNSCHEDULABLE, stop_job=True,
                message=f"{message} (no node for {int(timeout.total_seconds())} s: "
                "unschedulableTimeoutSeconds)", succeeded_indexes=ok, total_indexes=total)
    return AttemptResult(Outcome.PENDING, reason=reasons.UNSCHEDULABLE, message=message,
                         recheck_at=deadline, succeeded_indexes=ok, total_indexes=total)


def _why(reason: str | None, message: str | None) -> str:
    if reason and message:
        return f" ({reason}: {message})"
    return f" ({reason or message})" if reason or message else ""


MAX_FANOUT_OUTPUT_BYTES = 16 * 1024


def _merge_index_reports(
    succeeded: dict[int, PodSummary], total: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, None]:
    """One pod: its outputs. Fan-out: per-index outputs as a list, if they stay small."""
    reports = [parse_termination_message(succeeded[i].termination_message)
               for i in sorted(succeeded)]
    usage = merge_usage([u for _, u, _ in reports])
    if total == 1:
        return reports[0][0], usage, None
    results = [o for o, _, _ in reports]
    if not any(results):
        return {"count": total}, usage, None
    totals = _numeric_totals(results)
    merged: dict[str, Any] = {**totals, "count": total, "results": results}
    if len(json.dumps(merged)) > MAX_FANOUT_OUTPUT_BYTES:
        merged = {**totals, "count": total, "truncated": True}
    return merged, usage, None


def merge_usage(reports: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The attempt's usage (ResourceUsage, camelCase) from its pods' reports; one pod: its own.

    CPU seconds add up over the pods: they are the stage's cost. Peaks are per pod, because a
    request is: the largest RSS, GPU memory peak and device count of any pod say what one pod
    needs (summing the GPU peaks of pods on distinct devices would give only an upper bound of
    a total no request sizes). Utilization: the mean of the pods' means (the pods of one stage
    run the same code for similar times) and the highest peak. GPU fields no pod reported stay
    absent, and keys this operator does not know are dropped, so a newer worker's report never
    fails the status's validation.
    """
    known = [u for u in reports if u]
    cpu = sum(float(u.get("cpuSeconds", 0) or 0) for u in known)
    peak = max((int(u.get("peakRssBytes", 0) or 0) for u in known), default=0)
    usage: dict[str, Any] = {}
    if cpu or peak:
        usage.update(cpuSeconds=round(cpu, 3), peakRssBytes=peak)
    for key in ("gpuDevices", "gpuMemoryPeakBytes"):
        if values := _reported(known, key):
            usage[key] = int(max(values))
    if means := _reported(known, "gpuUtilizationMean"):
        usage["gpuUtilizationMean"] = _ratio(sum(means) / len(means))
    if peaks := _reported(known, "gpuUtilizationPeak"):
        usage["gpuUtilizationPeak"] = _ratio(max(peaks))
    return usage or None


def _reported(reports: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The non-negative numbers the reports give for ``key`` (anything else is no report)."""
    values = [u.get(key) for u in reports]
    return [float(v) for v in values
            if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0]


def _ratio(value: float) -> float:
    return round(min(value, 1.0), 3)


# What a fan-out stage's outputs always hold, whatever its pods report (see Stage.fanOut).
FANOUT_OUTPUT_KEYS = frozenset({"count", "results", "truncated"})


def _numeric_totals(results: list[dict[str, Any] | None]) -> dict[str, int | float]:
    """Each output key that every index reports as a number, summed over the indexes: what
    `when: stages.extract.outputs.pages > 0` means for a stage fanned out over documents."""
    keyed = [r for r in results if r]
    if not keyed:
        return {}
    common = set.intersection(*(set(r) for r in keyed)) - FANOUT_OUTPUT_KEYS
    totals: dict[str, int | float] = {}
    for key in sorted(common):
        values = [r[key] for r in keyed]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            totals[key] = sum(values)
    return totals
