"""Operator configuration, from environment variables (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from kubedag.core.decide import START_FAILURE_GRACE
from kubedag.core.jobspec import JobSettings


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


KUEUE_MODES = ("auto", "off")
# Below this, kopf's renewals (every 1 s at best) and one slow API call already overlap.
MIN_PEERING_LIFETIME_SECONDS = 3


def _lifetime() -> int:
    seconds = _int("KUBEDAG_PEERING_LIFETIME_SECONDS", 10)
    if seconds < MIN_PEERING_LIFETIME_SECONDS:
        raise ValueError(f"KUBEDAG_PEERING_LIFETIME_SECONDS={seconds}: at least "
                         f"{MIN_PEERING_LIFETIME_SECONDS}")
    return seconds


def _kueue() -> bool:
    mode = os.environ.get("KUBEDAG_KUEUE", "auto")
    if mode not in KUEUE_MODES:
        raise ValueError(f"KUBEDAG_KUEUE={mode!r}: expected one of {', '.join(KUEUE_MODES)}")
    return mode == "auto"


@dataclass(frozen=True)
class OperatorSettings:
    # Empty: watch the whole cluster.
    namespaces: tuple[str, ...] = ()
    workers: int = 16
    api_threads: int = 32
    metrics_port: int = 8080
    # Operator-wide cap on running stages, shared by run priority (None: no cap).
    max_running_stages: int | None = None
    # How long a stage pod may fail to start its container (ErrImagePull, ImagePullBackOff,
    # InvalidImageName, CreateContainerConfigError, CreateContainerError) before the attempt
    # fails (ImagePullFailed / ContainerConfigError, not retried) and its Job is deleted.
    start_failure_grace_seconds: float = START_FAILURE_GRACE.total_seconds()
    # KUBEDAG_KUEUE=auto: watch Kueue's Workloads (for a queued stage's message and admission
    # time) whenever the API server serves them - kopf notices their CRD appearing later, so
    # Kueue installed after the operator needs no restart. off: never (Queued stages then
    # say which queue they wait in, not Kueue's reason).
    kueue: bool = True
    # How often the operator looks for stage cache entries past their maxAge to delete.
    cache_gc_seconds: float = 60.0
    # With --peering: how long a replica's record in the peering object counts as alive. A
    # standby takes over this long (at most) after the leader died; a leader that cannot renew
    # its record within it (API server unreachable, CPU starved) is taken over while alive,
    # and then leaves (kubedag.shell.standby). kopf renews 5-10 s before expiry (every 1 s
    # from 6 s down); kopf's default is 60.
    peering_lifetime_seconds: int = 10
    jobs: JobSettings = field(default_factory=JobSettings)

    @classmethod
    def from_env(cls) -> OperatorSettings:
        namespaces = tuple(n for n in os.environ.get("KUBEDAG_NAMESPACES", "").split(",") if n)
        return cls(
            namespaces=namespaces,
            workers=_int("KUBEDAG_WORKERS", 16),
            api_threads=_int("KUBEDAG_API_THREADS", 32),
            metrics_port=_int("KUBEDAG_METRICS_PORT", 8080),
            max_running_stages=_int("KUBEDAG_MAX_RUNNING_STAGES", 0) or None,
            start_failure_grace_seconds=float(os.environ.get(
                "KUBEDAG_START_FAILURE_GRACE_SECONDS", START_FAILURE_GRACE.total_seconds())),
            kueue=_kueue(),
            cache_gc_seconds=float(os.environ.get("KUBEDAG_CACHE_GC_SECONDS", "60")),
            peering_lifetime_seconds=_lifetime(),
            jobs=JobSettings(
                worker_image=os.environ.get("KUBEDAG_WORKER_IMAGE", JobSettings.worker_image),
                job_ttl_seconds=_int("KUBEDAG_JOB_TTL_SECONDS", JobSettings.job_ttl_seconds),
                termination_grace_seconds=_int("KUBEDAG_STAGE_TERMINATION_GRACE_SECONDS",
                                               JobSettings.termination_grace_seconds),
            ),
        )
